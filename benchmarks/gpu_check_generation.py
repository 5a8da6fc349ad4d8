"""The GPU check's generation step: a baseline + 4-strength sweep over a greedy generate_until
task (benchmarks/gpu_check_fixtures.py), all configurations of a batch in one generation
(`saeval run`'s default) against one configuration after another (``--no-shared-prefix``).

Each way is a fresh `saeval run` that evaluates a small generation warm-up task first; the
seconds are the measured task's, summed over the configurations, from each run's manifest.
Tokens per second count the generated tokens: every configuration's generation of every
document of the separate run, encoded again by the model's tokenizer, one count for both ways
(so that the rates' ratio is the inverse of the seconds'). Greedy decoding in float32 gives
the same text both ways; the step reports the share of (configuration, document) generations
that are identical, which bfloat16 on a GPU may lower.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.gpu_check_fixtures import GEN_TASK, GEN_TOKENS, GEN_WARM_TASK
from saeval.records.run_folder import run_configurations

if TYPE_CHECKING:
    from benchmarks.gpu_check import Budget
    from benchmarks.gpu_check_fixtures import Fixtures, Profile


def generation_sweep(
    fixtures: Fixtures, profile: Profile, root: Path, budget: Budget
) -> dict[str, Any]:
    """Generated tokens per second of the sweep both ways, and their generations' agreement."""
    from benchmarks.gpu_check import SWEEP, bench_seconds, run, saeval_run, shared_prefix_available

    if not shared_prefix_available():
        return {
            "status": "not available",
            "reason": "shared generation: not available in this tree",
        }
    folders = {way: root / "runs" / f"generation-{way}" for way in ("shared", "separate")}
    extra = {"shared": (), "separate": ("--no-shared-prefix",)}
    wall = {
        way: run(saeval_run(fixtures, profile, folder, SWEEP, *extra[way],
                            tasks=(GEN_WARM_TASK, GEN_TASK)), budget).seconds
        for way, folder in folders.items()
    }  # fmt: skip
    seconds = {
        way: sum(bench_seconds(folder, GEN_TASK).values()) for way, folder in folders.items()
    }
    texts = {way: generations(folder) for way, folder in folders.items()}
    tokens = generated_tokens(fixtures.model, texts["separate"].values())
    return {
        "configurations": 1 + len(SWEEP),
        "prompts": profile.gen_docs,
        "max_gen_toks": GEN_TOKENS,
        "generated_tokens": tokens,
        "seconds": seconds,
        "wall_s": {way: round(value, 1) for way, value in wall.items()},
        "tokens_per_s": {way: round(tokens / value, 1) for way, value in seconds.items()},
        "ratio": round(seconds["shared"] / seconds["separate"], 3),
        "agreement": same_generations(texts["shared"], texts["separate"]),
    }


def generations(run_folder: Path) -> dict[tuple[str, int], str]:
    """Each (configuration, document)'s generation of the measured task, unfiltered."""
    found = {}
    for name, folder in run_configurations(run_folder).items():
        (file,) = folder.glob(f"samples_{GEN_TASK}_*.jsonl")
        for line in file.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            found[(name, int(record["doc_id"]))] = str(record["resps"][0][0])
    return found


def same_generations(
    a: dict[tuple[str, int], str], b: dict[tuple[str, int], str]
) -> dict[str, Any]:
    """How many of the generations of ``a`` and ``b`` (the same keys) are identical, and which
    configurations hold the others."""
    if a.keys() != b.keys():
        raise ValueError(
            f"the runs generated for different documents: {sorted(a.keys() ^ b.keys())}"
        )
    different = sorted({key[0] for key in a if a[key] != b[key]})
    identical = sum(a[key] == b[key] for key in a)
    return {
        "generations": len(a),
        "identical": identical,
        "identical_share": round(identical / len(a), 4) if a else 0.0,
        "configurations_differing": different,
    }


def generated_tokens(model: Path, texts: Any) -> int:
    """Tokens of ``texts`` as the model's tokenizer encodes them, without special tokens."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    return sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts)


def summary_lines(step: dict[str, Any], headline: str) -> list[str]:
    """The step's lines of the check's summary (``headline``: a failed step's error line)."""
    if step["status"] == "absent":  # results of a check before the step
        return []
    if step["status"] != "ok":
        reason = step["reason"] if step["status"] == "not available" else headline
        return [f"  generation sweep: {step['status']}: {reason}"]
    rates = ", ".join(f"{way} {rate:,.0f}" for way, rate in step["tokens_per_s"].items())
    same = step["agreement"]
    return [
        f"  generation sweep tokens/s ({step['generated_tokens']} generated tokens): {rates}",
        f"    shared / separate: {step['ratio']:.3f}x; identical generations: "
        f"{same['identical']}/{same['generations']} ({same['identical_share']:.1%})",
    ]
