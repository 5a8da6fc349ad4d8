"""An experiment's wall time against a plain baseline-only run of the same tasks, in one run.

The demo experiment (``steers/demo_experiment.yaml``: 2 interventions x 2 strengths + 1 random
control each = 9 configurations with the baseline, on the demo's 2 tasks, 2 CPU workers) on
Gemma 3 270M, ``--limit`` documents per task. Each worker claims a group of units of one task
and evaluates them in one shared pass (``saeval.run.units``). The baseline-only run evaluates
the same tasks and documents once, with saeval's own request loop, dtype and batch size, in one
process (``saeval run`` of the dogs steer file at strength 0, ``--no-baseline --kl-docs 0``):
the cost of evaluating the tasks once. (lm-eval's own loop, which computes the logits of every
position, is no fair unit: ``benchmarks/run_vs_lmeval.py`` compares against it.) Every command
is a fresh subprocess (imports and model loads included), after one untimed baseline-only run
that warms the disk cache.

The layer-pass prediction of the ratio is (L + 9 (N - L)) / N: the demo's hooks
(``blocks.6.hook_resid_post``) leave L = 7 of Gemma 3's N = 18 layers unsteered, which one pass
computes once for all 9 configurations; without sharing it would be 9. The machine's load
(``uptime``) is printed before and after: the ratio is only as good as the quiet it ran in.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = REPO / "steers" / "demo_experiment.yaml"
TASKS = ("saeval_demo_dog_preference", "saeval_demo_knowledge")
CONFIGURATIONS = 9
SHARED_LAYERS, LAYERS = 7, 18  # blocks.6.hook_resid_post of Gemma 3 270M
LIMIT = 40
GOAL = 0.10  # within 10% of the prediction


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def timed(command: Sequence[str], cwd: Path) -> float:
    """Wall seconds of one command (it must succeed)."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def baseline_only(root: Path, limit: int) -> list[str]:
    """One evaluation of the demo tasks by saeval's own loop in one process: the dogs steer file
    at strength 0 (steering adds nothing), without a baseline and without KL."""
    return [
        sys.executable, "-m", "saeval", "run", str(REPO / "steers" / "demo.csv"), "--model",
        "saeval-demo", "--tasks",
        ",".join(TASKS), "--scale", "0", "--no-baseline", "--kl-docs", "0", "--limit",
        str(limit), "--output", str(root / "baseline-only"), "--name", f"r{time.time_ns()}",
    ]  # fmt: skip


def experiment(root: Path, limit: int, name: str) -> list[str]:
    """The demo experiment on 2 CPU workers into a fresh output folder."""
    return [
        sys.executable, "-m", "saeval", "run", str(EXPERIMENT), "--devices", "cpu,cpu",
        "--limit", str(limit), "--output", str(root / name), "--name", "bench",
    ]  # fmt: skip


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main(argv: Sequence[str] | None = None) -> None:
    """Time the baseline-only run and the experiment; print the ratio beside the prediction."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.experiment_pass")
    parser.add_argument("--limit", type=int, default=LIMIT, help="documents per task")
    args = parser.parse_args(argv)
    from benchmarks.steering import _gemma_dir

    if _gemma_dir() is None:
        return
    print(f"load before: {uptime()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="saeval-experiment-bench-") as folder:
        root = Path(folder)
        timed(baseline_only(root, args.limit), root)  # warm-up
        base = timed(baseline_only(root, args.limit), root)
        run = timed(experiment(root, args.limit, "experiment"), root)
    print(f"load after:  {uptime()}")
    print(report(base, run, args.limit))


def report(base: float, run: float, limit: int) -> str:
    """The two wall times, their ratio and the layer-pass prediction."""
    predicted = (SHARED_LAYERS + CONFIGURATIONS * (LAYERS - SHARED_LAYERS)) / LAYERS
    ratio = run / base
    verdict = "within 10%" if abs(ratio - predicted) <= GOAL * predicted else "MISSED"
    if ratio < (1 - GOAL) * predicted:
        verdict = "faster than predicted"
    return "\n".join(
        [
            f"demo experiment ({CONFIGURATIONS} configurations x {len(TASKS)} tasks, {limit} "
            f"documents each, 2 CPU workers) on Gemma 3 270M, {os.cpu_count()} CPU cores",
            f"  baseline-only (one evaluation)      {base:7.1f} s wall",
            f"  experiment, one pass per task       {run:7.1f} s wall",
            f"  experiment / baseline-only {ratio:5.2f}x; layer-pass prediction {predicted:4.2f}x "
            f"({verdict}; {CONFIGURATIONS}x without sharing)",
        ]
    )


if __name__ == "__main__":
    main()
