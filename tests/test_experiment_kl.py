"""KL and generation measures in experiments: the workers measure them as `saeval run` does, and
the leaderboard shows the KL per intervention x strength (token-weighted over its tasks)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import invoke
from experiment_builders import experiment_data, write_steer_files
from sae_builders import GEN_TASK, MC_TASK
from test_leaderboard import _entries, _results

from saeval.analysis.leaderboard import leaderboard
from saeval.analysis.leaderboard_render import render_leaderboard
from saeval.records.side_effects import KlSummary
from saeval.spec.experiment import read_experiment

KL_DOCS = 2


def _side_effects(configuration: Path, task: str) -> dict[str, Any]:
    (path,) = configuration.glob(f"side_effects_{task}_*.json")
    return dict(json.loads(path.read_text()))


def _write(folder: Path, bundle: Path, **changes: Any) -> Path:
    import yaml

    write_steer_files(folder, bundle)
    data = experiment_data(bundle, interventions={"adds": "steers/adds.csv"}, **changes)
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def runs(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(experiment run with --kl-docs 2 on one worker, `saeval run` of adds.csv alone)."""
    folder = tmp_path_factory.mktemp("experiment-kl")
    path, output = _write(folder, tiny_bundle), folder / "results"
    args = ["run", str(path), "--kl-docs", str(KL_DOCS), "--output", str(output)]
    experiment = invoke(*args, "--devices", "cpu", "--name", "exp")
    assert experiment.exit_code == 0, experiment.output
    assert "KL" in experiment.stdout  # the terminal table (its header wraps at 80 columns)
    alone = invoke(
        "run", folder / "steers" / "adds.csv", "--model", tiny_bundle / "model",
        "--include-path", tiny_bundle / "tasks", "--tasks", f"{MC_TASK},{GEN_TASK}",
        "--limit", "4", "--scale", "1,2", "--kl-docs", str(KL_DOCS), "--device", "cpu",
        "--output", output, "--name", "alone",
    )  # fmt: skip
    assert alone.exit_code == 0, alone.output
    return output / "exp", output / "alone"


def test_every_configuration_measures_what_saeval_run_measures(runs: tuple[Path, Path]) -> None:
    experiment, alone = runs
    pairs = [("baseline", "baseline"), ("adds@1", "steered@1"), ("adds@2", "steered@2")]
    for mine, theirs in pairs:
        for task in (MC_TASK, GEN_TASK):
            ours, reference = (
                _side_effects(experiment / mine, task),
                _side_effects(alone / theirs, task),
            )
            if mine == "baseline":
                assert ours["kl"] is None and reference["kl"] is None
            else:
                docs = ours["kl"]["documents"]
                assert [d["doc_id"] for d in docs] == list(range(KL_DOCS))
                expected = [d["sum"] for d in reference["kl"]["documents"]]
                assert [d["sum"] for d in docs] == pytest.approx(expected, abs=1e-6)
                assert ours["kl"]["mean"] == pytest.approx(reference["kl"]["mean"], abs=1e-6)
                assert ours["kl"]["mean"] > 0
            assert (ours["generation"] is None) is (task == MC_TASK)
            if task == GEN_TASK:
                got = [d["gen_ppl"] for d in ours["generation"]]
                assert got == pytest.approx([d["gen_ppl"] for d in reference["generation"]])
    manifest = json.loads((experiment / "run.json").read_text())
    assert manifest["spec"]["kl_docs"] == KL_DOCS
    assert all(len(record["side_effects"]) == 1 for record in manifest["completed"])
    for control in ("adds~random1@1", "adds~random1@2"):
        assert _side_effects(experiment / control, MC_TASK)["kl"]["mean"] > 0


def test_the_leaderboard_shows_the_kl_of_each_row(runs: tuple[Path, Path]) -> None:
    experiment, alone = runs
    board = json.loads((experiment / "leaderboard.json").read_text())
    rows = {row["label"] + f"@{row['scale']:g}": row for row in board["rows"]}
    assert set(rows) == {"adds@1", "adds@2", "adds~random1@1", "adds~random1@2"}
    for scale in (1, 2):
        kl = [_side_effects(alone / f"steered@{scale}", task)["kl"] for task in (MC_TASK, GEN_TASK)]
        pooled = sum(k["mean"] * k["tokens"] for k in kl) / sum(k["tokens"] for k in kl)
        assert rows[f"adds@{scale}"]["kl"] == pytest.approx(pooled, abs=1e-6)
    assert rows["adds@2"]["kl"] > rows["adds@1"]["kl"] > 0
    header = (experiment / "leaderboard.md").read_text().splitlines()[2]
    assert "KL (nats/token)" in header
    records = list(csv.DictReader(io.StringIO((experiment / "leaderboard.csv").read_text())))
    assert float(records[0]["kl"]) == pytest.approx(rows["adds@1"]["kl"])


def test_the_kl_column_pools_tasks_by_tokens_and_is_absent_without_kl() -> None:
    def summary(mean: float, tokens: int) -> KlSummary:
        return KlSummary(mean, None, None, mean, tokens, 4)

    entries = _entries()
    results = entries[0].results
    tasks = dict(results.tasks)
    tasks["tgt"] = replace(tasks["tgt"], kl=summary(0.5, 30))
    tasks["cap_a"] = replace(tasks["cap_a"], kl=summary(0.1, 10))
    entries[0] = replace(entries[0], results=replace(results, tasks=tasks))
    settings: dict[str, Any] = {"target": ["tgt"], "capability": ["cap_a", "cap_b"]}
    board = leaderboard(_results("baseline", 0), entries, **settings)
    kl = {(row.label, row.scale): row.kl for row in board.rows}
    assert kl[("good", 1.0)] == pytest.approx((0.5 * 30 + 0.1 * 10) / 40)  # 0.4, not 0.3
    assert kl[("good", 2.0)] is None
    assert "KL (nats/token)" in render_leaderboard(board, "markdown")
    without = leaderboard(_results("baseline", 0), _entries(), **settings)
    assert "KL" not in render_leaderboard(without, "markdown")


def test_kl_docs_is_a_key_of_the_experiment_file(tiny_bundle: Path, tmp_path: Path) -> None:
    assert read_experiment(_write(tmp_path, tiny_bundle, kl_docs=5)).options.kl_docs == 5
    assert read_experiment(_write(tmp_path, tiny_bundle)).options.kl_docs is None
    result = invoke("validate", str(_write(tmp_path, tiny_bundle, kl_docs=-1)))
    assert result.exit_code == 1
    assert "kl_docs" in result.output and "whole number >= 0" in result.output
