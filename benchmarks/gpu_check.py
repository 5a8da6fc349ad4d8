"""`make gpu-check`: everything saeval has never run on a GPU, in one call within a time budget.

Run where the wheels of `make gpu-wheels` are installed (the Makefile puts them and the tree on
PYTHONPATH). It builds its fixtures (benchmarks/gpu_check_fixtures.py), then, in this order and
each only while the budget lasts (what does not fit is recorded as skipped, never overrun):

1. the CUDA-marked tests (tests/test_cuda.py) on ``--device``;
2. throughput: request tokens per second of `saeval run` baseline and steered (one add row at
   the middle layer) against lm-eval's own ``hf`` model, same requests, batch size and dtype;
3. a baseline + 4-strength sweep with the shared prefix against ``--no-shared-prefix``, next to
   the layer-pass prediction (skipped with a note where `saeval run` has no such option);
4. the steering hooks' cost per forward pass, with the finite check read on the device once per
   pass and read at every hook call (benchmarks/gpu_check_hooks.py, in this process);
5. generated tokens per second of a baseline + 4-strength generation sweep, one shared
   generation against ``--no-shared-prefix``, and the share of identical generations
   (benchmarks/gpu_check_generation.py).

Every `saeval run` is a fresh subprocess; times are those of the evaluations, without imports
or the model load (each run evaluates a small warm-up task first). One JSON results file
(``$OUT/gpu-check.json`` when OUT is set) and a summary on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.gpu_check_fixtures import (
    BENCH_TASK,
    REPO,
    WARM_TASK,
    Fixtures,
    Profile,
    build,
    profile_for,
)
from benchmarks.gpu_check_generation import generation_sweep, summary_lines
from benchmarks.gpu_check_hooks import hook_overhead
from saeval.atomic import write_atomic
from saeval.records.run_folder import BASELINE, run_configurations

SCHEMA = "saeval.gpu-check/1"
SWEEP = ("0.5", "1", "2", "4")
BUDGET_S = 450.0  # of the 8 minutes the check may take, the rest is the wheels' install
MIN_STEP_S = 30.0  # a step is not started with less left than this
TAIL = 2000  # characters of a failed command's output kept in the results


class Budget:
    """Seconds left until a deadline."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left (negative once past the deadline)."""
        return self.deadline - time.monotonic()


class OutOfTime(Exception):
    """The budget ran out before or during a step."""


@dataclass
class Done:
    """A finished subprocess."""

    stdout: str
    seconds: float


class Failed(Exception):
    """A subprocess exited non-zero; the message holds its exit code and output's end."""


def run(command: Sequence[str], budget: Budget, env: dict[str, str] | None = None) -> Done:
    """Run ``command`` in the repository within the budget; OutOfTime or Failed otherwise."""
    timeout = budget.left() - 5
    if timeout < MIN_STEP_S:
        raise OutOfTime(f"{budget.left():.0f} s left")
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COLUMNS": "200"}
    started = time.perf_counter()
    with subprocess.Popen(
        list(command), cwd=REPO, env={**full_env, **(env or {})}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    ) as process:  # fmt: skip
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its workers too, which hold the device
            process.communicate()
            raise OutOfTime(f"stopped after {timeout:.0f} s: {' '.join(command[:4])} ...") from None
    if process.returncode != 0:
        output = (stdout + stderr)[-TAIL:]
        raise Failed(f"exit {process.returncode}: {' '.join(command[:4])} ...\n{output}")
    return Done(stdout, time.perf_counter() - started)


def guarded(name: str, budget: Budget, step: Any, *args: Any) -> dict[str, Any]:
    """Run one step; a budget overrun or a failed command becomes its recorded status."""
    started = time.monotonic()
    try:
        found: dict[str, Any] = {"status": "ok", **step(*args, budget)}
    except OutOfTime as reason:
        found = {"status": "skipped", "reason": f"time budget: {reason}"}
    except Failed as failure:
        found = {"status": "failed", "reason": str(failure)}
    except Exception as error:  # a one-shot check records every step, whatever broke in one
        found = {"status": "error", "reason": f"{type(error).__name__}: {error}"}
    found["step_s"] = round(time.monotonic() - started, 1)
    print(f"[{name}] {found['status']} ({found['step_s']} s)", flush=True)
    return found


