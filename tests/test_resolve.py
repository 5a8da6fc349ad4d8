"""Resolution of steer rows: every check is ok, error or unchecked, never passed unseen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saeval.spec.resolve import CheckOutcome, Resolution, resolve, validate
from saeval.spec.steer_file import read_steer_file

HEADER = "latent_idx,steering_coefficient,sae_release,sae_id,description,action,hook\n"
DOG = "12082,240.0,gemma-scope-2b-pt-res-canonical,layer_20/width_16k/canonical,dogs,,\n"


def steer(directory: Path, name: str, *rows: str) -> Path:
    """A seed-dialect steer file with the given rows."""
    path = directory / name
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    return path


def statuses(resolution: Resolution, index: int = 0) -> dict[str, CheckOutcome]:
    """Check name -> status of one resolved row."""
    return {check.name: check.status for check in resolution.rows[index].checks}


@pytest.fixture(scope="module")
def local_sae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sae_lens SAE folder (d_in 64, d_sae 128, gpt2 blocks.1.hook_resid_post)."""
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    folder = tmp_path_factory.mktemp("sae") / "tiny"
    metadata = SAEMetadata(hook_name="blocks.1.hook_resid_post", model_name="gpt2")
    StandardSAE(StandardSAEConfig(d_in=64, d_sae=128, metadata=metadata)).save_model(folder)
    return folder


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees what happens to be in the machine's Hugging Face cache."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


def test_dog_row_resolves_with_every_check_passed(tmp_path: Path) -> None:
    resolution = validate([steer(tmp_path, "dog.csv", DOG)])
    assert resolution.ok and resolution.problems == [] and resolution.unchecked == []
    (row,) = resolution.rows
    assert row.sae is not None
    assert (row.sae.model, row.hook_name, row.sae.d_sae, row.sae.d_in) == (
        "google/gemma-2-2b",
        "blocks.20.hook_resid_post",
        16384,
        2304,
    )
    assert (
        row.neuronpedia_url == "https://www.neuronpedia.org/gemma-2-2b/20-gemmascope-res-16k/12082"
    )
    assert set(statuses(resolution).values()) == {CheckOutcome.OK}
    assert resolution.base_model == "google/gemma-2-2b"


def test_local_sae_folder_is_read_from_its_cfg_json(tmp_path: Path, local_sae: Path) -> None:
    rows = (f"5,1.0,{local_sae},,ok,,\n", f"128,1.0,{local_sae},,too big,,\n")
    resolution = validate([steer(tmp_path, "local.csv", *rows)])
    first = resolution.rows[0]
    assert first.sae is not None
    assert (first.sae.kind, first.sae.d_sae, first.sae.d_in, first.sae.model) == (
        "local",
        128,
        64,
        "gpt2",
    )
    assert first.hook_name == "blocks.1.hook_resid_post"
    assert set(statuses(resolution, 0).values()) == {CheckOutcome.OK}
    assert resolution.problems == [
        f"{tmp_path}/local.csv:3 latent_idx: latent 128 is out of range: {local_sae} has "
        "d_sae=128 latents (valid: 0-127)"
    ]


def test_local_sae_subfolder_named_by_sae_id(tmp_path: Path, local_sae: Path) -> None:
    resolution = validate([steer(tmp_path, "s.csv", f"5,1.0,{local_sae.parent},tiny,,,\n")])
    assert resolution.ok
    assert resolution.rows[0].sae is not None and resolution.rows[0].sae.path == str(local_sae)


def test_local_folder_without_cfg_json_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty_sae").mkdir()
    resolution = validate([steer(tmp_path, "s.csv", f"5,1.0,{tmp_path / 'empty_sae'},,,,\n")])
    (problem,) = resolution.problems
    assert problem.startswith(f"{tmp_path}/s.csv:2 sae_release: local SAE folder")
    assert "has no cfg.json" in problem


