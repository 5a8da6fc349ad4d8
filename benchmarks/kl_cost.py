"""What the KL measurement adds to a sweep: ``saeval run`` with and without ``--kl-docs``.

On Gemma 3 270M (the demo model; the tiny GPT-2 when it cannot be had) with an add row at
layer 6: a baseline + 4-strength sweep of 100 documents of the demo knowledge task, run twice
(each in a fresh output folder, so no baseline comes from the cache): with ``--kl-docs 100``
and with ``--kl-docs 0``. The KL of every strength comes from the shared-prefix pass that
evaluates it; the goal is a total time with KL of at most 1.5x the time without.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

DOCS = 100
SCALES = (0.5, 1.0, 1.5, 2.0)
GOAL = 1.5


def main(argv: Sequence[str] | None = None) -> None:
    """Time the sweep with and without KL; print both and their ratio."""
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
        _steer_file(model, root)
        without = measure(model, root, 0)
        with_kl = measure(model, root, DOCS)
    ratio = with_kl / without
    verdict = "ok" if ratio <= GOAL else "MISSED"
    print(
        f"\nKL cost on {model.name}: baseline + {len(SCALES)} strengths, {DOCS} documents of "
        f"saeval_demo_knowledge ({args.threads} thread(s)):\n"
        f"  {'run without KL':24} {without:8.2f} s\n"
        f"  {f'run with --kl-docs {DOCS}':24} {with_kl:8.2f} s\n"
        f"  {'ratio':24} {ratio:8.3f}  goal <= {GOAL} {verdict}"
    )


def measure(model: Path, root: Path, kl_docs: int) -> float:
    """Seconds of one ``saeval run`` of the sweep (model load included)."""
    from saeval.demo.lm_tasks import demo_tasks_dir
    from saeval.run.config import RunConfig
    from saeval.run.runner import run

    config = RunConfig(
        steer_files=(root / "steer.csv",),
        tasks=("saeval_demo_knowledge",),
        model=str(model),
        device="cpu",
        dtype="float32",
        limit=DOCS,
        include_path=(demo_tasks_dir(),),
        output=root / f"runs-{kl_docs}",
        name="sweep",
        scales=SCALES,
        kl_docs=kl_docs,
    )
    started = time.perf_counter()
    run(config)
    seconds = time.perf_counter() - started
    print(f"  --kl-docs {kl_docs}: {seconds:.2f} s", flush=True)
    return seconds


def _steer_file(model: Path, root: Path) -> Path:
    """``root/steer.csv``: an add row of 100 x a random unit direction at layer 6 (the demo's
    hook; layer 1 of the tiny model)."""
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    from benchmarks.steering import _d_in

    d_in = _d_in(model)
    layers = 6 if d_in > 64 else 1
    cfg = StandardSAEConfig(
        d_in=d_in, d_sae=16, metadata=SAEMetadata(hook_name=f"blocks.{layers}.hook_resid_post")
    )
    sae = StandardSAE(cfg)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        directions = torch.randn(16, d_in, generator=generator)
        sae.W_dec.copy_(torch.nn.functional.normalize(directions, dim=-1))
    sae.save_model(root / "sae")
    steer = root / "steer.csv"
    steer.write_text(
        f"latent_idx,steering_coefficient,sae_release,sae_id\n0,100.0,{root / 'sae'},\n"
    )
    return steer