def cuda_tests(profile: Profile, root: Path, budget: Budget) -> dict[str, Any]:
    """tests/test_cuda.py on the device; the counts from its JUnit report."""
    report = root / "cuda-tests.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda"]
    command += ["tests/test_cuda.py", f"--junitxml={report}"]
    try:
        done = run(command, budget, env={"SAEVAL_TEST_DEVICE": profile.device})
    except Failed as failure:
        return {"status": "failed", **_junit(report), "reason": str(failure)}
    return {**_junit(report), "summary": done.stdout.strip().splitlines()[-1]}


def _junit(report: Path) -> dict[str, Any]:
    """Test counts and the failed tests' names from a JUnit XML report."""
    if not report.is_file():
        return {}
    suite = ElementTree.parse(report).getroot().find("testsuite")
    assert suite is not None
    failed = [
        case.get("name") for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]  # fmt: skip
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    return {**counts, "failed_tests": failed}


def saeval_run(
    fixtures: Fixtures,
    profile: Profile,
    output: Path,
    scales: Sequence[str],
    *extra: str,
    tasks: Sequence[str] = (WARM_TASK, BENCH_TASK),
) -> list[str]:
    """A `saeval run` of ``tasks`` (a warm-up, then the measured one) at ``scales``, KL off."""
    return [
        *(sys.executable, "-m", "saeval", "run", str(fixtures.steer)),
        *("--model", str(fixtures.model), "--include-path", str(fixtures.tasks)),
        *("--tasks", ",".join(tasks)),
        *("--device", profile.device, "--dtype", profile.dtype),
        *("--batch-size", str(profile.batch_size), "--kl-docs", "0", "--scale", ",".join(scales)),
        *("--output", str(output.parent), "--name", output.name, *extra),
    ]  # fmt: skip


def bench_seconds(run_folder: Path, task: str = BENCH_TASK) -> dict[str, float]:
    """Seconds of the measured ``task`` per configuration, from the run's manifest."""
    manifest = json.loads((run_folder / "run.json").read_text())
    return {
        record["configuration"]: record["seconds"]
        for record in manifest["completed"]
        if record["task"] == task
    }


def throughput(fixtures: Fixtures, profile: Profile, root: Path, budget: Budget) -> dict[str, Any]:
    """Tokens per second of saeval's baseline and steered model and of lm-eval's ``hf``."""
    folder = root / "runs" / "throughput"
    separate = ["--no-shared-prefix"] if shared_prefix_available() else []  # per-configuration
    done = run(saeval_run(fixtures, profile, folder, ["1"], *separate), budget)
    seconds = bench_seconds(folder)
    steered = next(name for name in seconds if name != BASELINE)
    reference = [sys.executable, "-m", "benchmarks.gpu_check_lm_eval"]
    reference += ["--model", str(fixtures.model)]
    reference += ["--include-path", str(fixtures.tasks), "--tasks", f"{WARM_TASK},{BENCH_TASK}"]
    reference += ["--device", profile.device, "--dtype", profile.dtype]
    hf = json.loads(run([*reference, "--batch-size", str(profile.batch_size)], budget).stdout)
    seconds = {
        "saeval_baseline": seconds[BASELINE],
        "saeval_steered": seconds[steered],
        "lm_eval_hf": hf[BENCH_TASK],
    }
    rates = {name: fixtures.bench_tokens / value for name, value in seconds.items()}
    pairs = [("saeval_steered", "saeval_baseline"), ("saeval_baseline", "lm_eval_hf")]
    pairs.append(("saeval_steered", "lm_eval_hf"))
    return {
        "request_tokens": fixtures.bench_tokens,
        "requests": 4 * profile.docs,
        "seconds": seconds,
        "tokens_per_s": {name: round(rate, 1) for name, rate in rates.items()},
        "ratios": {f"{a} / {b}": round(rates[a] / rates[b], 3) for a, b in pairs},
        "saeval_run_wall_s": round(done.seconds, 1),
    }


