"""Shared generation against separate generations, side by side in one run.

On Gemma 3 270M (18 layers; the tiny GPT-2 when it cannot be had), a baseline + 4-strength
sweep (scales 0.5, 1, 2, 4 of 100 x a random unit direction added at ``blocks.L.hook_resid_pre``)
over the demo generation task (22 capital-city prompts with the task's two-example prefix,
greedy, ``until`` newline or full stop, at most 8 tokens), for L = 6 and L = 12. Two ways, on
the same loaded model and the same requests (batch 8):

- ``separate``: lm-eval's ``generate_until`` (``--no-shared-prefix``), one configuration after
  another;
- ``shared``: the configurations of a batch in one generation (``saeval run``'s default): the
  prefill computes layers 0..L-1 once, each decoding step runs all five copies.

Beside the ratio shared / separate stands the layer-pass prediction: the layer passes of token
positions the shared generation runs (prefill: L layers for one copy, 18 - L for five; decoding
steps: 18 layers for five copies until the last copy ends) over those of the separate ones.
Decoding steps share no layer, so on a CPU the gain beyond it comes from running five copies
per weight read. The generations must be equal. Memory: the peak of torch's allocations on a
GPU for each way, else the process's peak resident memory after each.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from saeval.steering.lm_eval_model import SteeredHFLM

SCALES: tuple[float | None, ...] = (None, 0.5, 1.0, 2.0, 4.0)
LAYERS = (6, 12)
Shape = tuple[int, int, int]  # (rows, prompt width, output width) of one generate call


def main(argv: Sequence[str] | None = None) -> None:
    """Time both ways at each hook layer; print seconds, ratios, the prediction and memory."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.shared_generation", description=__doc__
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds; the best one counts")
    parser.add_argument("--prompts", type=int, default=22, help="prompts of the task (<= 22)")
    args = parser.parse_args(argv)
    import torch

    from benchmarks.steering import _gemma_dir, _quiet, _tiny_model

    _quiet()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="saeval-generation-bench-") as tmp:
        root = Path(tmp)
        model = _gemma_dir() or _tiny_model(root)
        print(f"\nshared generation sweep on {model.name} ({args.device}, {args.threads} "
              f"thread(s)), baseline + scales {', '.join(f'{s:g}' for s in SCALES[1:])}:",
              flush=True)  # fmt: skip
        for line in measure(model, root, args.device, args.repeats, args.prompts):
            print(line, flush=True)


def measure(model: Path, root: Path, device: str, repeats: int, prompts: int) -> Iterator[str]:
    """Load the model once; per hook layer, time both ways (interleaved, the best of
    ``repeats``) and check that their generations agree; one line as each is measured."""
    from benchmarks.shared_prefix import _interleaved, _plan
    from saeval.steering.lm_eval_model import SteeredHFLM

    lm = SteeredHFLM(pretrained=str(model), plan=_plan(model, root, 1), scale=None,
                     device=device, dtype="float32", batch_size=8)  # fmt: skip
    n_layers = int(lm.model.config.get_text_config().num_hidden_layers)
    requests = _generation_requests()[:prompts]
    yield f"  {len(requests)} prompts, {n_layers} layers; seconds for all 5 configurations"
    shapes: dict[str, list[Shape]] = {}
    memory: dict[str, float] = {}
    paths: dict[str, Callable[[], list[Any]]] = {
        way: lambda way=way: _measured(lm, way, requests, shapes, memory)  # type: ignore[misc]
        for way in ("separate", "shared")
    }
    for layer in LAYERS if n_layers > max(LAYERS) else (1,):
        lm.plan = _plan(model, root, layer)
        _generate(lm, requests[:2], shared=False)  # warm-up
        seconds, texts = _interleaved(paths, repeats)
        predicted = _layer_passes(shapes["shared"], layer, n_layers, True) / _layer_passes(
            shapes["separate"], layer, n_layers, False
        )
        yield _line(layer, seconds, predicted, texts, memory, device)


