"""`accelerate launch -m saeval run ...` with two CPU processes (gloo) on the tiny bundle.

On CPUs accelerate starts several processes only through its multi-process launcher
(``--multi_gpu``) with ``ACCELERATE_USE_CPU=1``; ``accelerate launch --cpu`` starts one. Each
rank logs the requests its model evaluated (``SAEVAL_RANK_LOG``): the test reads what each rank
really did, not what it should have done.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import HANG_S, invoke
from sae_builders import GEN_TASK, MC_TASK, ROLLING_TASK
from test_experiment_run import documents

TASKS = (MC_TASK, GEN_TASK, ROLLING_TASK)
DOCUMENTS = {MC_TASK: 8, GEN_TASK: 4, ROLLING_TASK: 4}  # every document of each tiny task


def _args(bundle: Path, output: Path, name: str, tasks: tuple[str, ...]) -> list[str]:
    return [
        "run", str(bundle / "steer.csv"), "--model", str(bundle / "model"),
        "--include-path", str(bundle / "tasks"), "--tasks", ",".join(tasks),
        "--kl-docs", "3", "--output", str(output), "--name", name,
    ]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _launch(args: list[str], log: Path) -> subprocess.CompletedProcess[str]:
    """``accelerate launch`` of two CPU processes running ``saeval`` with ``args``."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    command += ["--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
    command += ["--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    env = os.environ | {"ACCELERATE_USE_CPU": "1", "SAEVAL_RANK_LOG": str(log)}
    return subprocess.run(
        [*command, "-m", "saeval", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_S,
        check=False,
    )


def _rank_log(log: Path, rank: int) -> list[dict[str, Any]]:
    lines = (log / f"rank-{rank}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _numbers(metrics: dict[str, Any]) -> list[float]:
    """Every number of a document's metric values (a perplexity's is a [loglikelihood, length])."""
    values = [
        v for value in metrics.values() for v in (value if isinstance(value, list) else [value])
    ]
    return [float(value) for value in values]


def _kl_documents(configuration: Path, task: str) -> list[dict[str, Any]]:
    (path,) = configuration.glob(f"side_effects_{task}_*.json")
    return list(json.loads(path.read_text())["kl"]["documents"])


@pytest.fixture(scope="module")
def runs(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(output folder, rank log folder): run ``one`` in this process, run ``two`` on 2 ranks."""
    output = tmp_path_factory.mktemp("dp") / "results"
    log = output.parent / "ranks"
    one = invoke(*_args(tiny_bundle, output, "one", TASKS), "--device", "cpu")
    assert one.exit_code == 0, one.output
    two = _launch(_args(tiny_bundle, output, "two", TASKS), log)
    assert two.returncode == 0, two.stdout + two.stderr
    assert two.stdout.count("results: ") == 1  # rank 1 reports nothing
    return output, log


def test_two_ranks_give_the_numbers_of_one_process(runs: tuple[Path, Path]) -> None:
    output, _ = runs
    one, two = output / "one", output / "two"
    for configuration in ("baseline", "steered"):
        docs_one, docs_two = documents(one / configuration), documents(two / configuration)
        assert set(docs_one) == set(docs_two) == set(TASKS)
        for task in TASKS:
            assert len(docs_two[task]) == DOCUMENTS[task]
            for (id_a, resps_a, metrics_a), (id_b, resps_b, metrics_b) in zip(
                docs_one[task], docs_two[task], strict=True
            ):
                assert id_a == id_b and resps_a == pytest.approx(resps_b, abs=1e-6), task
                assert metrics_a.keys() == metrics_b.keys()
                assert _numbers(metrics_a) == pytest.approx(_numbers(metrics_b), abs=1e-6), task
    assert documents(two / "steered") != documents(two / "baseline")
    for task in TASKS:  # KL by rank 0 on the gathered documents: the one-process numbers
        kl_one, kl_two = _kl_documents(one / "steered", task), _kl_documents(two / "steered", task)
        assert [d["doc_id"] for d in kl_two] == [0, 1, 2] == [d["doc_id"] for d in kl_one]
        assert [d["sum"] for d in kl_two] == pytest.approx([d["sum"] for d in kl_one], abs=1e-6)
        assert all(d["sum"] > 0 for d in kl_two)


def test_each_rank_evaluates_its_half_and_rank_0_alone_writes(runs: tuple[Path, Path]) -> None:
    output, log = runs
    seen: dict[tuple[float | None, str], list[set[int]]] = {}
    for rank in (0, 1):
        for record in _rank_log(log, rank):
            assert (record["rank"], record["world_size"]) == (rank, 2)
            (task,) = record["tasks"]
            seen.setdefault((record["scale"], task), []).append(set(record["doc_ids"]))
    assert set(seen) == {(scale, task) for scale in (None, 1.0) for task in TASKS}
    for rank in (0, 1):  # the baseline's pass answered the steered configuration's requests too
        calls = [(r["scale"], r["forward_calls"]) for r in _rank_log(log, rank)]
        assert all(n > 0 for scale, n in calls if scale is None)
        assert all(n == 0 for scale, n in calls if scale == 1.0)
    for (_, task), (mine, theirs) in seen.items():
        assert len(mine) == len(theirs) == DOCUMENTS[task] // 2  # about half each, no overlap
        assert not mine & theirs and mine | theirs == set(range(DOCUMENTS[task]))
    assert {path.name for path in output.iterdir()} == {"one", "two", ".cache"}
    data = json.loads((output / "two" / "run.json").read_text())
    assert data["status"] == "complete" and data["spec"]["data_parallel"] == 2
    assert all(record["reused_from"] is None for record in data["completed"])  # key has ranks


def test_a_cached_baseline_is_skipped_by_every_rank(
    runs: tuple[Path, Path], tiny_bundle: Path
) -> None:
    output, _ = runs
    log = output.parent / "ranks-cached"
    three = _launch(_args(tiny_bundle, output, "three", (MC_TASK,)), log)
    assert three.returncode == 0, three.stdout + three.stderr
    data = json.loads((output / "three" / "run.json").read_text())
    reused = {r["configuration"]: r["reused_from"] for r in data["completed"]}
    assert reused == {"baseline": "two", "steered": None}
    for rank in (0, 1):
        assert [(r["scale"], r["tasks"]) for r in _rank_log(log, rank)] == [(1.0, [MC_TASK])]
        assert _rank_log(log, rank)[0]["forward_calls"] > 0  # alone: its own pass


def test_an_experiment_under_a_launcher_is_one_error(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from experiment_builders import write_experiment

    path = write_experiment(tmp_path, tiny_bundle)
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = invoke("run", str(path), "--output", str(tmp_path / "out"))
    assert result.exit_code == 2 and "Traceback" not in result.output  # a usage error
    error, hint = result.stderr.strip().splitlines()
    assert error.startswith("error: ") and "does not run under accelerate launch" in error
    assert hint.startswith("hint: pass --devices")
    assert not (tmp_path / "out").exists()
