"""Cost of position-limited steering: a steered forward pass with the ``generated`` and ``prompt``
masks next to the same rows at ``all`` positions.

On Gemma 3 270M (the demo model, CPU, float32; the tiny GPT-2 when it cannot be had) at
``blocks.6.hook_resid_post``, one right-padded batch of the demo knowledge questions with their
answers (a loglikelihood batch: the question is the prompt, the answer generated) runs through
the model in interleaved repetitions:

- baseline: no hooks;
- add / project at all positions: today's path (no mask);
- add / project at generated and at prompt positions: the same rows, masked.

Each ratio is the fastest repetition of a configuration over the fastest repetition of the same
rows at ``all`` positions (goal <= 1.05x); the baseline column shows steering's own cost. On a
busy machine the forward passes are noisy, so the hook-point edit is also timed alone, on the
activation it steers, with its masks built every call (what masking adds to one pass).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

GOAL = 1.05
MODES = ("all", "generated", "prompt")
ACTIONS = ("add", "project")


def main(argv: Sequence[str] | None = None) -> None:
    """Time every configuration on one batch; print one table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.positions", description=__doc__)
    parser.add_argument("--reps", type=int, default=8, help="repetitions per configuration")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--batch", type=int, default=16, help="sequences per forward pass")
    args = parser.parse_args(argv)
    import torch

    from benchmarks.steering import _gemma_dir, _quiet, _tiny_model

    _quiet()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="saeval-positions-bench-") as tmp:
        root = Path(tmp)
        gemma = _gemma_dir()
        model, layer = (gemma, 6) if gemma is not None else (_tiny_model(root), 1)
        seconds = measure(model, layer, root, args.batch, args.reps)
    print(report(model.name, seconds, args.threads, args.batch))


