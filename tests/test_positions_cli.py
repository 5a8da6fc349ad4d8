"""The positions column and ``--positions``: parsed in every CSV dialect, shown by validate,
bad values refused in one line naming file:line column (or the option), recorded by a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import invoke

from saeval.errors import SteerFileError, UsageError
from saeval.run.config import RunConfig
from saeval.spec.steer_file import VectorRow, read_steer_file
from saeval.spec.steer_rows import mode_of, with_default_positions

RELEASE = "gemma-scope-2b-pt-res-canonical,layer_20/width_16k/canonical"
SEED = "latent_idx,steering_coefficient,sae_release,sae_id,positions\n"


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)


def write(name: str, text: str) -> Path:
    path = Path(name)
    path.write_text(text, encoding="utf-8")
    return path


def test_every_csv_dialect_reads_a_positions_column() -> None:
    seed = read_steer_file(
        write("seed.csv", SEED + f"1,2.0,{RELEASE},generated\n3,1.0,{RELEASE},\n")
    )
    fork = read_steer_file(
        write(
            "fork.csv",
            "latent_idx,steering_coefficient,sae_release,sae_id,hook_action,positions\n"
            f"1,2.0,{RELEASE},add,Prompt\n",
        )
    )
    lm_eval = read_steer_file(
        write(
            "lm.csv",
            "loader,sparse_model,feature_index,steering_coefficient,sae_id,positions\n"
            "sae_lens,gemma-scope-2b-pt-res-canonical,1,2.0,layer_20/width_16k/canonical,"
            "all_but_bos\n",
        )
    )
    write("v.npy", "")
    vectors = read_steer_file(
        write(
            "vectors.csv",
            "steering_coefficient,vector,hook,positions\n2.0,v.npy,blocks.1.hook_resid_post,prompt\n",
        )
    )
    assert [row.positions for row in seed.rows] == ["generated", None]
    assert (fork.dialect, fork.rows[0].positions) == ("fork", "prompt")
    assert (lm_eval.dialect, lm_eval.rows[0].positions) == ("lm-eval", "all_but_bos")
    (vector,) = vectors.rows
    assert isinstance(vector, VectorRow) and vector.positions == "prompt"


def test_the_run_default_fills_only_empty_cells() -> None:
    steer = read_steer_file(write("s.csv", SEED + f"1,2.0,{RELEASE},prompt\n3,1.0,{RELEASE},\n"))
    filled = with_default_positions(steer, "generated")
    assert [mode_of(row) for row in filled.rows] == ["prompt", "generated"]
    assert [mode_of(row) for row in steer.rows] == ["prompt", "all"]


def test_a_bad_positions_cell_names_its_line_column_and_the_valid_modes() -> None:
    path = write("s.csv", SEED + f"1,2.0,{RELEASE},prompt\n3,1.0,{RELEASE},output_only\n")
    with pytest.raises(SteerFileError) as raised:
        read_steer_file(path)
    assert raised.value.problems == [
        "s.csv:3 positions: unknown positions 'output_only'; valid: all, all_but_bos, prompt, "
        "generated (empty: the run's default)"
    ]
    result = invoke("validate", str(path))
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = [line for line in result.stderr.splitlines() if "s.csv:3" in line]
    assert "s.csv:3 positions: unknown positions 'output_only'; valid: all, all_but_bos" in line


def test_validate_shows_each_rows_mode() -> None:
    rows = "".join(
        f"{latent},2.0,{RELEASE},{mode}\n"
        for latent, mode in ((1, "generated"), (2, "prompt"), (3, "all_but_bos"), (4, ""))
    )
    result = invoke("validate", str(write("s.csv", SEED + rows)), "-f", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [(row["positions"], row["computes"]) for row in data["rows"]] == [
        ("generated", "h += c·W_dec[i] at generated positions"),
        ("prompt", "h += c·W_dec[i] at prompt positions"),
        ("all_but_bos", "h += c·W_dec[i] at every position but the first (BOS or not)"),
        (None, "h += c·W_dec[i]"),
    ]


def test_positions_option_is_checked_before_anything_loads() -> None:
    with pytest.raises(UsageError, match="--positions must be one of all, all_but_bos"):
        RunConfig(steer_files=(Path("s.csv"),), tasks=("t",), positions="bogus").check()
    result = invoke(
        "run", str(write("s.csv", SEED + f"1,2.0,{RELEASE},\n")), "-t", "x", "--positions", "bogus"
    )
    assert result.exit_code == 2, result.output
    assert "--positions must be one of all, all_but_bos, prompt, generated, got 'bogus'" in (
        result.stderr
    )
    assert "Traceback" not in result.output


def test_a_run_records_every_rows_mode_and_resume_refuses_another(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    from sae_builders import GEN_TASK, MC_TASK, ROLLING_TASK

    base = ["run", str(tiny_bundle / "steer.csv"), "--model", str(tiny_bundle / "model")]
    base += ["--include-path", str(tiny_bundle / "tasks"), "--output", str(tmp_path)]
    base += ["--device", "cpu", "--tasks", f"{MC_TASK},{GEN_TASK},{ROLLING_TASK}"]
    base += ["--limit", "3", "--kl-docs", "2", "--name", "r"]
    result = invoke(*base, "--positions", "generated")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "r" / "run.json").read_text())
    assert manifest["spec"]["positions"] == "generated"
    assert [f["positions"] for f in manifest["steer_files"]] == [["generated", "generated"]]
    comparison = json.loads((tmp_path / "r" / "comparison.json").read_text())
    steer = str(tiny_bundle / "steer.csv")
    assert f"steering positions of {steer}, row by row: generated, generated" in comparison["notes"]
    again = invoke(*base, "--positions", "prompt", "--resume")
    assert again.exit_code == 2
    assert "positions: 'generated' -> 'prompt'" in again.stderr


def test_experiment_files_take_positions_at_the_top_and_per_intervention(tmp_path: Path) -> None:
    from saeval.run.workers import _rows
    from saeval.spec.experiment import read_experiment

    steer = write("s.csv", SEED + f"1,2.0,{RELEASE},\n2,2.0,{RELEASE},prompt\n")
    text = (
        "tasks: [a]\npositions: generated\ninterventions:\n  plain: s.csv\n"
        "  first: {steer: s.csv, positions: all_but_bos}\n"
    )
    experiment = read_experiment(write("exp.yaml", text))
    assert [(i.name, i.positions) for i in experiment.interventions] == [
        ("plain", "generated"),
        ("first", "all_but_bos"),
    ]
    sha = read_steer_file(steer).sha256
    rows = _rows({"steer": [str(steer)], "steer_sha256": [sha], "positions": "all_but_bos"})
    assert [row.positions for row in rows] == ["all_but_bos", "prompt"]
    write("bad.yaml", "tasks: [a]\ninterventions:\n  d: {steer: s.csv, positions: output}\n")
    with pytest.raises(SteerFileError) as raised:
        read_experiment(Path("bad.yaml"))
    assert raised.value.problems[0] == (
        "bad.yaml:3 interventions.d: expected one of all, all_but_bos, prompt, generated, "
        "got 'output'"
    )
