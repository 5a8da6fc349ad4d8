"""The demo's stable names: --model saeval-demo and the saeval_demo tasks, from $SAEVAL_CACHE."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import invoke

from saeval.demo.names import DEMO_MODEL_NAME, with_demo_assets


def test_demo_names_resolve_in_the_configured_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAEVAL_CACHE", str(tmp_path / "cache"))
    model_dir = tmp_path / "cache" / "gemma-3-270m"
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text("{}")  # a converted model: nothing to build
    model, folders = with_demo_assets(DEMO_MODEL_NAME, ["saeval_demo"], [tmp_path])
    assert model == str(model_dir)
    assert folders[0] == tmp_path and len(folders) == 2
    assert folders[1].parent.parent == tmp_path / "cache"
    assert (folders[1] / "dog_preference.yaml").is_file()
    assert with_demo_assets("gpt2", ["hellaswag"], []) == ("gpt2", ())


def test_the_duration_estimate_counts_documents_and_configurations() -> None:
    from saeval.demo.duration import SECONDS_PER_DOCUMENT, documents, estimate_seconds
    from saeval.demo.paths import TASKS_SOURCE_DIR

    lines = {
        p.name: len(p.read_text().strip().splitlines()) for p in TASKS_SOURCE_DIR.glob("*.jsonl")
    }
    assert documents(None) == sum(lines.values()) == 182
    assert documents(10) == 10 + 10 + 10 + 8
    seconds = estimate_seconds((0.5, 1, 2, 4), None, first_position=True, converted=True)
    prompted = 2 * (lines["dog_preference.jsonl"] + lines["knowledge.jsonl"])  # 2 configurations
    assert seconds == pytest.approx(
        (182 * 5 + lines["knowledge.jsonl"] + prompted) * SECONDS_PER_DOCUMENT
    )
    assert estimate_seconds((1,), 1, first_position=False, converted=False) == pytest.approx(
        (4 * 2 + 2 * 2) * SECONDS_PER_DOCUMENT + 60.0
    )


REPO = Path(__file__).resolve().parents[1]


def test_the_demo_experiment_names_the_demo_model_and_tasks_without_a_cache_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """steers/demo_experiment.yaml says `model: saeval-demo`; validation never converts it:
    before the first conversion it checks against the Hugging Face id the demo model copies,
    after it against the folder; the demo tasks come from the configured cache."""

    from saeval.demo.names import experiment_demo_names

    monkeypatch.setenv("SAEVAL_CACHE", str(tmp_path / "cache"))
    path = str(REPO / "steers" / "demo_experiment.yaml")
    assert "cache" not in (REPO / "steers" / "demo_experiment.yaml").read_text().split("model:")[1]
    names = experiment_demo_names(path, None, build=False)
    assert names["model"] == "google/gemma-3-270m"
    assert [folder.parent.parent for folder in names["include_path"]] == [tmp_path / "cache"]
    assert experiment_demo_names(path, "other/model", build=False).get("model") is None
    result = invoke("validate", path)
    assert result.exit_code == 0, result.output
    assert "20 evaluations; valid" in result.output.replace("\n", " ")  # with dogs_prompt
    model_dir = tmp_path / "cache" / "gemma-3-270m"
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text("{}")  # converted: the folder is checked
    assert experiment_demo_names(path, None, build=False)["model"] == str(model_dir)
