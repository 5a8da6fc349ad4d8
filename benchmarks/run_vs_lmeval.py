"""Wall time of `saeval run` against separate `lm_eval` invocations, side by side in one run.

Two scenarios on one tiny model, SAE and local tasks (tests/builders.py, tests/sae_builders.py):

- baseline + 1 strength: `saeval run` vs `python -m lm_eval --model hf` plus
  `saeval harness --model sae_steered` (lm-eval's CLI with saeval's model registered);
- a 4-strength sweep: `saeval run --scale 0,0.5,1,2` vs 1 + 4 separate invocations.

Every command is a fresh subprocess (imports and model load included), as a user would run it,
after one untimed run so that no command pays for a cold disk cache or builds the datasets cache;
each saeval run gets an empty output folder, so no cached baseline is reused. Ratios below 1 mean
saeval is faster: it imports and loads the model once for all configurations.
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
TASKS = "tiny_mc,tiny_gen,tiny_rolling"
SWEEP = ("0", "0.5", "1", "2")


def build_fixtures(root: Path) -> tuple[Path, Path, Path]:
    """A tiny GPT-2 folder, a steer file on a tiny SAE, and the three tiny tasks."""
    sys.path.insert(0, str(REPO / "tests"))
    from transformers.utils import logging

    logging.disable_progress_bar()
    from builders import save_tiny_pretrained
    from sae_builders import build_sae, save_sae, write_steer_csv, write_tasks

    model = save_tiny_pretrained("gpt2", root / "model")
    sae = save_sae(build_sae("standard", seed=1), root / "sae")
    steer = write_steer_csv(root / "steer.csv", [(3, 8.0, sae, "")])
    return model, steer, write_tasks(root / "tasks")


def timed(command: Sequence[str], cwd: Path) -> float:
    """Seconds one subprocess takes; its output is discarded, a failure stops the benchmark."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    return seconds


class Commands:
    """The command lines of both ways to evaluate, on one set of fixtures."""

    def __init__(self, root: Path, model: Path, steer: Path, tasks: Path, limit: int | None):
        self.root, self.model, self.steer, self.tasks = root, model, steer, tasks
        self.limit = [] if limit is None else ["--limit", str(limit)]
        self.count = 0

    def _output(self) -> str:
        self.count += 1
        return str(self.root / f"out{self.count}")

    def saeval_run(self, scales: Sequence[str]) -> list[str]:
        """`saeval run` with the given strengths, into a fresh output folder."""
        return [
            *(sys.executable, "-m", "saeval", "run", str(self.steer)),
            *("--tasks", TASKS, "--model", str(self.model), "--include-path", str(self.tasks)),
            *("--device", "cpu", "--batch-size", "8", "--scale", ",".join(scales)),
            *("--output", self._output(), *self.limit),
        ]

    def lm_eval(self, model: str, model_args: str) -> list[str]:
        """One lm-eval CLI invocation (`python -m lm_eval`, or `saeval harness` for sae_steered)."""
        head = [sys.executable, "-m", "lm_eval"]
        if model == "sae_steered":
            head = [sys.executable, "-m", "saeval", "harness"]
        return [
            *head,
            *("--model", model, "--model_args", model_args, "--tasks", TASKS),
            *("--include_path", str(self.tasks), "--device", "cpu", "--batch_size", "8"),
            *("--output_path", self._output(), "--log_samples", *self.limit),
        ]

    def baseline(self) -> list[str]:
        """The plain Hugging Face model through lm-eval."""
        return self.lm_eval("hf", f"pretrained={self.model}")

    def steered(self, scale: str) -> list[str]:
        """The steered model through lm-eval's CLI."""
        return self.lm_eval(
            "sae_steered", f"pretrained={self.model},steer_path={self.steer},scale={scale}"
        )


def measure(commands: Commands) -> list[tuple[str, float, float]]:
    """(scenario, saeval seconds, separate-invocations seconds) for both scenarios."""
    root = commands.root
    timed(commands.saeval_run(["1"]), root)  # warm-up: disk cache, datasets' Arrow cache
    one = timed(commands.saeval_run(["1"]), root)
    separate_one = timed(commands.baseline(), root) + timed(commands.steered("1"), root)
    sweep = timed(commands.saeval_run(SWEEP), root)
    separate_sweep = timed(commands.baseline(), root)
    separate_sweep += sum(timed(commands.steered(scale), root) for scale in SWEEP)
    return [
        ("baseline + 1 strength", one, separate_one),
        (f"baseline + {len(SWEEP)} strengths", sweep, separate_sweep),
    ]


def report(rows: Sequence[tuple[str, float, float]]) -> str:
    """A plain-text table of the timings and the ratios."""
    lines = [f"{'scenario':<24} {'saeval run':>11} {'lm_eval x N':>12} {'ratio':>6}"]
    for scenario, ours, theirs in rows:
        lines.append(f"{scenario:<24} {ours:>10.1f}s {theirs:>11.1f}s {ours / theirs:>6.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Build the fixtures, time both scenarios and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="documents per task")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="saeval-bench-") as folder:
        root = Path(folder)
        commands = Commands(root, *build_fixtures(root), limit=args.limit)
        print(f"saeval run vs separate lm_eval invocations ({TASKS}, tiny GPT-2, CPU)")
        print(report(measure(commands)))


if __name__ == "__main__":
    main()
