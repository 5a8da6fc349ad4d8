"""Progress in log files: `saeval run` with stdout/stderr redirected to a file writes its
progress lines (with counts) as the work happens, not after the run ends; results files get the
permissions the umask gives a plain write."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from sae_builders import GEN_TASK, MC_TASK

from saeval.cli.progress import ProgressEvents
from saeval.cli.progress_log import LogLines, clock, eta
from saeval.records.run_record import TaskRecord

REPO = Path(__file__).resolve().parents[1]


def test_run_into_a_log_file_writes_counted_progress_before_it_ends(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    log = tmp_path / "run.log"
    args = ["run", str(tiny_bundle / "steer.csv"), "--model", str(tiny_bundle / "model")]
    args += ["--include-path", str(tiny_bundle / "tasks"), "--output", str(tmp_path / "out")]
    args += ["--device", "cpu", "--tasks", f"{MC_TASK},{GEN_TASK}", "--name", "r"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"}
    with log.open("w") as stream:
        done = subprocess.run(
            [sys.executable, "-m", "saeval", *args],
            stdout=stream,
            stderr=stream,
            env=env,
            cwd=tmp_path,
            preexec_fn=lambda: os.umask(0o022),
            check=False,
        )
    lines = log.read_text().splitlines()
    assert done.returncode == 0, "\n".join(lines)
    end = next(i for i, line in enumerate(lines) if line.startswith("comparison written to"))
    before = "\n".join(lines[:end])
    units = [("baseline", MC_TASK), ("baseline", GEN_TASK), ("steered", MC_TASK)]
    for step, (configuration, task) in enumerate([*units, ("steered", GEN_TASK)], start=1):
        unit = re.escape(f"[{step}/4] {configuration} {task}")
        assert re.search(rf"^{unit}: started$", before, re.M)
        assert re.search(rf"^{unit}: done in \d+:\d\d:\d\d; {step}/4 done", before, re.M)
    counted = [  # (unit, what): its first count (0/total) and its last (total/total)
        ("[1/4] baseline tiny_mc", "requests"),  # 8 documents x 4 choices
        ("[2/4] baseline tiny_gen", "generations scored"),
        ("[4/4] steered tiny_gen", "KL documents"),
    ]
    for unit, what in counted:
        first = re.search(rf"^{re.escape(unit)}: 0/(\d+) {what}, ETA \?$", before, re.M)
        assert first is not None, (unit, what)
        assert f"{unit}: {first[1]}/{first[1]} {what}\n" in before + "\n"
    assert "[1/4] baseline tiny_mc: 32/32 requests" in before
    # the shared pass of tiny_mc measured the steered KL too: no KL pass of its own to count
    assert "[3/4] steered tiny_mc: 0/" not in before
    files = [path for path in (tmp_path / "out" / "r").rglob("*") if path.is_file()]
    assert files and {oct(path.stat().st_mode & 0o777) for path in files} == {"0o644"}


def test_log_lines_throttle_counts_to_the_interval_and_estimate_the_rest() -> None:
    written: list[str] = []
    now = [0.0]
    lines = LogLines(written.append, interval=30.0, now=lambda: now[0])
    lines.started("steered@2", "mmlu", 3, 4)
    for done, at in [(0, 0.0), (10, 10.0), (20, 31.0), (30, 40.0), (40, 62.0), (100, 150.0)]:
        now[0] = at
        lines.counted("requests", done, 100)
    now[0] = 160.0
    lines.finished("steered@2", "mmlu", 4, cached=False)
    assert written == [
        "[3/4] steered@2 mmlu: started",
        "[3/4] steered@2 mmlu: 0/100 requests, ETA ?",
        # 20 done in 31 s: 80 more at 1.55 s each
        "[3/4] steered@2 mmlu: 20/100 requests, ETA 0:02:04",
        "[3/4] steered@2 mmlu: 40/100 requests, ETA 0:01:33",
        "[3/4] steered@2 mmlu: 100/100 requests",
        # one unit evaluated in 160 s, one left
        "[3/4] steered@2 mmlu: done in 0:02:40; 3/4 done, ETA 0:02:40",
    ]


def test_clock_and_eta_by_hand() -> None:
    assert clock(3725.4) == "1:02:05"
    assert eta(30.0, 3, 12) == "ETA 0:01:30"
    assert eta(5.0, 0, 12) == "ETA ?"


def test_a_cached_unit_says_so_and_does_not_count_toward_the_eta() -> None:
    written: list[str] = []
    with ProgressEvents(live=False) as events:
        events.log = LogLines(written.append, now=lambda: 0.0)
        events.task_started("baseline", MC_TASK, 1, 2)
        events.task_finished(
            TaskRecord("baseline", MC_TASK, 0.0, "now", "r.json", [], reused_from="run-1")
        )
    assert written[-1] == f"[1/2] baseline {MC_TASK}: reused from the cache; 1/2 done"


def test_units_side_by_side_finish_under_their_own_names() -> None:
    written: list[str] = []
    now = [0.0]
    lines = LogLines(written.append, now=lambda: now[0])
    lines.started("a@1", "mc", 1, 4)
    now[0] = 5.0
    lines.started("a@2", "mc", 2, 4)
    now[0] = 20.0
    lines.finished("a@2", "mc", 4, cached=False)
    now[0] = 40.0
    lines.finished("a@1", "mc", 4, cached=False)
    assert written[2:] == [
        # 1 unit in 20 s since the first started: 3 left
        "[2/4] a@2 mc: done in 0:00:15; 1/4 done, ETA 0:01:00",
        # 2 units in 40 s: 2 left at 20 s each
        "[1/4] a@1 mc: done in 0:00:40; 2/4 done, ETA 0:00:40",
    ]


def test_a_resumed_run_counts_the_units_done_before() -> None:
    written: list[str] = []
    lines = LogLines(written.append, now=lambda: 0.0)
    lines.started("steered", "mc", 3, 4)  # steps 1 and 2 were done by the first run
    lines.finished("steered", "mc", 4, cached=False)
    assert written[-1] == "[3/4] steered mc: done in 0:00:00; 3/4 done, ETA 0:00:00"


def test_the_eta_counts_every_unit_a_shared_pass_did() -> None:
    """Two tasks of three configurations each, sharing passes: the first unit of a task does
    the work of all three, so after it one task's work is left, not five units'."""
    written: list[str] = []
    now = [0.0]
    lines = LogLines(written.append, now=lambda: now[0])
    for task in ("a", "b"):
        lines.grouped(task, 3)
    order = [(c, t) for c in ("baseline", "steered@1", "steered@2") for t in ("a", "b")]
    for step, (configuration, task) in enumerate(order, start=1):
        lines.started(configuration, task, step, 6)
        now[0] += 60.0 if configuration == "baseline" else 0.0
        lines.finished(configuration, task, 6, cached=False)
    done = [line for line in written if ": done in" in line]
    # 3 units' work in 60 s; 6 - 1 done - 2 done by the shared pass = 3 left: 60 s
    assert done[0] == "[1/6] baseline a: done in 0:01:00; 1/6 done, ETA 0:01:00"
    assert done[1] == "[2/6] baseline b: done in 0:01:00; 2/6 done"  # nothing left to evaluate
    assert done[-1] == "[6/6] steered@2 b: done in 0:00:00; 6/6 done"