def test_hf_repo_offline_is_unchecked_never_ok(tmp_path: Path) -> None:
    resolution = validate([steer(tmp_path, "r.csv", "5,1.0,someone/my-saes,layer_3,,,\n")])
    assert resolution.ok  # nothing is known to be wrong ...
    checks = statuses(resolution)
    assert checks.pop("duplicate") is CheckOutcome.OK
    assert set(checks.values()) == {CheckOutcome.UNCHECKED}  # ... and nothing else is claimed
    assert any("--online" in note for note in resolution.unchecked)


def test_hf_repo_with_cached_cfg_json_is_checked(tmp_path: Path, local_sae: Path) -> None:
    from huggingface_hub import constants

    snapshot = Path(constants.HF_HUB_CACHE) / "models--someone--my-saes" / "snapshots" / "c0"
    (snapshot / "layer_3").mkdir(parents=True)
    (snapshot / "layer_3" / "cfg.json").write_text((local_sae / "cfg.json").read_text())
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("c0")
    resolution = validate([steer(tmp_path, "r.csv", "500,1.0,someone/my-saes,layer_3,,,\n")])
    assert statuses(resolution)["sae"] is CheckOutcome.OK
    assert "latent 500 is out of range" in resolution.problems[0]


def test_sae_lens_release_without_width_offline_is_unchecked(tmp_path: Path) -> None:
    resolution = validate(
        [steer(tmp_path, "g.csv", "5,1.0,gpt2-small-res-jb,blocks.8.hook_resid_pre,,,\n")]
    )
    checks = statuses(resolution)
    assert (checks["sae"], checks["model"]) == (CheckOutcome.OK, CheckOutcome.OK)
    assert (checks["latent_idx"], checks["hook"]) == (
        CheckOutcome.UNCHECKED,
        CheckOutcome.UNCHECKED,
    )
    assert resolution.summary(f"{tmp_path}/g.csv").endswith(
        "1 row valid; 2 checks unchecked (offline)"
    )


def test_model_given_as_alias_or_id_matches(tmp_path: Path) -> None:
    dog = steer(tmp_path, "dog.csv", DOG)
    for model in ("gemma-2-2b", "google/gemma-2-2b"):
        assert validate([dog], model=model).ok


def test_model_mismatch_names_both_models(tmp_path: Path) -> None:
    resolution = validate([steer(tmp_path, "dog.csv", DOG)], model="gpt2")
    assert resolution.problems == [
        f"{tmp_path}/dog.csv:2 sae_release: the SAE is for google/gemma-2-2b, not --model gpt2"
    ]


def model_folder(directory: Path, **config: object) -> Path:
    """A local model folder holding only a config.json."""
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_local_model_folder_of_the_right_shape_is_unchecked(tmp_path: Path) -> None:
    folder = model_folder(
        tmp_path / "m", model_type="gemma2", num_hidden_layers=26, hidden_size=2304
    )
    resolution = validate([steer(tmp_path, "dog.csv", DOG)], model=str(folder))
    checks = statuses(resolution)
    assert (checks["model"], checks["hook"]) == (CheckOutcome.UNCHECKED, CheckOutcome.OK)


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"model_type": "llama", "hidden_size": 2304}, "is a llama model"),
        ({"model_type": "gemma2", "hidden_size": 640}, "d_in=2304 does not match hidden_size=640"),
    ],
)
def test_local_model_folder_of_another_kind_is_an_error(
    tmp_path: Path, config: dict[str, object], fragment: str
) -> None:
    folder = model_folder(tmp_path / "m", **config)
    resolution = validate([steer(tmp_path, "dog.csv", DOG)], model=str(folder))
    assert any(fragment in problem for problem in resolution.problems), resolution.problems


def test_hook_layer_beyond_a_local_model_is_an_error(tmp_path: Path) -> None:
    folder = model_folder(
        tmp_path / "m", model_type="gemma2", num_hidden_layers=26, hidden_size=2304
    )
    row = DOG.replace(",,\n", ",,blocks.30.hook_resid_post\n")
    resolution = validate([steer(tmp_path, "dog.csv", row)], model=str(folder))
    assert any("hook: " in p and "n_layers=26" in p for p in resolution.problems)