def measure(
    model_dir: Path, layer: int, root: Path, batch: int, reps: int
) -> dict[str, tuple[float, float | None]]:
    """Per configuration: the fastest forward pass and the fastest hook-point edit alone
    (seconds; the baseline has no edit)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"loading {model_dir}", flush=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids, positions = _batch(tokenizer, batch)
    hook = f"blocks.{layer}.hook_resid_post"
    width = int(model.config.get_text_config().hidden_size)
    edits: dict[str, dict[str, Any]] = {"baseline": {}}
    for action in ACTIONS:
        for mode in MODES:
            edits[f"{action} at {mode}"] = _plan(root, hook, width, action, mode).edits(1.0)
    with torch.inference_mode():
        forward = _forward_times(model, ids, positions, edits, reps)
        activation = _activation(model, ids, hook)
        alone = {
            name: _edit_time(edit[hook], activation, positions)
            for name, edit in edits.items()
            if edit
        }
    return {name: (forward[name], alone.get(name)) for name in edits}


def _forward_times(
    model: Any, ids: Any, positions: Any, edits: dict[str, dict[str, Any]], reps: int
) -> dict[str, float]:
    """The fastest of ``reps`` interleaved forward passes per configuration (after a warm-up)."""
    from saeval.steering.hooks import attach
    from saeval.steering.positions import describing

    names = list(edits)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps + 1):  # the first repetition warms up
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            fresh = replace(positions, _masks={})  # each batch builds its masks once
            with attach(model, edits[name]), describing(fresh):
                started = time.perf_counter()
                model(input_ids=ids)
                elapsed = time.perf_counter() - started
            if rep:
                times[name].append(elapsed)
        print(f"  rep {rep}/{reps}", flush=True)
    return {name: min(values) for name, values in times.items()}


def _activation(model: Any, ids: Any, hook: str) -> Any:
    """The unsteered activation at ``hook`` for ``ids``."""
    from saeval.steering.hooks import locate
    from saeval.steering.module_hooks import ModuleHook, registered

    seen: list[Any] = []
    module = locate(model, hook).module
    with registered(
        ModuleHook(module, lambda m, a, out: seen.append(out[0] if isinstance(out, tuple) else out))
    ):
        model(input_ids=ids)
    return seen[0]


def _edit_time(edit: Any, h: Any, positions: Any, calls: int = 200) -> float:
    """The fastest of ``calls`` runs of one hook-point edit, its masks built each time."""
    from saeval.steering.positions import describing

    fastest = float("inf")
    for _ in range(calls):
        with describing(replace(positions, _masks={})):
            started = time.perf_counter()
            edit(h)
            fastest = min(fastest, time.perf_counter() - started)
    return fastest


def _batch(tokenizer: Any, size: int) -> tuple[Any, Any]:
    """Right-padded question + answer token ids and their ``Positions``."""
    import torch

    from saeval.demo.paths import TASKS_SOURCE_DIR
    from saeval.steering.positions import Positions

    lines = (TASKS_SOURCE_DIR / "knowledge.jsonl").read_text(encoding="utf-8").splitlines()
    docs = [json.loads(line) for line in lines[:size]]
    rows, prompt_ends = [], []
    for doc in docs:
        prompt = tokenizer(f"Question: {doc['question']}\nAnswer:")["input_ids"]
        answer = tokenizer(f" {doc['choices'][0]}", add_special_tokens=False)["input_ids"]
        rows.append(prompt + answer)
        prompt_ends.append(len(prompt))
    length = max(len(row) for row in rows)
    ids = torch.zeros((len(rows), length), dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, : len(row)] = torch.tensor(row)
    positions = Positions(
        start=torch.zeros(len(rows), dtype=torch.long),
        end=torch.tensor([len(row) for row in rows]),
        prompt_end=torch.tensor(prompt_ends),
    )
    return ids, positions


def _plan(root: Path, hook: str, width: int, action: str, mode: str) -> Any:
    """A plan of one vector row (a seeded random direction) with ``action`` at ``mode``."""
    import numpy as np

    from saeval.spec.steer_file import read_steer_file
    from saeval.steering.plan import plan_rows

    vector = root / "direction.npy"
    if not vector.exists():
        np.save(vector, np.random.default_rng(0).standard_normal(width).astype(np.float32))
    steer = root / f"{action}-{mode}.csv"
    steer.write_text(
        f"steering_coefficient,vector,hook,action,positions\n4.0,{vector},{hook},{action},{mode}\n",
        encoding="utf-8",
    )

    def no_sae(key: Any) -> Any:
        raise AssertionError(f"vector rows load no SAE ({key})")

    return plan_rows(read_steer_file(steer).rows, no_sae)


def report(
    model: str, seconds: dict[str, tuple[float, float | None]], threads: int, batch: int
) -> str:
    """One table: forward seconds, their ratio to the same rows at all positions and to the
    baseline, and the hook-point edit alone."""
    lines = [
        "",
        f"position-limited steering on {model} (CPU, {threads} thread(s), float32, one "
        f"right-padded batch of {batch}; ratio = fastest masked / fastest at all positions)",
    ]
    header = (
        f"{'configuration':<22} {'forward s':>9} {'vs all':>7} {'vs baseline':>12} "
        f"{'edit alone ms':>14}  goal"
    )
    lines += [header, "-" * len(header)]
    base = seconds["baseline"][0]
    for name, (forward, edit) in seconds.items():
        action, _, mode = name.partition(" at ")
        versus = forward / seconds[f"{action} at all"][0] if mode else None
        shown = "" if versus is None else f"{versus:7.3f}"
        alone = "" if edit is None else f"{edit * 1000:14.3f}"
        goal = ""
        if versus is not None and mode != "all":
            goal = f"<= {GOAL:.2f} {'ok' if versus <= GOAL else 'MISSED'}"
        lines.append(
            f"{name:<22} {forward:>9.4f} {shown:>7} {forward / base:>12.3f} {alone:>14}  {goal}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