def shared_prefix_available() -> bool:
    """Whether this tree's `saeval run` has ``--no-shared-prefix``."""
    command = [sys.executable, "-m", "saeval", "run", "--help"]
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    return "--no-shared-prefix" in done.stdout


def shared_prefix(
    fixtures: Fixtures, profile: Profile, root: Path, budget: Budget
) -> dict[str, Any]:
    """A baseline + 4-strength sweep, shared prefix against separate, and their agreement."""
    if not shared_prefix_available():
        return {"status": "not available", "reason": "shared-prefix: not available in this tree"}
    shared, separate = root / "runs" / "shared", root / "runs" / "separate"
    wall_shared = run(saeval_run(fixtures, profile, shared, SWEEP), budget).seconds
    extra = "--no-shared-prefix"
    wall_separate = run(saeval_run(fixtures, profile, separate, SWEEP, extra), budget).seconds
    seconds = {name: sum(bench_seconds(folder).values()) for name, folder in
               (("shared", shared), ("separate", separate))}  # fmt: skip
    configurations = 1 + len(SWEEP)
    n, hook = profile.layers, profile.hook_layer
    return {
        "configurations": configurations,
        "hook_layer": hook,
        "seconds": seconds,
        "wall_s": {"shared": round(wall_shared, 1), "separate": round(wall_separate, 1)},
        "ratio": round(seconds["shared"] / seconds["separate"], 3),
        "predicted_ratio": round((hook + configurations * (n - hook)) / (configurations * n), 3),
        "agreement": agreement(shared, separate),
    }


def agreement(a: Path, b: Path) -> dict[str, Any]:
    """The largest log-likelihood difference and whether every document's acc is the same,
    between the same configurations of two runs of the measured task."""
    largest, same_acc = 0.0, True
    for name, folder in run_configurations(a).items():
        ours, theirs = _samples(folder), _samples(run_configurations(b)[name])
        for doc_id, (logliks, acc) in ours.items():
            other_logliks, other_acc = theirs[doc_id]
            largest = max(
                largest, *(abs(x - y) for x, y in zip(logliks, other_logliks, strict=True))
            )
            same_acc = same_acc and acc == other_acc
    return {"max_abs_loglik_diff": largest, "same_acc": same_acc}


def _samples(folder: Path) -> dict[int, tuple[list[float], float]]:
    """Each document's choice log-likelihoods and acc from the measured task's samples file."""
    (file,) = folder.glob(f"samples_{BENCH_TASK}_*.jsonl")
    found = {}
    for line in file.read_text().splitlines():
        record = json.loads(line)
        logliks = [float(resp[0]) for resp in record["filtered_resps"]]
        found[record["doc_id"]] = (logliks, float(record["acc"]))
    return found


def environment(profile: Profile) -> dict[str, Any]:
    """Versions and the device this check ran on."""
    import importlib.metadata as metadata

    import torch

    names = ("torch", "transformers", "accelerate", "lm_eval", "sae_lens", "datasets", "typer")
    device = torch.cuda.get_device_name(profile.device) if profile.device != "cpu" else "cpu"
    check = [sys.executable, "-m", "pip", "check"]
    conflicts = subprocess.run(check, capture_output=True, text=True, check=False).stdout
    return {
        "pip_check": conflicts.strip().splitlines(),  # requirements unmet in this environment
        "python": sys.version.split()[0],
        "packages": {name: metadata.version(name) for name in names},
        "device_name": device,
        "cuda": torch.version.cuda,
        "cpu_count": os.cpu_count(),
    }


