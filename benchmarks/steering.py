"""Cost of steering: wall time steered/baseline and the memory a steer plan keeps.

For a tiny GPT-2 and for Gemma 3 270M (the demo model, CPU, float32), on ONE loaded
``SteeredHFLM`` and the same multiple-choice requests (saeval's demo knowledge questions, as
lm-eval ``loglikelihood`` requests), these configurations run in interleaved repetitions:

- baseline: no hooks;
- add: one summed vector added at the hook point (goal <= 1.03x);
- clamp: two latents of a 131072-wide JumpReLU SAE clamped through the sliced encoder (goal
  <= 1.05x);
- clamp_active: the same two latents set only where they fire (``f_i(h) > 0``, the fork's and
  SAEBench's unlearning clamp), through the same sliced encoder (goal <= 1.05x);
- full SAE hook: the same clamp through the whole 131072-wide SAE (encode, decode, error term),
  the naive way, for contrast.

Torch runs on one thread (``--threads``): on a machine shared with other work, a single thread
is not held back by a busy sibling core. The contrast runs in the first two repetitions only.
Each ratio is the fastest repetition of a configuration over the fastest baseline of the same
repetitions: on a machine shared with other work, noise only ever adds time, so minimums
estimate the cost best.
Memory: resident set size (RSS) before and after ``build_plan`` loads the wide SAE from disk
and keeps what the plan needs (goal: the vectors only, not the 641 MiB SAE).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WIDE = 131072
MiB = 2**20


@dataclass(frozen=True)
class Subject:
    """A model to measure: its folder, the hook point and how many requests/repetitions."""

    name: str
    path: Path
    layer: int
    questions: int
    reps: int


@dataclass
class Measured:
    """Ratios and memory measured on one subject."""

    name: str
    seconds: dict[str, float]  # fastest repetition per configuration
    ratios: dict[str, float]  # over the fastest baseline of the same repetitions
    plan_mib: float  # tensors the plan keeps
    sae_mib: float  # the full SAE's tensors
    rss_kept_mib: float  # RSS growth across build_plan


GOALS = {"add": 1.03, "clamp (2 latents)": 1.05, "clamp_active (2 latents)": 1.05}
CONTRAST = "full SAE hook"
CONTRAST_REPS = 2


def main(argv: Sequence[str] | None = None) -> None:
    """Measure the tiny model and Gemma 3 270M, then print one table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.steering", description=__doc__)
    parser.add_argument("--reps", type=int, default=6, help="repetitions per configuration")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--no-gemma", action="store_true", help="measure the tiny model only")
    args = parser.parse_args(argv)
    _quiet()
    import torch

    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory(prefix="saeval-bench-") as tmp:
        root = Path(tmp)
        tiny = Subject("tiny GPT-2 (d_in 64)", _tiny_model(root), 1, 30, args.reps)
        results.append(measure(tiny, root))
        gemma = None if args.no_gemma else _gemma_dir()
        if gemma is not None:
            subject = Subject("Gemma 3 270M (d_in 640)", gemma, 6, 25, args.reps)
            results.append(measure(subject, root))
    print(report(results, args.threads))