def _measured(
    lm: SteeredHFLM,
    way: str,
    requests: list[Any],
    shapes: dict[str, list[Shape]],
    memory: dict[str, float],
) -> list[Any]:
    """Generate every configuration one way; keep each generate call's shape and the peak
    memory (GiB)."""
    import resource

    import torch
    from lm_eval.models.huggingface import HFLM

    seen: list[Shape] = []
    real = HFLM._model_generate

    def spy(self: HFLM, context: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        output = real(self, context, *args, **kwargs)
        seen.append((int(context.shape[0]), int(context.shape[1]), int(output.shape[1])))
        return output

    cuda = lm.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    HFLM._model_generate = spy
    try:
        texts = _generate(lm, requests, shared=way == "shared")
    finally:
        HFLM._model_generate = real
    shapes[way] = seen
    if cuda:
        memory[way] = torch.cuda.max_memory_allocated() / 2**30
    else:
        memory[way] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return texts


def _generate(lm: SteeredHFLM, requests: list[Any], *, shared: bool) -> list[list[str]]:
    """Every configuration's generations, one after another (sharing one generation when
    ``shared``), as ``saeval run`` evaluates a sweep."""
    from saeval.steering.shared_prefix import SharedAnswers

    answers = SharedAnswers(list(SCALES)) if shared else None
    texts = []
    for scale in SCALES:
        lm.set_scale(scale)
        with lm.sharing(answers):
            texts.append(lm.generate_until(requests, disable_tqdm=True))
        if answers is not None:
            answers.finished(scale)
    lm.set_scale(None)
    return texts


def _layer_passes(shapes: list[Shape], layer: int, n_layers: int, shared: bool) -> int:
    """Token positions x decoder layers of the generate calls of ``shapes``: a shared call of
    five copies runs its prompts' first ``layer`` layers for one copy."""
    total = 0
    for rows, prompt, width in shapes:
        one_copy = rows // len(SCALES) if shared else rows
        total += prompt * (one_copy * layer + rows * (n_layers - layer))
        total += rows * (width - prompt - 1) * n_layers  # each token after the first one
    return total


def _line(
    layer: int,
    seconds: dict[str, float],
    predicted: float,
    texts: dict[str, list[Any]],
    memory: dict[str, float],
    device: str,
) -> str:
    """One hook layer's seconds, ratio beside the prediction, agreement and memory."""
    ratio = seconds["shared"] / seconds["separate"]
    verdict = "" if layer != 12 else (" (goal <= 0.6: met)" if ratio <= 0.6 else " MISSED <= 0.6")
    same = texts["shared"] == texts["separate"]
    moved = texts["separate"][0] != texts["separate"][-1]
    kind = "GPU peak allocated" if device.startswith("cuda") else "process peak RSS after"
    times = "  ".join(f"{name} {value:6.2f}" for name, value in seconds.items())
    return (
        f"  hook blocks.{layer}.hook_resid_pre, seconds: {times}\n"
        f"      shared/separate {ratio:.3f}{verdict}; layer-pass prediction {predicted:.3f}\n"
        f"      generations equal: {same}; steering changed them: {moved}\n"
        f"      {kind}: separate {memory['separate']:.2f} GiB, shared {memory['shared']:.2f} GiB"
    )


def _generation_requests() -> list[Any]:
    """The demo generation task's requests as lm-eval builds them: the two-example prefix,
    the question, and the task's generation kwargs."""
    import json

    import yaml
    from lm_eval.api.instance import Instance

    from saeval.demo.paths import TASKS_SOURCE_DIR

    config = yaml.safe_load((TASKS_SOURCE_DIR / "generation.yaml").read_text(encoding="utf-8"))
    lines = (TASKS_SOURCE_DIR / "generation.jsonl").read_text(encoding="utf-8").splitlines()
    docs = [json.loads(line) for line in lines]
    return [
        Instance(
            request_type="generate_until",
            doc=doc,
            arguments=(
                f"{config['description']}Q: {doc['question']}\nA:",
                dict(config["generation_kwargs"]),
            ),
            idx=0,
        )
        for doc in docs
    ]


if __name__ == "__main__":
    main()
