"""Faults around what saeval writes: where (--name, run.json entries, compare's plots, --output),
who (the run folder's lock), what happens when the disk fills, which hints it gives, and what
reaches the terminal (no lm-eval tqdm bars, no `fatal: not a git repository`).

Each bad case asserts the exit code, one `error:` line naming the option, file or entry, no
traceback, and that nothing already computed was changed.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_checks import assert_one_line_error
from conftest import HANG_S, invoke, run_saeval
from sae_builders import GEN_TASK, MC_TASK, ROLLING_TASK
from typer.testing import Result

from saeval.errors import ResultsError
from saeval.records.run_folder import LOCK_FILE
from saeval.run.lock import RunLock

REPO = Path(__file__).resolve().parents[1]
ALL_TASKS = f"{MC_TASK},{GEN_TASK},{ROLLING_TASK}"


def run_args(bundle: Path, output: Path, *args: str) -> list[str]:
    """`run <steer.csv> --model <tiny> --include-path <tasks> --output OUTPUT --device cpu ARGS`."""
    base = ["run", str(bundle / "steer.csv"), "--model", str(bundle / "model")]
    base += ["--include-path", str(bundle / "tasks"), "--output", str(output), "--device", "cpu"]
    return [*base, *args]


def saeval(bundle: Path, output: Path, *args: str) -> Result:
    """`saeval run ...` in-process."""
    return invoke(*run_args(bundle, output, *args))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def manifest(run: Path) -> dict[str, Any]:
    return dict(json.loads((run / "run.json").read_text()))


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a run gets as far as loading the model."""
    from saeval.run import evaluation

    def no_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(evaluation, "load_model", no_load)


