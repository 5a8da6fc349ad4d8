"""What the KL measurement costs next to the evaluation it accompanies, side by side in one run.

On Gemma 3 270M (the demo model; the tiny GPT-2 when it cannot be had) with an add row at
layer 6: one steered ``simple_evaluate`` of 100 documents of the demo knowledge task, then the
KL pass that ``saeval run`` makes for that (configuration, task): two forward passes (unsteered,
steered) over the 100 questions' contexts, no answer choices. The goal is a ratio of at most 0.5.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from saeval.steering.plan import SteerPlan

DOCS = 100
GOAL = 0.5


def main(argv: Sequence[str] | None = None) -> None:
    """Time one steered evaluation and its KL pass; print both and their ratio."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kl_cost", description=__doc__)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    import torch

    from benchmarks.steering import _gemma_dir, _quiet, _tiny_model

    _quiet()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="saeval-kl-bench-") as tmp:
        root = Path(tmp)
        model = _gemma_dir() or _tiny_model(root)
        evaluation, kl = measure(model, root)
    ratio = kl / evaluation
    verdict = "ok" if ratio <= GOAL else "MISSED"
    print(
        f"\nKL cost on {model.name}, {DOCS} documents of saeval_demo_knowledge "
        f"({args.threads} thread(s)):\n"
        f"  steered evaluation {evaluation:8.2f} s\n  KL pass            {kl:8.2f} s\n"
        f"  ratio              {ratio:8.3f}  goal <= {GOAL} {verdict}"
    )


def measure(model: Path, root: Path) -> tuple[float, float]:
    """Seconds of the steered evaluation and of its KL pass."""
    from saeval.demo.lm_tasks import demo_tasks_dir
    from saeval.run.config import RunConfig
    from saeval.run.evaluation import evaluate
    from saeval.run.side_effects import measure as side_effects
    from saeval.spec.tasks import validate_tasks
    from saeval.steering.lm_eval_model import SteeredHFLM

    task, tasks_dir = "saeval_demo_knowledge", demo_tasks_dir()
    config = RunConfig(steer_files=(), tasks=(task,), limit=DOCS, include_path=(tasks_dir,))
    plan = _plan(model, root)
    lm = SteeredHFLM(pretrained=str(model), plan=plan, scale=1.0, device="cpu", dtype="float32")
    tasks = validate_tasks(config.tasks, config.include_path)
    started = time.perf_counter()
    output = evaluate(lm, task, config, tasks)
    evaluation = time.perf_counter() - started
    started = time.perf_counter()
    side_effects(lm, output.samples[task], 1.0, DOCS)
    return evaluation, time.perf_counter() - started


def _plan(model: Path, root: Path) -> SteerPlan:
    """An add row of 100 x a random unit direction at layer 6 (the demo's hook)."""
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    from benchmarks.steering import _d_in
    from saeval.spec.steer_file import read_steer_file
    from saeval.steering.plan import build_plan

    d_in = _d_in(model)
    layers = 6 if d_in > 64 else 1
    cfg = StandardSAEConfig(
        d_in=d_in, d_sae=16, metadata=SAEMetadata(hook_name=f"blocks.{layers}.hook_resid_post")
    )
    sae = StandardSAE(cfg)
    with torch.no_grad():
        sae.W_dec.copy_(torch.nn.functional.normalize(torch.randn(16, d_in), dim=-1))
    sae.save_model(root / "sae")
    steer = root / "steer.csv"
    steer.write_text(
        f"latent_idx,steering_coefficient,sae_release,sae_id\n0,100.0,{root / 'sae'},\n"
    )
    return build_plan(read_steer_file(steer))
