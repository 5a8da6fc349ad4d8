"""`saeval run` end to end on a tiny GPT-2, a tiny SAE and three local tasks (no network).

Most runs go through the CLI in-process (typer's CliRunner); the SIGTERM test starts a real
`python -m saeval run` subprocess and kills it after its first finished (configuration, task).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from builders import save_tiny_pretrained
from cli_checks import assert_one_line_error
from conftest import HANG_S, invoke
from sae_builders import (
    GEN_TASK,
    MC_TASK,
    ROLLING_TASK,
    build_sae,
    save_sae,
    write_steer_csv,
    write_tasks,
)
from typer.testing import Result

from saeval.analysis.compare import MCNEMAR
from saeval.spec.tasks import split_task_names, validate_tasks

ALL_TASKS = f"{MC_TASK},{GEN_TASK},{ROLLING_TASK}"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fixture_dir(tiny_bundle: Path) -> Path:
    """The shared tiny model, SAE, steer file and three tasks (tests/conftest.py)."""
    return tiny_bundle


def saeval(fixture: Path, output: Path, *args: str) -> Result:
    """`saeval run <steer.csv> --model <tiny> --include-path <tasks> --output OUTPUT ARGS`."""
    base = ["run", str(fixture / "steer.csv"), "--model", str(fixture / "model")]
    base += ["--include-path", str(fixture / "tasks"), "--output", str(output), "--device", "cpu"]
    return invoke(*base, *args)


def manifest(run: Path) -> dict[str, Any]:
    return dict(json.loads((run / "run.json").read_text()))


def numbers(run: Path) -> dict[str, Any]:
    """Every configuration's lm-eval results and per-document records (times stripped)."""
    found: dict[str, Any] = {}
    for folder in sorted(p for p in run.iterdir() if p.is_dir()):
        (results_file,) = folder.glob("results_*.json")
        found[folder.name] = json.loads(results_file.read_text())["results"]
        for samples in sorted(folder.glob("samples_*.jsonl")):
            task = samples.name.removeprefix("samples_").rsplit("_", 1)[0]
            found[f"{folder.name}/{task}"] = samples.read_text().splitlines()
    return found