@pytest.fixture(scope="module")
def finished(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete sweep run (baseline, steered@0, steered@1) of the multiple-choice task."""
    output = tmp_path_factory.mktemp("finished")
    result = saeval(tiny_bundle, output, "--tasks", MC_TASK, "--scale", "0,1", "--name", "done")
    assert result.exit_code == 0, result.output
    return output / "done"


# --- 2. every write stays where the user said ----------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../escape", "is a path"),
        ("/abs", "is a path"),
        ("a/b", "is a path"),
        ("a\\b", "is a path"),
        ("bell\x07", "control character"),
        ("..", "is '..'"),
        (".", "is '.'"),
        ("", "is empty"),
    ],
)
def test_a_name_that_is_not_one_folder_name_is_a_usage_error(
    tiny_bundle: Path, tmp_path: Path, no_model: None, name: str, problem: str
) -> None:
    output = tmp_path / "out"
    output.mkdir()
    result = saeval(tiny_bundle, output, "--tasks", MC_TASK, "--name", name)
    assert result.exit_code == 2, result.output
    (line, hint) = result.stderr.strip().splitlines()
    assert line.startswith("error: --name ") and problem in line, line
    assert hint.startswith("hint: --name is one folder name")
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out"]  # nothing written anywhere


def _escape_samples(data: dict[str, Any]) -> str:
    data["completed"][0]["samples"][0] = "../../escape.jsonl"
    return "completed[0].samples[0] '../../escape.jsonl' is a path"


def _absolute_results(data: dict[str, Any]) -> str:
    data["completed"][1]["results"] = "/tmp/elsewhere.json"
    return "completed[1].results '/tmp/elsewhere.json' is a path"


def _configuration_outside(data: dict[str, Any]) -> str:
    data["configurations"]["../x"] = data["configurations"].pop("steered@1")
    return "configurations['../x'] '../x' is a path"


def _stamp_with_a_path(data: dict[str, Any]) -> str:
    data["configurations"]["baseline"]["stamp"] = "x/../../../y"
    return "configurations['baseline'].stamp"


def _record_configuration(data: dict[str, Any]) -> str:
    data["completed"][0]["configuration"] = ".."
    return "completed[0].configuration '..' is '..'"


@pytest.mark.parametrize(
    "damage",
    [
        _escape_samples,
        _absolute_results,
        _configuration_outside,
        _stamp_with_a_path,
        _record_configuration,
    ],
)
def test_run_json_entries_must_name_files_inside_the_run_folder(
    tiny_bundle: Path, finished: Path, tmp_path: Path, no_model: None, damage: Any
) -> None:
    run = Path(shutil.copytree(finished, tmp_path / "out" / "done"))
    data = manifest(run)
    needle = damage(data)
    (run / "run.json").write_text(json.dumps(data))
    before = snapshot(tmp_path)
    args = ("--tasks", MC_TASK, "--scale", "0,1", "--name", "done", "--resume")
    result = saeval(tiny_bundle, tmp_path / "out", *args)
    assert_one_line_error(result, f"{run / 'run.json'}: {needle}", "may only name files in")
    assert snapshot(tmp_path) == before


def test_a_configuration_folder_linked_outside_the_run_is_refused(
    tiny_bundle: Path, finished: Path, tmp_path: Path, no_model: None
) -> None:
    run = Path(shutil.copytree(finished, tmp_path / "out" / "done"))
    outside = Path(shutil.move(run / "steered@1", tmp_path / "outside"))
    (run / "steered@1").symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)
    args = ("--tasks", MC_TASK, "--scale", "0,1", "--name", "done", "--resume")
    result = saeval(tiny_bundle, tmp_path / "out", *args)
    assert_one_line_error(result, "configurations['steered@1']", "resolves outside the run folder")
    assert snapshot(outside) == before


def test_compare_without_output_writes_plots_to_the_current_folder(
    finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(finished)
    monkeypatch.chdir(tmp_path)
    result = invoke("compare", str(finished), "--format", "json")
    assert result.exit_code == 0, result.output
    plots = tmp_path / "done-plots"
    assert f"plots to {plots}" in result.stderr
    assert {p.name for p in plots.iterdir()} == {p.name for p in finished.glob("*.png")}
    assert snapshot(finished) == before  # nothing new in the folder compared


def test_compare_output_file_puts_plots_next_to_it(finished: Path, tmp_path: Path) -> None:
    report = tmp_path / "reports" / "sweep.md"
    result = invoke("compare", str(finished), "--output", str(report))
    assert result.exit_code == 0, result.output
    assert MC_TASK in report.read_text()
    assert list(report.parent.glob("sweep_*.png"))


def test_compare_output_that_is_a_folder_is_one_line(finished: Path, tmp_path: Path) -> None:
    before = snapshot(finished)
    result = invoke("compare", str(finished), "--output", str(tmp_path))
    assert_one_line_error(result, f"--output {tmp_path} is a folder, not a file")
    assert list(tmp_path.iterdir()) == [] and snapshot(finished) == before


def test_compare_output_in_an_unwritable_folder_is_one_line(
    finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda path, mode: not (mode & os.W_OK and Path(path) == locked) and real(path, mode),
    )
    result = invoke("compare", str(finished), "-o", str(locked / "r.md"))
    assert_one_line_error(result, f"--output {locked / 'r.md'}: {locked} is not writable")
    assert list(locked.iterdir()) == []


def test_compare_output_under_a_file_is_one_line(finished: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    result = invoke("compare", str(finished), "-o", str(blocker / "r.md"))
    assert_one_line_error(result, f"--output {blocker / 'r.md'}: cannot create {blocker}")
    assert blocker.read_text() == "keep me"


@pytest.mark.parametrize(
    ("sides", "target"),
    [
        ([""], "comparison.md"),
        (["baseline", "steered@1"], "baseline/report.md"),
        (["baseline", "steered@1"], "comparison.md"),
    ],
)
def test_compare_output_inside_the_run_it_reads_is_one_line(
    finished: Path, sides: list[str], target: str
) -> None:
    """README: compare never writes into its inputs (RUN/comparison.md was overwritten)."""
    before = snapshot(finished)
    output = finished / target
    args = ["compare", *(str(finished / side) for side in sides), "--output", str(output)]
    result = invoke(*args)
    assert_one_line_error(result, f"--output {output} is inside", "compare never writes into")
    assert snapshot(finished) == before


def test_compare_output_beside_loose_results_files_is_allowed(tmp_path: Path) -> None:
    golden = REPO / "tests" / "golden" / "lmeval"
    side = Path(shutil.copytree(golden / "baseline" / "tiny-gpt2", tmp_path / "side"))
    (results,) = side.glob("results_*.json")
    report = side / "report.md"
    result = invoke("compare", str(results), str(results), "-o", str(report))
    assert result.exit_code == 0, result.output
    clobber = invoke("compare", str(side), str(results), "-o", str(results))
    assert_one_line_error(clobber, f"--output {results} is inside")


def test_resume_recomputes_a_cut_samples_file_and_compare_refuses_it_before(
    tiny_bundle: Path, finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A samples file cut to half its documents: compare refuses it (before, it reported a
    "partial" comparison with no word of damage); --resume runs that task again, says so,
    and writes the same bytes the first run wrote."""
    run = Path(shutil.copytree(finished, tmp_path / "copy"))
    monkeypatch.chdir(tmp_path)  # compare writes the sweep's plots into ./copy-plots
    (samples,) = (run / "steered@1").glob(f"samples_{MC_TASK}_*.jsonl")
    whole = samples.read_bytes()
    lines = whole.decode().splitlines(keepends=True)
    samples.write_text("".join(lines[: len(lines) // 2]))
    refused = invoke("compare", str(run), "--format", "json")
    assert_one_line_error(refused, f"{samples} does not match the sha256")
    args = ["--tasks", MC_TASK, "--scale", "0,1", "--name", "copy", "--resume"]
    resumed = saeval(tiny_bundle, tmp_path, *args)
    assert resumed.exit_code == 0, resumed.output
    assert f"files damaged, running again: steered@1/{MC_TASK} ({samples.name} does not" in (
        resumed.stderr.replace("\n", " ")
    )
    assert samples.read_bytes() == whole
    assert manifest(run)["status"] == "complete"
    compared = invoke("compare", str(run), "--format", "json")
    assert compared.exit_code == 0 and "unverified" not in compared.output


def test_run_output_that_is_a_file_is_one_line(
    tiny_bundle: Path, tmp_path: Path, no_model: None
) -> None:
    target = tmp_path / "results"
    target.write_text("not a folder")
    result = saeval(tiny_bundle, target, "--tasks", MC_TASK)
    assert_one_line_error(result, f"--output {target} is a file, not a folder")
    assert target.read_text() == "not a folder"


def test_run_output_under_a_file_is_one_line(
    tiny_bundle: Path, tmp_path: Path, no_model: None
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = saeval(tiny_bundle, blocker / "results", "--tasks", MC_TASK)
    assert_one_line_error(result, f"--output {blocker / 'results'}: cannot create the folder")


def test_run_output_that_is_not_writable_is_one_line(
    tiny_bundle: Path, tmp_path: Path, no_model: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda path, mode: not (mode & os.W_OK and Path(path) == tmp_path) and real(path, mode),
    )
    result = saeval(tiny_bundle, tmp_path, "--tasks", MC_TASK)
    assert_one_line_error(result, f"--output {tmp_path} is not writable")
    assert list(tmp_path.iterdir()) == []


def test_a_run_folder_that_cannot_be_made_is_one_line(
    tiny_bundle: Path, tmp_path: Path, no_model: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.access can say yes where mkdir says no (read-only mounts seen through ACLs, root)."""
    real = Path.mkdir

    def read_only(self: Path, *args: Any, **kwargs: Any) -> None:
        if self == tmp_path / "x":
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    result = saeval(tiny_bundle, tmp_path, "--tasks", MC_TASK, "--name", "x")
    assert_one_line_error(result, f"cannot create {tmp_path / 'x'} (Read-only file system)")


# --- 3. one process per run folder ---------------------------------------------------------


def test_the_lock_refuses_a_second_holder_and_goes_away_when_released(tmp_path: Path) -> None:
    lock = RunLock.acquire(tmp_path)
    assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    with pytest.raises(
        ResultsError, match=rf"is in use by another saeval process \(pid {os.getpid()}\)"
    ):
        RunLock.acquire(tmp_path)
    lock.release()
    lock.release()  # twice is harmless
    assert not (tmp_path / LOCK_FILE).exists()
    with RunLock.acquire(tmp_path):
        assert (tmp_path / LOCK_FILE).is_file()
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_lock_file_left_by_a_dead_process_neither_blocks_nor_breaks_compare(
    finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the sweep's plots land here
    run = Path(shutil.copytree(finished, tmp_path / "done"))
    expected = invoke("compare", str(run), "-f", "json").stdout
    (run / LOCK_FILE).write_text("999999\n")  # a crashed holder: the kernel released its flock
    result = invoke("compare", str(run), "-f", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(expected)
    assert json.loads(expected)["series"]
    with RunLock.acquire(run):
        pass


def test_two_resumes_of_one_run_at_once_one_runs_the_other_is_refused(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from saeval.run import evaluation

    sweep = ["--tasks", ALL_TASKS, "--scale", "0,1"]  # 9 steps: seconds of work left
    real = evaluation.evaluate
    calls: list[str] = []

    def interrupt_the_second(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", interrupt_the_second)
    first = saeval(tiny_bundle, tmp_path, *sweep, "--name", "r")
    assert first.exit_code == 130, first.output
    run = tmp_path / "r"
    assert len(manifest(run)["completed"]) == 1

    command = [sys.executable, "-m", "saeval", *run_args(tiny_bundle, tmp_path, *sweep)]
    command += ["--name", "r", "--resume"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = [
        subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    done = [(p, *p.communicate(timeout=HANG_S)) for p in processes]
    codes = sorted(p.returncode for p, _, _ in done)
    assert codes == [0, 1], [err[-2000:] for _, _, err in done]
    (winner, _, _), (_, _, refused) = sorted(done, key=lambda item: item[0].returncode)
    lines = refused.strip().splitlines()
    assert lines[-2] == f"error: {run} is in use by another saeval process (pid {winner.pid})"
    assert "Traceback" not in refused

    data = manifest(run)
    assert data["status"] == "complete"
    pairs = [(r["configuration"], r["task"]) for r in data["completed"]]
    assert len(pairs) == len(set(pairs)) == 9
    for configuration in ("baseline", "steered@0", "steered@1"):
        folder = run / configuration
        assert len(list(folder.glob("results_*.json"))) == 1, configuration
        assert len(list(folder.glob("samples_*.jsonl"))) == 3, configuration
    assert not (run / LOCK_FILE).exists()


# --- 3. a full disk while the error is recorded; 4. true hints -----------------------------


def _disk_full_after_the_first_task(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Every run-folder write fails with ENOSPC once one task is recorded."""
    from saeval.run import store

    real = store.write_atomic
    state = {"tasks": 0}

    def write(path: Path, data: str | bytes) -> None:
        if state["tasks"] >= 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)
        if path.name == "run.json" and '"completed": [\n    {' in str(data):
            state["tasks"] = 1

    monkeypatch.setattr(store, "write_atomic", write)
    return state


def test_a_full_disk_after_the_first_task_is_one_line_and_keeps_it(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _disk_full_after_the_first_task(monkeypatch)
    result = saeval(tiny_bundle, tmp_path, "--tasks", f"{MC_TASK},{GEN_TASK}", "--name", "full")
    run = tmp_path / "full"
    assert_one_line_error(
        result, f"cannot write the results (baseline, {GEN_TASK}): No space left on device"
    )
    hint = result.stderr.strip().splitlines()[-1]
    assert f"{run / 'run.json'} could not be updated (No space left on device)" in hint
    assert "finished results are kept: rerun with --resume --name full" in hint
    data = manifest(run)  # the last run.json that could be written: the first task, intact
    assert [(r["configuration"], r["task"]) for r in data["completed"]] == [("baseline", MC_TASK)]
    (samples,) = (run / "baseline").glob(f"samples_{MC_TASK}_*.jsonl")
    assert len(samples.read_text().splitlines()) == 8


def test_an_interrupt_on_a_full_disk_is_still_one_line(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from saeval.run import evaluation

    state = _disk_full_after_the_first_task(monkeypatch)
    real = evaluation.evaluate

    def interrupt_when_full(*args: Any, **kwargs: Any) -> Any:
        if state["tasks"]:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", interrupt_when_full)
    result = saeval(tiny_bundle, tmp_path, "--tasks", f"{MC_TASK},{GEN_TASK}", "--name", "f")
    assert result.exit_code == 130, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-2].startswith("error: interrupted by Ctrl-C; 1 finished results kept")
    assert "run.json could not be updated" in lines[-1] and "Traceback" not in result.output
    assert len(manifest(tmp_path / "f")["completed"]) == 1


def _crash_on_call(monkeypatch: pytest.MonkeyPatch, number: int, error: BaseException) -> None:
    from saeval.run import evaluation

    real = evaluation.evaluate
    calls: list[str] = []

    def crash(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1])
        if len(calls) == number:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", crash)


def test_no_finished_results_means_no_kept_results_in_the_hint(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _crash_on_call(monkeypatch, 1, KeyError("doc_to_text"))
    result = saeval(tiny_bundle, tmp_path, "--tasks", MC_TASK, "--name", "c")
    assert_one_line_error(result, f"KeyError (baseline, {MC_TASK}): 'doc_to_text'")
    hint = result.stderr.strip().splitlines()[-1]
    assert "finished results are kept" not in hint
    assert f"after a fix to {MC_TASK}'s YAML or data start a new run" in hint
    assert "rerun with --resume --name c" in hint
    assert manifest(tmp_path / "c")["completed"] == []


def test_a_crash_after_a_finished_task_says_what_is_kept_and_what_resuming_needs(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _crash_on_call(monkeypatch, 2, ValueError("bad doc"))
    result = saeval(tiny_bundle, tmp_path, "--tasks", f"{MC_TASK},{GEN_TASK}", "--name", "c")
    assert_one_line_error(result, f"ValueError (baseline, {GEN_TASK}): bad doc")
    hint = result.stderr.strip().splitlines()[-1]
    assert f"the traceback is in {tmp_path / 'c' / 'run.json'} (errors)" in hint
    assert "finished results are kept: rerun with --resume --name c" in hint


def test_out_of_memory_before_anything_finished_keeps_no_promise(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    _crash_on_call(monkeypatch, 1, torch.OutOfMemoryError("CUDA out of memory"))
    result = saeval(tiny_bundle, tmp_path, "--tasks", MC_TASK, "--name", "o")
    assert_one_line_error(result, f"out of memory (baseline, {MC_TASK})")
    hint = result.stderr.strip().splitlines()[-1]
    assert "kept" not in hint and "rerun with --resume --name o once memory is free" in hint


# --- 5. what the terminal shows ------------------------------------------------------------


def test_a_run_shows_saeval_progress_only_no_tqdm_and_no_git_noise(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    args = [*run_args(tiny_bundle, tmp_path / "out"), "--tasks", f"{MC_TASK},{ROLLING_TASK}"]
    done = run_saeval(
        *args, "--name", "t", cwd=tmp_path, env={"HF_HUB_DISABLE_PROGRESS_BARS": None}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    shown = done.stdout + done.stderr
    assert "it/s]" not in shown and "%|" not in shown, shown[-3000:]
    assert "fatal:" not in shown
    # tiny_mc: 8 questions x 4 choices (stderr is no terminal: plain lines, one per unit)
    assert "32/32 requests" in done.stderr
    results = next((tmp_path / "out" / "t" / "baseline").glob("results_*.json"))
    assert json.loads(results.read_text())["git_hash"] is None  # tmp_path is no checkout


def test_quiet_lm_eval_counts_requests_and_puts_everything_back() -> None:
    import lm_eval.evaluator
    import lm_eval.models.huggingface as huggingface

    from saeval.run.lm_eval_output import quiet_lm_eval

    before = (huggingface.tqdm, lm_eval.evaluator.get_git_commit_hash)
    seen: list[tuple[int, int]] = []
    with quiet_lm_eval(lambda done, total: seen.append((done, total))):
        bar = huggingface.tqdm(total=3, disable=False, desc="Running loglikelihood requests")
        for _ in range(3):
            bar.update(1)
        bar.close()
        assert list(huggingface.tqdm([1, 2], desc="Tokenizing inputs")) == [1, 2]
        huggingface.tqdm(total=5, disable=True, desc="Running generate_until requests").update(1)
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert (huggingface.tqdm, lm_eval.evaluator.get_git_commit_hash) == before


def test_progress_events_show_requests_done_of_the_running_task() -> None:
    from saeval.cli.progress import ProgressEvents
    from saeval.records.run_record import TaskRecord

    with ProgressEvents() as events:
        events.task_started("baseline", MC_TASK, 1, 2)
        events.requests_done(5, 32)
        (task,) = events.progress.tasks
        assert (task.completed, task.total, task.fields["requests"]) == (5, 32, "5/32 requests")
        events.task_finished(TaskRecord("baseline", MC_TASK, 1.0, "now", "r.json", []))
        assert task.finished and task.completed == 32
        events.requests_done(1, 1)  # between tasks: nothing to move
        assert task.completed == 32