def measure(subject: Subject, root: Path) -> Measured:
    """Load the model once, build the plans, and time every configuration interleaved."""
    import torch

    from saeval.steering.lm_eval_model import SteeredHFLM

    print(f"\n{subject.name}: loading {subject.path}", flush=True)
    hook = f"blocks.{subject.layer}.hook_resid_post"
    d_in = _d_in(subject.path)
    sae_dir = _wide_sae(root / f"sae-{d_in}", d_in, hook)
    plan, rss_kept = _build_plan_measuring_rss(root / f"steer-{d_in}.csv", sae_dir)
    point = plan.points[hook]
    add_plan = replace(plan, points={hook: replace(point, clamps=(), _add_cache={})})
    clamp_plan = replace(plan, points={hook: replace(point, add_vector=None, _add_cache={})})
    lm = SteeredHFLM(
        pretrained=str(subject.path),
        plan=add_plan,
        scale=None,
        device="cpu",
        batch_size=8,
        dtype="float32",
    )
    full_sae = _load_sae(sae_dir)
    clamped = point.clamps[0]
    active_plan = _clamp_active_plan(root / f"active-{d_in}.csv", sae_dir, full_sae)
    configurations: dict[str, Callable[[], contextlib.AbstractContextManager[Any]]] = {
        "baseline": lambda: _steer(lm, None, None),
        "add": lambda: _steer(lm, add_plan, 1.0),
        "clamp (2 latents)": lambda: _steer(lm, clamp_plan, 1.0),
        "clamp_active (2 latents)": lambda: _steer(lm, active_plan, 1.0),
        CONTRAST: lambda: _full_hook(lm, hook, full_sae, clamped.latents, clamped.targets),
    }
    requests = _requests(subject.questions)
    with torch.inference_mode():
        seconds = _interleaved(lm, requests, configurations, subject.reps)
    full_bytes = sum(t.numel() * t.element_size() for t in full_sae.state_dict().values())
    return Measured(
        name=subject.name,
        seconds={name: min(times) for name, times in seconds.items()},
        ratios={
            name: min(times) / min(seconds["baseline"][: len(times)])
            for name, times in seconds.items()
        },
        plan_mib=plan.nbytes() / MiB,
        sae_mib=full_bytes / MiB,
        rss_kept_mib=rss_kept / MiB,
    )


def _interleaved(
    lm: Any,
    requests: list[Any],
    configurations: dict[str, Callable[[], contextlib.AbstractContextManager[Any]]],
    reps: int,
) -> dict[str, list[float]]:
    """Seconds per configuration and repetition; the order rotates every repetition."""
    names = list(configurations)
    for name in names:  # warm-up: first calls allocate caches and per-device copies
        with configurations[name]():
            lm.loglikelihood(requests, disable_tqdm=True)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        this_rep: dict[str, float] = {}
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            if name == CONTRAST and rep >= CONTRAST_REPS:
                continue
            with configurations[name]():
                started = time.perf_counter()
                lm.loglikelihood(requests, disable_tqdm=True)
                this_rep[name] = time.perf_counter() - started
            seconds[name].append(this_rep[name])
        line = ", ".join(f"{name} {this_rep[name]:.2f}s" for name in names if name in this_rep)
        print(f"  rep {rep + 1}/{reps}: {line}", flush=True)
    return seconds


@contextlib.contextmanager
def _steer(lm: Any, plan: Any, scale: float | None) -> Iterator[None]:
    """The product path: SteeredHFLM's own hooks with ``plan`` at ``scale`` (None: off)."""
    if plan is not None:
        lm.plan = plan
    lm.set_scale(scale)
    yield


@contextlib.contextmanager
def _full_hook(
    lm: Any, hook: str, sae: Any, latents: Sequence[int], targets: Any
) -> Iterator[None]:
    """The naive clamp: the whole SAE's encode and decode plus its error term at the hook."""
    import torch

    from saeval.steering.hooks import attach

    index = torch.tensor(list(latents))

    def edit(h: Any) -> Any:
        acts = sae.encode(h)
        clamped = acts.clone()
        clamped[..., index] = targets
        return (sae.decode(clamped) + (h - sae.decode(acts))).to(h.dtype)

    lm.set_scale(None)
    with attach(lm.model, {hook: edit}):
        yield


def _requests(questions: int) -> list[Any]:
    """``loglikelihood`` requests: each demo knowledge question with each of its choices."""
    from lm_eval.api.instance import Instance

    from saeval.demo.paths import TASKS_SOURCE_DIR

    lines = (TASKS_SOURCE_DIR / "knowledge.jsonl").read_text(encoding="utf-8").splitlines()
    docs = [json.loads(line) for line in lines[:questions]]
    return [
        Instance(
            request_type="loglikelihood",
            doc=doc,
            arguments=(f"Question: {doc['question']}\nAnswer:", f" {choice}"),
            idx=i,
        )
        for doc in docs
        for i, choice in enumerate(doc["choices"])
    ]


# ---- fixtures ------------------------------------------------------------------------------


