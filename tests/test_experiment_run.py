"""`saeval run EXPERIMENT.yaml` end to end on the tiny bundle: 2 interventions x 2 strengths,
1 random control each, 2 tasks, on two CPU workers (and through submitit's LocalExecutor).

Every configuration's per-document numbers equal those of `saeval run` of its steer file alone;
a worker killed mid-run is recorded against its unit while the other finishes, and --resume
completes the run with the same numbers; SIGTERM to the parent stops every worker.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import HANG_S, invoke
from experiment_builders import write_experiment
from sae_builders import GEN_TASK, MC_TASK

CONFIGURATIONS = [
    "baseline",
    *(f"{name}{kind}@{scale}" for name in ("adds", "clamps") for scale in (1, 2)
      for kind in ("", "~random1")),
]  # fmt: skip


def documents(folder: Path) -> dict[str, list[tuple[int, list[float | str], dict[str, float]]]]:
    """Per task: each document's id, responses (log-likelihoods as floats) and metric values."""
    found = {}
    for samples in sorted(folder.glob("samples_*.jsonl")):
        task = samples.name.removeprefix("samples_").rsplit("_", 1)[0]
        rows = []
        for line in samples.read_text().splitlines():
            record = json.loads(line)
            resps = [_number(r[0] if isinstance(r, list) else r) for r in record["filtered_resps"]]
            metrics = {name: record[name] for name in record["metrics"]}
            rows.append((record["doc_id"], resps, metrics))
        found[task] = sorted(rows, key=lambda row: row[0])
    return found


def _number(value: Any) -> float | str:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def assert_same_documents(a: Path, b: Path, tolerance: float = 1e-6) -> None:
    """Same documents, metrics and responses; log-likelihoods within ``tolerance``."""
    docs_a, docs_b = documents(a), documents(b)
    assert set(docs_a) == set(docs_b) == {MC_TASK, GEN_TASK}
    for task, rows in docs_a.items():
        assert len(rows) == 4
        for (id_a, resps_a, metrics_a), (id_b, resps_b, metrics_b) in zip(
            rows, docs_b[task], strict=True
        ):
            assert (id_a, metrics_a) == (id_b, metrics_b), (a, task)
            assert resps_a == pytest.approx(resps_b, abs=tolerance), (a, task, id_a)


def manifest(run: Path) -> dict[str, Any]:
    return dict(json.loads((run / "run.json").read_text()))