def summary(results: dict[str, Any]) -> str:
    """The results for people: one line per measurement."""
    steps = results["steps"]
    lines = [f"saeval GPU check on {results['environment']['device_name']} "
             f"({results['profile']['note']}): {results['wall_s']} s"]  # fmt: skip
    tests = steps["cuda_tests"]
    lines.append(f"  CUDA tests: {tests['status']} {tests.get('summary', _headline(tests))}")
    speed = steps["throughput"]
    if speed["status"] == "ok":
        rates = ", ".join(f"{k} {v:,.0f}" for k, v in speed["tokens_per_s"].items())
        lines.append(f"  tokens/s ({speed['request_tokens']} request tokens): {rates}")
        lines += [f"    {name}: {value:.3f}x" for name, value in speed["ratios"].items()]
    else:
        lines.append(f"  throughput: {speed['status']}: {_headline(speed)}")
    sweep = steps["shared_prefix"]
    if sweep["status"] == "ok":
        lines.append(
            f"  shared-prefix sweep / separate: {sweep['ratio']:.3f}x (predicted "
            f"{sweep['predicted_ratio']:.3f}x at layer {sweep['hook_layer']}); "
            f"max |loglik diff| {sweep['agreement']['max_abs_loglik_diff']:.2e}, "
            f"same acc: {sweep['agreement']['same_acc']}"
        )
    elif sweep["status"] == "not available":
        lines.append(f"  {sweep['reason']}")
    else:
        lines.append(f"  shared prefix: {sweep['status']}: {_headline(sweep)}")
    hooks = steps.get("hooks", {"status": "absent"})  # results of a check before the step
    if hooks["status"] == "ok":
        lines += [f"  {name}: {ms:.2f} ms/pass ({hooks['over_no_hook'][name]:.3f}x)"
                  for name, ms in hooks["ms_per_pass"].items()]  # fmt: skip
    elif hooks["status"] != "absent":
        lines.append(f"  hooks: {hooks['status']}: {_headline(hooks)}")
    generation = steps.get("generation", {"status": "absent"})
    lines += summary_lines(generation, _headline(generation))
    return "\n".join(lines)


def _headline(step: dict[str, Any]) -> str:
    """The line of a step's reason that says most: saeval's ``error:`` line, else the last."""
    lines = [line.strip() for line in step.get("reason", "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or [""])[-1]


def results_path(out: Path | None) -> Path:
    """``--out``, else ``$OUT/gpu-check.json``, else a stamped file in results/gpu-check/."""
    if out is not None:
        return out
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"]) / "gpu-check.json"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return REPO / "results" / "gpu-check" / f"gpu-check-{stamp}.json"


def check(profile: Profile, budget: Budget, root: Path) -> dict[str, Any]:
    """Build the fixtures, then run the steps while the budget lasts."""
    started = time.monotonic()
    fixtures = build(root, profile)
    built_s = round(time.monotonic() - started, 1)
    print(f"[fixtures] built in {built_s} s", flush=True)
    steps = {
        "cuda_tests": guarded("cuda tests", budget, cuda_tests, profile, root),
        "throughput": guarded("throughput", budget, throughput, fixtures, profile, root),
        "shared_prefix": guarded("shared prefix", budget, shared_prefix, fixtures, profile, root),
        "hooks": guarded("hooks", budget, _hooks, fixtures, profile),
        "generation": guarded("generation", budget, generation_sweep, fixtures, profile, root),
    }
    return {"fixtures_s": built_s, "steps": steps}


def _hooks(fixtures: Fixtures, profile: Profile, budget: Budget) -> dict[str, Any]:
    """The hook step, when at least ``MIN_STEP_S`` of the budget is left."""
    if budget.left() < MIN_STEP_S:
        raise OutOfTime(f"{budget.left():.0f} s left")
    return hook_overhead(fixtures, profile)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the check and write its results file and summary."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check")
    parser.add_argument("--device", default="cuda:0", help="cuda:0 (default) or cpu")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S)
    parser.add_argument("--out", type=Path, default=None, help="results file (JSON)")
    args = parser.parse_args(argv)
    profile = profile_for(args.device)
    budget = Budget(args.budget_s)
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="saeval-gpu-check-") as folder:
        found = check(profile, budget, Path(folder))
    results = {
        "schema": SCHEMA,
        "started": started.isoformat(timespec="seconds"),
        "wall_s": round(args.budget_s - budget.left(), 1),
        "budget_s": args.budget_s,
        "profile": profile.record(),
        "environment": environment(profile),
        **found,
    }
    path = results_path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(results, indent=2) + "\n")
    print(summary(results))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
