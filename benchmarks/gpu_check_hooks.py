"""The GPU check's hook step: what the steering hooks of the check's steer file cost per forward
pass, with the finite check read on the device once per pass (``guarding``, what saeval does)
and read at every hook call (a guard per call: the host waits for the device at every hooked
layer), against the same edits unchecked and against no hook.

One model load in this process; a batch of ``batch_size`` rows of 256 random tokens; each
variant is warmed once, then timed over ``REPEATS`` forward passes, the variants interleaved,
with the device synchronised before and after each pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor, nn

    from benchmarks.gpu_check_fixtures import Fixtures, Profile

REPEATS = 10
LENGTH = 256


def hook_overhead(fixtures: Fixtures, profile: Profile) -> dict[str, Any]:
    """Milliseconds per forward pass of each variant, and each hooked one over no hook."""
    import torch
    from transformers import AutoModelForCausalLM

    from saeval.spec.steer_file import read_steer_file
    from saeval.steering.finite import guarding
    from saeval.steering.plan import build_plan

    dtype = getattr(torch, profile.dtype)
    model = AutoModelForCausalLM.from_pretrained(fixtures.model, dtype=dtype).eval()
    model.to(profile.device)
    plan = build_plan(read_steer_file(fixtures.steer))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(10, profile.vocab_size, (profile.batch_size, LENGTH), generator=generator)
    ids = ids.to(profile.device)
    unchecked = {name: _unchecked(point) for name, point in plan.points.items()}
    variants: dict[str, tuple[dict[str, Any], Callable[[], AbstractContextManager[Any]]]] = {
        "no hook": ({}, nullcontext),
        "hook, no finite check": (unchecked, nullcontext),
        "hook, finite check on the device": (plan.edits(1.0), guarding),
        "hook, finite check read per call": (plan.edits(1.0), nullcontext),
    }
    for edits, guard in variants.values():
        _seconds(model, ids, edits, guard)  # warm-up: kernels, caches, per-device copies
    ms = dict.fromkeys(variants, 0.0)
    for _ in range(REPEATS):  # interleaved, so that a slower moment hits every variant
        for name, (edits, guard) in variants.items():
            ms[name] += _seconds(model, ids, edits, guard) * 1000 / REPEATS
    base = ms["no hook"]
    return {
        "tokens_per_pass": profile.batch_size * LENGTH,
        "hook_points": len(plan.points),
        "ms_per_pass": {name: round(value, 3) for name, value in ms.items()},
        "over_no_hook": {name: round(value / base, 3) for name, value in ms.items()},
    }


def _unchecked(point: Any) -> Callable[[Tensor], Tensor]:
    """A hook point's edit at scale 1 without the finite check."""

    def edit(h: Tensor) -> Tensor:
        return point.edit(h, 1.0)

    return edit


def _seconds(
    model: nn.Module,
    ids: Tensor,
    edits: dict[str, Any],
    guard: Callable[[], AbstractContextManager[Any]],
) -> float:
    """Seconds of one forward pass of ``model`` on ``ids`` with ``edits`` attached, inside
    ``guard()``, the device synchronised before and after."""
    import torch

    from saeval.steering.hooks import attach

    def synchronise() -> None:
        if ids.device.type == "cuda":
            torch.cuda.synchronize(ids.device)

    with torch.no_grad(), attach(model, edits):
        synchronise()
        started = time.perf_counter()
        with guard():
            model(ids)
        synchronise()
    return time.perf_counter() - started