@pytest.fixture(scope="module")
def setup(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(experiment file, output folder)."""
    folder = tmp_path_factory.mktemp("experiment")
    return write_experiment(folder, tiny_bundle), folder / "results"


@pytest.fixture(scope="module")
def first(setup: tuple[Path, Path]) -> Path:
    """The experiment run on two CPU workers."""
    path, output = setup
    result = invoke("run", path, "--devices", "cpu,cpu", "--output", output, "--name", "first")
    assert result.exit_code == 0, result.output
    assert "sweet spot of adds" in result.stdout
    return output / "first"


def test_the_experiment_writes_every_configuration_and_the_leaderboard(first: Path) -> None:
    data = manifest(first)
    assert data["status"] == "complete" and not data["errors"]
    done = {(r["configuration"], r["task"]) for r in data["completed"]}
    assert done == {(c, t) for c in CONFIGURATIONS for t in (MC_TASK, GEN_TASK)}
    assert {p.name for p in first.iterdir()} >= {
        *CONFIGURATIONS,
        "leaderboard.png",
    }
    board = json.loads((first / "leaderboard.json").read_text())
    assert board["schema"] == "saeval.leaderboard/1" and len(board["rows"]) == 8
    assert board["family_size"] == 4 * 2 + 4  # per strength target + non-inferiority; controls
    assert (first / "interventions" / "adds" / "comparison.md").is_file()
    definition = json.loads((first / "experiment.json").read_text())["definition"]
    seeds = {c["name"]: c["seed"] for c in definition["configurations"]}
    assert seeds["adds~random1@1"] == seeds["adds~random1@2"] is not None  # one control per k
    drawn = json.loads((first / "controls" / "clamps~random1.json").read_text())
    assert drawn["seed"] == seeds["clamps~random1@1"]
    assert [latent["latent_idx"] for latent in drawn["latents"]] == [7, 9]
    workers = [json.loads((first / "workers" / f"w{i}.json").read_text()) for i in (0, 1)]
    assert all(w["status"] == "finished" and w["units"] > 0 for w in workers)
    assert sum(w["units"] for w in workers) == 18


@pytest.mark.parametrize(
    ("intervention", "separate"), [("adds", ()), ("clamps", ("--no-shared-prefix",))]
)
def test_each_configuration_equals_a_run_of_its_steer_file_alone(
    first: Path,
    setup: tuple[Path, Path],
    tiny_bundle: Path,
    intervention: str,
    separate: tuple[str, ...],
) -> None:
    """The workers' shared passes (9 configurations of a task, each with its own plan) give a
    steer file's numbers: its own shared pass, or each configuration evaluated separately."""
    path, output = setup
    result = invoke(
        "run", path.parent / "steers" / f"{intervention}.csv", "--model", tiny_bundle / "model",
        "--include-path", tiny_bundle / "tasks", "--tasks", f"{MC_TASK},{GEN_TASK}",
        "--limit", "4", "--scale", "1,2", "--device", "cpu", "--output", output,
        "--name", f"alone-{intervention}", *separate,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    alone = output / f"alone-{intervention}"
    tolerance = 1e-5 if separate else 1e-6
    assert_same_documents(first / "baseline", alone / "baseline", tolerance)
    for scale in (1, 2):
        assert_same_documents(
            first / f"{intervention}@{scale}", alone / f"steered@{scale}", tolerance
        )
    assert documents(first / f"{intervention}@1") != documents(first / "baseline")
    assert documents(first / f"{intervention}~random1@1") != documents(first / f"{intervention}@1")


def _start(path: Path, output: Path, name: str, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "saeval", "run", str(path), "--devices", "cpu,cpu"]
    command += ["--output", str(output), "--name", name, *extra]
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def _wait_for(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _completed(run: Path) -> int:
    try:
        return len(manifest(run)["completed"])
    except (OSError, ValueError):
        return 0


def _busy_worker(run: Path) -> tuple[str, int] | None:
    """A worker holding a unit that has not finished yet: (name, pid)."""
    done = {(r["configuration"], r["task"]) for r in manifest(run)["completed"]}
    units = json.loads((run / "experiment.json").read_text())["definition"]["units"]
    for claim in (run / "queue").glob("*.claim"):
        worker = claim.read_text().strip()
        if worker and tuple(units[int(claim.stem)]) not in done:
            record = json.loads((run / "workers" / f"{worker}.json").read_text())
            return worker, record["pid"]
    return None


def test_a_killed_worker_is_recorded_and_resume_completes_with_the_same_numbers(
    first: Path, setup: tuple[Path, Path]
) -> None:
    path, output = setup
    run = output / "killed"
    parent = _start(path, output, "killed")
    _wait_for(lambda: _completed(run) >= 3, "three finished units")
    worker, pid = _wait_for(lambda: _busy_worker(run), "a worker holding a unit")
    os.kill(pid, signal.SIGKILL)
    _, stderr = parent.communicate(timeout=HANG_S)
    assert parent.returncode == 1, stderr
    assert (
        "evaluations did not finish" in stderr and f"worker {worker} stopped by SIGKILL" in stderr
    )
    data = manifest(run)
    assert data["status"] == "failed" and 3 <= len(data["completed"]) < 18
    # a worker claims a group of units of one task: each it held that did not finish is recorded
    held = [(e["type"], e["configuration"], e["task"]) for e in data["errors"]]
    done = {(r["configuration"], r["task"]) for r in data["completed"]}
    assert held and {kind for kind, _, _ in held} == {"WorkerStopped"}
    assert len({unit[1:] for unit in held}) == len(held) and not done & {u[1:] for u in held}
    other = json.loads((run / "workers" / f"{'w1' if worker == 'w0' else 'w0'}.json").read_text())
    assert other["status"] == "finished"  # the other worker went on to the end

    kept = {(r["configuration"], r["task"]): r["finished"] for r in data["completed"]}
    result = invoke("run", path, "--devices", "cpu,cpu", "--output", output, "--name", "killed",
                    "--resume")  # fmt: skip
    assert result.exit_code == 0, result.output
    resumed = manifest(run)
    assert resumed["status"] == "complete" and len(resumed["completed"]) == 18
    again = {(r["configuration"], r["task"]): r["finished"] for r in resumed["completed"]}
    assert all(again[unit] == when for unit, when in kept.items())  # finished units not rerun
    for configuration in CONFIGURATIONS:
        assert_same_documents(first / configuration, run / configuration)


def test_sigterm_stops_every_worker_and_keeps_what_finished(setup: tuple[Path, Path]) -> None:
    path, output = setup
    run = output / "terminated"
    parent = _start(path, output, "terminated")
    _wait_for(lambda: _completed(run) >= 2, "two finished units")
    pids = [json.loads(p.read_text())["pid"] for p in (run / "workers").glob("*.json")]
    parent.send_signal(signal.SIGTERM)
    _, stderr = parent.communicate(timeout=HANG_S)
    assert parent.returncode == 143, stderr
    assert "interrupted by SIGTERM" in stderr and "--resume --name terminated" in stderr
    data = manifest(run)
    assert data["status"] == "interrupted" and len(data["completed"]) >= 2
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_submitit_local_gives_the_same_numbers(first: Path, setup: tuple[Path, Path]) -> None:
    path, output = setup
    result = invoke("run", path, "--executor", "submitit-local", "--devices", "cpu,cpu",
                    "--output", output, "--name", "submitit")  # fmt: skip
    assert result.exit_code == 0, result.output
    run = output / "submitit"
    assert manifest(run)["status"] == "complete" and (run / "submitit").is_dir()
    for configuration in CONFIGURATIONS:
        assert_same_documents(first / configuration, run / configuration)


def test_options_an_experiment_file_sets_are_refused(setup: tuple[Path, Path]) -> None:
    path, output = setup
    result = invoke("run", path, "--scale", "3", "--output", output)
    assert result.exit_code == 2 and "--scale does not apply to an experiment" in result.stderr
    result = invoke("run", path, "--devices", "gpu", "--output", output)
    assert result.exit_code == 2 and "--devices: unknown device 'gpu'" in result.stderr
    steer = path.parent / "steers" / "adds.csv"
    result = invoke("run", steer, "--tasks", MC_TASK, "--devices", "cpu,cpu")
    assert result.exit_code == 2 and "--devices is an option of experiment files" in result.stderr
    result = invoke("run", steer)
    assert result.exit_code == 2 and "--tasks is required with steer files" in result.stderr


def test_every_file_the_workers_wrote_has_its_sha256_in_run_json(first: Path) -> None:
    """Workers save through the run's store, so experiments' files are verified like a run's."""
    recorded = manifest(first)["file_sha256"]
    written = {
        f"{path.parent.name}/{path.name}": hashlib.sha256(path.read_bytes()).hexdigest()
        for configuration in CONFIGURATIONS
        for path in (first / configuration).iterdir()
    }
    assert recorded == written and len(written) >= 3 * len(CONFIGURATIONS)
