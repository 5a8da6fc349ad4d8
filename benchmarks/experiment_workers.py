"""Throughput of one experiment on 2 CPU workers against 1, and what the shared baseline saves.

The grid: 2 multiple-choice tasks of DOCS documents each x (baseline, adds@1, adds@2, clamps@1)
= 8 units, on the tiny GPT-2 and SAE of tests/builders.py and tests/sae_builders.py. Each run
is a fresh ``python -m saeval run bench.yaml`` (imports and model loads included) into an
empty output folder, after one untimed run that warms the disk and datasets caches. Reported:
the wall time of each run, the units per second once the workers have loaded the model (the
wall time less the slowest worker's load), their ratios (goal: 2 workers >= 1.6x 1 worker on 2
cores), and the seconds of the baseline units, which one experiment pays once for all of its
interventions instead of once per intervention.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOCS = 300
TASKS = ("bench_a", "bench_b")
GOAL = 1.6


def build(root: Path) -> Path:
    """The tiny model, SAE, two steer files, two tasks and the experiment file; its path."""
    sys.path.insert(0, str(REPO / "tests"))
    import yaml
    from builders import save_tiny_pretrained
    from experiment_builders import write_steer_files
    from sae_builders import CHOICES, MC_QUESTIONS, build_sae, save_sae, write_steer_csv
    from transformers.utils import logging

    from benchmarks.gpu_check_fixtures import write_task

    logging.disable_progress_bar()
    bundle = root / "bundle"
    save_tiny_pretrained("gpt2", bundle / "model")
    save_sae(build_sae("standard", seed=1), bundle / "sae")
    write_steer_csv(
        bundle / "steer.csv", [(3, 8.0, bundle / "sae", ""), (5, -4.0, bundle / "sae", "")]
    )
    write_steer_files(root, bundle)
    tasks = bundle / "tasks"
    for offset, name in enumerate(TASKS):
        docs = [
            {"question": f"{MC_QUESTIONS[i % len(MC_QUESTIONS)]} ({i})", "choices": list(CHOICES),
             "answer": (i + offset) % len(CHOICES)}
            for i in range(DOCS)
        ]  # fmt: skip
        write_task(tasks, name, docs)
    experiment = {
        "model": str(bundle / "model"),
        "include_path": str(tasks),
        "tasks": {"target": [TASKS[0]], "capability": [TASKS[1]]},
        "interventions": {
            "adds": {"steer": "steers/adds.csv", "scales": [1, 2]},
            "clamps": {"steer": "steers/clamps.csv", "scales": [1]},
        },
    }
    path = root / "bench.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return path


def timed_run(path: Path, output: Path, devices: str) -> tuple[float, dict[str, Any]]:
    """Wall seconds of one experiment run, and what its run folder recorded."""
    command = [sys.executable, "-m", "saeval", "run", str(path), "--devices", devices]
    command += ["--output", str(output), "--name", "bench"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    run = output / "bench"
    manifest = json.loads((run / "run.json").read_text())
    loads = [json.loads(p.read_text())["model_load_s"] for p in (run / "workers").glob("*.json")]
    return wall, {"manifest": manifest, "load_s": max(loads)}


def main(argv: Sequence[str] | None = None) -> None:
    """Build the fixtures, run the grid on 1 and 2 CPU workers and print the comparison."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.experiment_workers")
    parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="saeval-workers-bench-") as folder:
        root = Path(folder)
        path = build(root)
        timed_run(path, root / "warm", "cpu")
        one, facts_one = timed_run(path, root / "one", "cpu")
        two, facts_two = timed_run(path, root / "two", "cpu,cpu")
    print(report(one, facts_one, two, facts_two))


def report(one: float, facts_one: dict[str, Any], two: float, facts_two: dict[str, Any]) -> str:
    """The table: wall times, units per second after the model load, ratios, baseline cost."""
    units = len(facts_one["manifest"]["completed"])
    rate_one = units / (one - facts_one["load_s"])
    rate_two = units / (two - facts_two["load_s"])
    ratio = rate_two / rate_one
    verdict = "ok" if ratio >= GOAL else "MISSED"
    completed = facts_two["manifest"]["completed"]
    baseline = sum(r["seconds"] for r in completed if r["configuration"] == "baseline")
    interventions = 2
    return "\n".join(
        [
            f"experiment of {units} units ({len(TASKS)} tasks x baseline, adds@1, adds@2, "
            f"clamps@1; {DOCS} documents each) on tiny GPT-2, {os.cpu_count()} CPU cores",
            f"  1 worker  (cpu)     {one:7.2f} s wall, {rate_one:5.2f} units/s after the load",
            f"  2 workers (cpu,cpu) {two:7.2f} s wall, {rate_two:5.2f} units/s after the load",
            f"  throughput 2 / 1 workers {ratio:5.2f}x  goal >= {GOAL} {verdict} "
            f"(wall time ratio {one / two:4.2f}x)",
            f"  shared baseline: {baseline:.2f} s once for {interventions} interventions "
            f"(a run per intervention would spend {baseline * interventions:.2f} s on baselines)",
        ]
    )


if __name__ == "__main__":
    main()