@pytest.fixture(scope="module")
def first_run(fixture_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One complete run of all three tasks (baseline + steered)."""
    output = tmp_path_factory.mktemp("results")
    result = saeval(fixture_dir, output, "--tasks", ALL_TASKS, "--name", "first")
    assert result.exit_code == 0, result.output
    return output / "first"


def test_run_writes_lm_eval_folders_manifest_and_comparison(first_run: Path) -> None:
    data = manifest(first_run)
    assert data["schema"] == "saeval.run/2" and data["status"] == "complete"
    assert [task["name"] for task in data["tasks"]] == [MC_TASK, GEN_TASK, ROLLING_TASK]
    assert all(len(task["config_sha256"]) == 64 for task in data["tasks"])
    assert data["model"]["dtype"] == "float32" and data["model"]["revision"].startswith("local:")
    assert data["steer_files"][0]["text"].startswith("latent_idx,")
    assert data["saes"][0]["hook_name"] == "blocks.1.hook_resid_post"
    assert data["seeds"] == {"random": 0, "numpy": 1234, "torch": 1234, "fewshot": 1234}
    assert set(data["packages"]) == {"saeval", "lm_eval", "sae_lens", "transformers", "torch"}
    assert data["timings"]["model_load_s"] > 0
    done = {(r["configuration"], r["task"]) for r in data["completed"]}
    assert done == {(c, t) for c in ("baseline", "steered") for t in split_task_names(ALL_TASKS)}
    assert not data["errors"]
    for configuration in ("baseline", "steered"):
        folder = first_run / configuration
        (results_file,) = folder.glob("results_*.json")
        stamp = results_file.stem.removeprefix("results_")
        results = json.loads(results_file.read_text())
        assert set(results["results"]) == {MC_TASK, GEN_TASK, ROLLING_TASK}
        for task in (MC_TASK, GEN_TASK, ROLLING_TASK):
            assert (folder / f"samples_{task}_{stamp}.jsonl").is_file()
    assert numbers(first_run)["baseline"] != numbers(first_run)["steered"]
    assert {p.name for p in first_run.glob("comparison.*")} == {
        "comparison.md",
        "comparison.csv",
        "comparison.json",
    }


def test_compare_reproduces_the_run_comparison(first_run: Path) -> None:
    written = json.loads((first_run / "comparison.json").read_text())
    result = invoke("compare", str(first_run), "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == written["rows"]
    explicit = invoke(
        "compare", str(first_run / "baseline"), str(first_run / "steered"), "-f", "json"
    )
    keys = ("task", "metric", "a", "b", "delta", "p", "ci_low", "ci_high")
    rows = [{k: row[k] for k in keys} for row in json.loads(explicit.stdout)["rows"]]
    assert rows == [{k: row[k] for k in keys} for row in written["rows"]]
    acc = next(r for r in written["rows"] if r["task"] == MC_TASK and r["metric"] == "acc")
    assert acc["test"] == MCNEMAR and acc["n_paired"] == 8


def test_a_second_run_reuses_the_cached_baseline_and_says_so(
    fixture_dir: Path, first_run: Path
) -> None:
    result = saeval(fixture_dir, first_run.parent, "--tasks", MC_TASK, "--name", "second")
    assert result.exit_code == 0, result.output
    assert "reused from the cache" in result.stderr
    assert f"baseline reused from the cache for: {MC_TASK}" in result.stdout
    second = first_run.parent / "second"
    (record,) = [r for r in manifest(second)["completed"] if r["configuration"] == "baseline"]
    assert record["reused_from"] == "first"
    assert numbers(second)["baseline"][MC_TASK] == numbers(first_run)["baseline"][MC_TASK]
    assert numbers(second)[f"baseline/{MC_TASK}"] == numbers(first_run)[f"baseline/{MC_TASK}"]

    other = saeval(fixture_dir, first_run.parent, "--tasks", MC_TASK, "--batch-size", "2")
    assert other.exit_code == 0, other.output
    assert "reused" not in other.stderr  # batch size is part of the key


def test_a_sweep_writes_one_folder_per_strength_and_plots(
    fixture_dir: Path, tmp_path: Path
) -> None:
    result = saeval(fixture_dir, tmp_path, "--tasks", MC_TASK, "--scale", "0,1", "--name", "s")
    assert result.exit_code == 0, result.output
    run = tmp_path / "s"
    assert {p.name for p in run.iterdir() if p.is_dir()} == {"baseline", "steered@0", "steered@1"}
    assert list(run.glob("sweep_*.png"))
    sweep = json.loads((run / "comparison.json").read_text())
    (series,) = [s for s in sweep["series"] if s["metric"] == "acc"]
    assert [point["scale"] for point in series["points"]] == [0.0, 1.0]
    # a zero-strength add leaves every document as the baseline has it
    assert series["points"][0]["delta"] == 0.0
    assert numbers(run)[f"steered@0/{MC_TASK}"] == numbers(run)[f"baseline/{MC_TASK}"]


def test_no_baseline_runs_only_the_steered_model(fixture_dir: Path, tmp_path: Path) -> None:
    result = saeval(fixture_dir, tmp_path, "--tasks", MC_TASK, "--no-baseline", "--name", "nb")
    assert result.exit_code == 0, result.output
    run = tmp_path / "nb"
    assert {p.name for p in run.iterdir()} == {"run.json", "steered"}
    assert [r["configuration"] for r in manifest(run)["completed"]] == ["steered"]


def test_sigterm_keeps_finished_work_and_resume_matches_an_uninterrupted_run(
    fixture_dir: Path, tmp_path: Path
) -> None:
    sweep = ["--tasks", ALL_TASKS, "--scale", "0,1,2"]  # 12 steps: plenty left after the first
    reference = saeval(fixture_dir, tmp_path / "reference", *sweep, "--name", "whole")
    assert reference.exit_code == 0, reference.output

    args = [sys.executable, "-m", "saeval", "run", str(fixture_dir / "steer.csv"), *sweep]
    args += ["--model", str(fixture_dir / "model"), "--include-path", str(fixture_dir / "tasks")]
    args += ["--output", str(tmp_path), "--name", "killed", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + HANG_S
    while not list((tmp_path / "killed" / "baseline").glob("results_*.json")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no result file"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=HANG_S)

    assert process.returncode == 143, stderr
    assert "error: interrupted by SIGTERM" in stderr and "Traceback" not in stderr
    data = manifest(tmp_path / "killed")
    assert data["status"] == "interrupted"
    assert 1 <= len(data["completed"]) < 12

    resumed = saeval(fixture_dir, tmp_path, *sweep, "--name", "killed", "--resume")
    assert resumed.exit_code == 0, resumed.output
    kept = len(data["completed"])
    assert f"resuming {tmp_path / 'killed'} ({kept} results kept)" in resumed.stderr
    assert manifest(tmp_path / "killed")["status"] == "complete"
    assert numbers(tmp_path / "killed") == numbers(tmp_path / "reference" / "whole")


def test_a_sigterm_swallowed_by_a_finalizer_stops_the_run_at_the_next_task(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from saeval.run.interrupts import Sigterm

    class Finalized:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler raises inside __del__

    with Sigterm() as sigterm:
        sigterm.check()  # nothing received yet
        Finalized()  # the KeyboardInterrupt is swallowed by the finalizer
        with pytest.raises(KeyboardInterrupt):
            sigterm.check()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert "Exception ignored" not in capsys.readouterr().err


def test_resume_refuses_other_options(fixture_dir: Path, first_run: Path) -> None:
    args = ["--tasks", ALL_TASKS, "--name", "first", "--resume", "--limit", "2"]
    result = saeval(fixture_dir, first_run.parent, *args)
    assert result.exit_code == 2
    assert "limit: None -> 2" in result.stderr


def test_a_crash_in_a_later_task_keeps_finished_ones_and_marks_the_run_failed(
    fixture_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from saeval.run import evaluation

    real = evaluation.evaluate
    calls: list[str] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1])
        if len(calls) == 2:
            raise RuntimeError("dataset vanished")
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", flaky)
    result = saeval(fixture_dir, tmp_path, "--tasks", f"{MC_TASK},{GEN_TASK}", "--name", "crash")
    assert_one_line_error(result, "RuntimeError (baseline, tiny_gen): dataset vanished")
    data = manifest(tmp_path / "crash")
    assert data["status"] == "failed"
    assert [(r["configuration"], r["task"]) for r in data["completed"]] == [("baseline", MC_TASK)]
    assert "dataset vanished" in data["errors"][0]["traceback"]


def test_out_of_memory_in_a_later_task_keeps_the_first_and_resume_finishes(
    fixture_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lm_eval
    import torch

    real = lm_eval.simple_evaluate
    calls: list[list[str]] = []

    def oom_on_the_second_task(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["tasks"])
        if len(calls) == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(lm_eval, "simple_evaluate", oom_on_the_second_task)
    tasks = ["--tasks", f"{MC_TASK},{GEN_TASK}"]
    result = saeval(fixture_dir, tmp_path, *tasks, "--name", "oom")
    assert_one_line_error(result, f"out of memory (baseline, {GEN_TASK})")
    assert "--batch-size" in result.stderr.splitlines()[-1]
    assert calls == [[MC_TASK], [GEN_TASK]]
    run = tmp_path / "oom"
    data = manifest(run)
    assert data["status"] == "failed" and data["errors"][0]["type"] == "OutOfMemoryError"
    assert [(r["configuration"], r["task"]) for r in data["completed"]] == [("baseline", MC_TASK)]
    assert set(numbers(run)["baseline"]) == {MC_TASK}

    monkeypatch.setattr(lm_eval, "simple_evaluate", real)
    resumed = saeval(fixture_dir, tmp_path, *tasks, "--name", "oom", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming {run} (1 results kept)" in resumed.stderr
    data = manifest(run)
    assert data["status"] == "complete" and len(data["completed"]) == 4
    assert set(numbers(run)["steered"]) == {MC_TASK, GEN_TASK}


def test_resume_refuses_a_local_sae_folder_whose_weights_changed(
    fixture_dir: Path, tmp_path: Path
) -> None:
    sae = save_sae(build_sae("standard", seed=1), tmp_path / "sae")
    steer = tmp_path / "steer.csv"
    write_steer_csv(steer, [(3, 8.0, sae, "")])
    args = ["run", str(steer), "--model", str(fixture_dir / "model"), "--device", "cpu"]
    args += ["--include-path", str(fixture_dir / "tasks"), "--output", str(tmp_path / "out")]
    args += ["--tasks", MC_TASK, "--limit", "2", "--no-baseline", "--name", "x"]
    assert invoke(*args).exit_code == 0
    save_sae(build_sae("standard", seed=2), sae)
    resumed = invoke(*args, "--resume")
    assert resumed.exit_code == 2
    assert f"sae_folders: {{'{sae.resolve()}': 'local:" in resumed.stderr


def test_resume_refuses_a_run_folder_of_another_model(
    fixture_dir: Path, first_run: Path, tmp_path: Path
) -> None:
    other = save_tiny_pretrained("gpt2", tmp_path / "other-model", seed=1)
    before = (first_run / "run.json").read_text()
    args = ["run", str(fixture_dir / "steer.csv"), "--model", str(other), "--device", "cpu"]
    args += ["--include-path", str(fixture_dir / "tasks"), "--output", str(first_run.parent)]
    args += ["--tasks", ALL_TASKS, "--resume"]
    named = invoke(*args, "--name", "first")
    assert_one_line_error(named, f"{first_run} is a run of {fixture_dir / 'model'}, not {other}")
    assert "--model" in named.stderr.splitlines()[-1]
    unnamed = invoke(*args)
    assert_one_line_error(unnamed, "no unfinished run of this command")
    assert (first_run / "run.json").read_text() == before


def _truncate_manifest(run: Path) -> str:
    (run / "run.json").write_text((run / "run.json").read_text()[:200])
    return "run.json: cannot read the manifest"


def _manifest_not_an_object(run: Path) -> str:
    (run / "run.json").write_text("[]")
    return "run.json: not a saeval run manifest"


def _truncate_results_of_an_unfinished_task(run: Path) -> str:
    data = manifest(run)
    data["completed"] = [r for r in data["completed"] if r["configuration"] != "steered"]
    (run / "run.json").write_text(json.dumps(data))
    (results,) = (run / "steered").glob("results_*.json")
    results.write_text(results.read_text()[:300])
    return f"{results.name}:"


@pytest.mark.parametrize(
    "damage",
    [_truncate_manifest, _manifest_not_an_object, _truncate_results_of_an_unfinished_task],
)
def test_resuming_a_damaged_run_folder_is_one_line(
    fixture_dir: Path, first_run: Path, tmp_path: Path, damage: Callable[[Path], str]
) -> None:
    run = Path(shutil.copytree(first_run, tmp_path / "copy"))
    expected = damage(run)
    result = saeval(fixture_dir, tmp_path, "--tasks", ALL_TASKS, "--name", "copy", "--resume")
    assert_one_line_error(result, expected)


def test_resume_runs_again_a_finished_task_whose_files_are_gone(
    fixture_dir: Path, first_run: Path, tmp_path: Path
) -> None:
    run = Path(shutil.copytree(first_run, tmp_path / "copy"))
    (samples,) = (run / "steered").glob(f"samples_{MC_TASK}_*.jsonl")
    samples.unlink()
    result = saeval(fixture_dir, tmp_path, "--tasks", ALL_TASKS, "--name", "copy", "--resume")
    assert result.exit_code == 0, result.output
    assert f"files missing, running again: steered/{MC_TASK}" in result.stderr
    assert manifest(run)["status"] == "complete" and len(manifest(run)["completed"]) == 6
    assert numbers(run) == numbers(first_run)


def test_a_gpu_this_machine_does_not_have_is_one_line(
    fixture_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    result = saeval(fixture_dir, tmp_path, "--tasks", MC_TASK, "--device", "cuda:3")
    assert_one_line_error(result, "device cuda:3 does not exist; visible GPUs: cuda:0")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--tasks", "tiny_mcc"], ["unknown task 'tiny_mcc'", "did you mean tiny_mc"]),
        (["--tasks", MC_TASK, "--device", "cuda:3"], ["cuda:3"]),
        (["--tasks", MC_TASK, "--scale", "1,x"], ["--scale"]),
    ],
)
def test_bad_input_fails_before_any_model_is_loaded(
    fixture_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    needles: list[str],
) -> None:
    from saeval.run import evaluation

    def no_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(evaluation, "load_model", no_load)
    result = saeval(fixture_dir, tmp_path, *args)
    if "--scale" in args:
        assert result.exit_code == 2 and "--scale" in result.stderr
    else:
        assert_one_line_error(result, *needles)
    assert not any(tmp_path.iterdir())  # no run folder either


def test_a_missing_steer_file_is_one_line(fixture_dir: Path, tmp_path: Path) -> None:
    result = invoke(
        "run", str(tmp_path / "nope.csv"), "--tasks", MC_TASK, "--output", str(tmp_path)
    )
    assert_one_line_error(result, "nope.csv")


def test_task_fingerprint_follows_the_data_file(fixture_dir: Path, tmp_path: Path) -> None:
    tasks = write_tasks(tmp_path / "tasks")
    before = validate_tasks([MC_TASK], [tasks]).specs[0]
    data = tasks / f"{MC_TASK}.jsonl"
    data.write_text(data.read_text().replace("loyal", "faithful"))
    after = validate_tasks([MC_TASK], [tasks]).specs[0]
    assert before.version == after.version == "1.0"
    assert before.config_sha256 != after.config_sha256


def test_task_fingerprint_follows_a_function_module(tmp_path: Path) -> None:
    tasks = write_tasks(tmp_path / "tasks")
    task_yaml = tasks / f"{MC_TASK}.yaml"
    task_yaml.write_text(task_yaml.read_text() + "process_docs: !function utils.process_docs\n")
    utils = tasks / "utils.py"
    utils.write_text("def process_docs(dataset):\n    return dataset\n")
    before = validate_tasks([MC_TASK], [tasks]).specs[0]
    utils.write_text("def process_docs(dataset):\n    return dataset.select(range(2))\n")
    after = validate_tasks([MC_TASK], [tasks]).specs[0]
    assert before.config_sha256 != after.config_sha256


def test_split_task_names() -> None:
    assert split_task_names(["a, b", "b,,c"]) == ["a", "b", "c"]