def _tiny_model(root: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from builders import save_tiny_pretrained

    return save_tiny_pretrained("gpt2", root / "tiny-gpt2")


def _gemma_dir() -> Path | None:
    """The demo model folder, or None (with the reason printed) when it cannot be had."""
    from saeval.demo.model import demo_model_dir
    from saeval.errors import SaevalError

    try:
        return demo_model_dir()
    except SaevalError as error:
        print(f"\nskipping Gemma 3 270M: {error.message} ({error.hint})", flush=True)
        return None


def _d_in(path: Path) -> int:
    """The residual width of a model folder."""
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(path).get_text_config().hidden_size)


def _wide_sae(folder: Path, d_in: int, hook: str) -> Path:
    """A random 131072-wide JumpReLU SAE saved with sae_lens's ``save_model``."""
    import torch
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    cfg = JumpReLUSAEConfig(d_in=d_in, d_sae=WIDE, metadata=SAEMetadata(hook_name=hook))
    sae = JumpReLUSAE(cfg)
    with torch.no_grad():
        sae.W_enc.normal_(0, d_in**-0.5)
        sae.W_dec.copy_(sae.W_enc.T)
        sae.threshold.fill_(0.1)
    sae.save_model(folder)
    return folder


def _load_sae(folder: Path) -> Any:
    from sae_lens import SAE

    return SAE.load_from_disk(folder).requires_grad_(False)


def _build_plan_measuring_rss(steer_csv: Path, sae_dir: Path) -> tuple[Any, int]:
    """``build_plan`` on an add row and two clamp rows; the RSS it leaves behind."""
    from saeval.spec import catalog
    from saeval.spec.steer_file import read_steer_file
    from saeval.steering.plan import build_plan

    steer_csv.write_text(
        "latent_idx,steering_coefficient,sae_release,sae_id,action\n"
        f"1,4.0,{sae_dir},,add\n2,3.0,{sae_dir},,clamp\n3,0,{sae_dir},,ablate\n",
        encoding="utf-8",
    )
    steer = read_steer_file(steer_csv)
    catalog.releases()  # the catalog's one-time parse is not the plan's memory
    before = _rss()
    plan = build_plan(steer)
    after = _rss()
    return plan, after - before


def _clamp_active_plan(steer_csv: Path, sae_dir: Path, sae: Any) -> Any:
    """The clamp rows' latents as clamp_active rows, planned from the already loaded SAE."""
    from saeval.spec.steer_file import read_steer_file
    from saeval.steering.plan import plan_from_saes

    steer_csv.write_text(
        "latent_idx,steering_coefficient,sae_release,sae_id,action\n"
        f"2,3.0,{sae_dir},,clamp_active\n3,0,{sae_dir},,clamp_active\n",
        encoding="utf-8",
    )
    return plan_from_saes(read_steer_file(steer_csv).rows, {(str(sae_dir), ""): sae})


def _rss() -> int:
    """Resident set size after collecting garbage and returning free heap pages to the OS."""
    import psutil

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return int(psutil.Process().memory_info().rss)


def _quiet() -> None:
    """Keep lm-eval's and transformers' progress chatter out of the table."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("lm_eval", "transformers", "sae_lens"):
        logging.getLogger(name).setLevel(logging.ERROR)


# ---- the table -----------------------------------------------------------------------------


def report(results: Sequence[Measured], threads: int) -> str:
    """One table: ratio per configuration and subject, goals, and the memory kept."""
    lines = [
        "",
        f"steering cost (CPU, {threads} thread(s), float32; "
        "ratio = fastest steered / fastest baseline pass)",
    ]
    header = f"{'model':<26} {'configuration':<24} {'seconds':>8} {'ratio':>7}  goal"
    lines += [header, "-" * len(header)]
    for result in results:
        for name, seconds in result.seconds.items():
            ratio = result.ratios[name]
            goal = GOALS.get(name)
            verdict = "" if goal is None else f"<= {goal:.2f} {'ok' if ratio <= goal else 'MISSED'}"
            lines.append(f"{result.name:<26} {name:<24} {seconds:>8.3f} {ratio:>7.3f}  {verdict}")
    lines += ["", f"{'model':<26} {'plan keeps':>12} {'RSS kept':>12} {'full SAE':>12}"]
    for result in results:
        lines.append(
            f"{result.name:<26} {result.plan_mib:>10.3f}MB {result.rss_kept_mib:>10.1f}MB "
            f"{result.sae_mib:>10.1f}MB"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