def test_hook_override_with_unknown_layer_count_is_unchecked(tmp_path: Path) -> None:
    row = DOG.replace(",,\n", ",,blocks.30.hook_resid_post\n")
    resolution = validate([steer(tmp_path, "dog.csv", row)])
    assert statuses(resolution)["hook"] is CheckOutcome.UNCHECKED
    assert resolution.ok


def test_unsupported_hook_for_the_architecture_is_an_error(tmp_path: Path) -> None:
    row = DOG.replace(",,\n", ",,blocks.3.hook_q\n")
    (problem,) = validate([steer(tmp_path, "dog.csv", row)]).problems
    assert problem.startswith(f"{tmp_path}/dog.csv:2 hook: hook 'blocks.3.hook_q' cannot be mapped")
    assert "blocks.{layer}.hook_resid_post" in problem


def test_mixed_base_models_across_files(tmp_path: Path, local_sae: Path) -> None:
    dog = steer(tmp_path, "dog.csv", DOG)
    tiny = steer(tmp_path, "tiny.csv", f"5,1.0,{local_sae},,,,\n")
    resolution = validate([dog, tiny])
    assert resolution.problems == [
        f"{tmp_path}/tiny.csv:2 sae_release: the SAE is for gpt2, but {dog}:2 steers "
        "google/gemma-2-2b; every row must steer the same base model"
    ]
    assert resolution.base_model is None


def test_duplicate_across_files_names_both_rows(tmp_path: Path) -> None:
    first, second = steer(tmp_path, "a.csv", DOG), steer(tmp_path, "b.csv", DOG)
    (problem,) = validate([first, second]).problems
    assert problem.startswith(f"{second}:2 latent_idx: latent 12082")
    assert f"already added at {first}:2" in problem


def test_add_and_clamp_of_one_latent_are_not_duplicates(tmp_path: Path) -> None:
    clamp = DOG.replace(",,\n", ",clamp,\n")
    assert validate([steer(tmp_path, "a.csv", DOG), steer(tmp_path, "b.csv", clamp)]).ok


def test_lm_eval_dialect_messages_use_its_column_names(tmp_path: Path) -> None:
    path = tmp_path / "lm.csv"
    path.write_text(
        "loader,action,sparse_model,hookpoint,feature_index,steering_coefficient,sae_id\n"
        "sae_lens,add,gemma-scope-2b-pt-res-canonical,layers.20,99999,1.0,"
        "layer_20/width_16k/canonical\n"
    )
    resolution = validate([path])
    assert resolution.problems[0].startswith(f"{path}:2 feature_index: latent 99999")
    assert statuses(resolution)["hook"] is CheckOutcome.UNCHECKED  # HF module name: checked on load


def test_unreadable_files_are_reported_with_the_others_resolved(tmp_path: Path) -> None:
    dog = steer(tmp_path, "dog.csv", DOG)
    resolution = validate([dog, tmp_path / "missing.csv"])
    assert not resolution.ok
    assert resolution.problems == [
        f"{tmp_path}/missing.csv: file not found; expected a steer.csv file"
    ]
    assert len(resolution.rows) == 1
    assert resolution.summary(str(dog)) == f"{dog}: 1 row valid"


def test_resolve_takes_read_steer_files(tmp_path: Path) -> None:
    steer_file = read_steer_file(steer(tmp_path, "dog.csv", DOG))
    resolution = resolve([steer_file], model="gemma-2-2b")
    assert resolution.ok and resolution.files == (str(steer_file.path),)


def test_to_dict_is_json_with_a_stable_schema(tmp_path: Path) -> None:
    data = json.loads(json.dumps(validate([steer(tmp_path, "dog.csv", DOG)]).to_dict()))
    assert data["schema"] == "saeval.resolution/1"
    assert set(data) == {
        "schema", "ok", "online", "model", "base_model", "files", "rows", "problems", "unchecked"
    }  # fmt: skip
    (row,) = data["rows"]
    assert row["sae"]["d_sae"] == 16384 and row["status"] == "ok"
    assert [check["name"] for check in row["checks"]] == [
        "sae", "latent_idx", "model", "hook", "duplicate"
    ]  # fmt: skip
