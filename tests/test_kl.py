"""KL to the unsteered model and the quality measures of generations, against direct computation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import build_tiny_model, train_tiny_tokenizer
from cli_checks import assert_one_line_error
from conftest import invoke
from sae_builders import build_sae, write_steer_csv
from scipy import stats

from saeval.analysis.side_effects import (
    distinct_2,
    perplexity,
    repetition_rate,
    summarize_kl,
)
from saeval.run.kl import measure_kl
from saeval.spec.steer_file import SteerRow
from saeval.steering.divergence import continuation_nll, kl_per_position
from saeval.steering.hooks import attach
from saeval.steering.plan import SteerPlan, plan_from_saes

TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "A dog is a loyal animal.",
    "Paris is the capital of France. Berlin is the capital of Germany.",
    "Yes or no?",
)


def _plan(coefficient: float = 6.0, hook: str = "blocks.1.hook_resid_post") -> SteerPlan:
    """Add `coefficient` x W_dec[3] of a tiny SAE at ``hook``."""
    row = SteerRow(file="t.csv", line=2, latent_idx=3, coefficient=coefficient,
                   sae_release="tiny", sae_id="", hook=hook)  # fmt: skip
    return plan_from_saes([row], {("tiny", ""): build_sae(seed=1)})


def _documents() -> list[list[int]]:
    tokenizer = train_tiny_tokenizer()
    return [tokenizer(text)["input_ids"] for text in TEXTS]


def _direct_kl(
    model: torch.nn.Module, ids: list[int], plan: SteerPlan, scale: float
) -> list[float]:
    """Two plain forward passes of one document and kl_div on the log-softmax."""
    batch = torch.tensor([ids])
    with torch.no_grad():
        log_p = model(batch).logits.float().log_softmax(-1)
        with attach(model, plan.edits(scale)):
            log_q = model(batch).logits.float().log_softmax(-1)
    kl = torch.nn.functional.kl_div(log_q, log_p, log_target=True, reduction="none")
    return kl.sum(-1)[0].tolist()


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma2"])
def test_kl_equals_two_direct_forward_passes_and_padding_never_counts(arch: str) -> None:
    model = build_tiny_model(arch).eval()
    plan, docs = _plan(), _documents()
    batched = kl_per_position(model, docs, plan.edits(1.0), batch_size=4)
    alone = [kl_per_position(model, [doc], plan.edits(1.0), batch_size=1)[0] for doc in docs]
    assert [len(values) for values in batched] == [len(doc) for doc in docs]
    for doc, got, single in zip(docs, batched, alone, strict=True):
        direct = _direct_kl(model, doc, plan, 1.0)
        np.testing.assert_allclose(got, direct, atol=1e-6, rtol=0)
        np.testing.assert_allclose(single, direct, atol=1e-6, rtol=0)
    assert max(max(values) for values in batched) > 1e-3  # the steering really moved it


def test_zero_coefficient_and_zero_scale_give_exactly_zero() -> None:
    model = build_tiny_model("gpt2").eval()
    docs = _documents()
    for plan, scale in ((_plan(0.0), 1.0), (_plan(), 0.0)):
        values = kl_per_position(model, docs, plan.edits(scale), batch_size=2)
        assert all(value == 0.0 for doc in values for value in doc)


def test_kl_rises_with_the_size_of_the_scale() -> None:
    model = build_tiny_model("gpt2").eval()
    plan, docs = _plan(), _documents()
    for sign in (1, -1):
        scales = [sign * size for size in (0.25, 0.5, 1.0, 2.0, 4.0)]
        means = [summarize_kl(kl_per_position(model, docs, plan.edits(s))).mean_kl for s in scales]
        assert means == sorted(means) and means[0] > 0


def test_summary_is_token_weighted_with_a_ratio_interval() -> None:
    docs = [[0.1, 0.3], [0.5, 0.7, 0.9, 1.1], [0.0]]
    summary = summarize_kl(docs)
    flat = [value for doc in docs for value in doc]
    assert summary.mean_kl == pytest.approx(sum(flat) / len(flat))
    assert summary.tokens == 7 and summary.documents == 3
    assert summary.p95 == pytest.approx(np.percentile(flat, 95))
    sums, counts = np.array([0.4, 3.2, 0.0]), np.array([2.0, 4.0, 1.0])
    residuals = (sums - summary.mean_kl * counts) / counts.mean()
    half = stats.t.ppf(0.975, 2) * residuals.std(ddof=1) / np.sqrt(3)
    assert summary.ci_low == pytest.approx(summary.mean_kl - half)
    assert summary.ci_high == pytest.approx(summary.mean_kl + half)


def test_with_equal_lengths_the_interval_is_the_t_interval_of_document_means() -> None:
    docs = [[0.2, 0.4], [1.0, 1.4], [0.1, 0.1], [0.6, 0.2]]
    means = [np.mean(doc) for doc in docs]
    low, high = stats.t.interval(0.95, 3, loc=np.mean(means), scale=stats.sem(means))
    summary = summarize_kl(docs)
    assert (summary.ci_low, summary.ci_high) == (pytest.approx(low), pytest.approx(high))


def test_generation_measures_on_fixed_token_strings() -> None:
    assert distinct_2([1, 2, 1, 2, 3]) == pytest.approx(3 / 4)  # (1,2) (2,1) (1,2) (2,3)
    assert distinct_2([7]) is None
    # 4-grams of 1 2 3 4 1 2 3 4 1: (1234) (2341) (3412) (4123) (1234)* (2341)*: 2 of 9 tokens
    assert repetition_rate([1, 2, 3, 4, 1, 2, 3, 4, 1]) == pytest.approx(2 / 9)
    assert repetition_rate([5, 5, 5, 5, 5, 5]) == pytest.approx(2 / 6)
    assert repetition_rate([1, 2, 3]) == 0.0 and repetition_rate([]) is None
    assert perplexity(2.0, 4) == pytest.approx(np.exp(0.5)) and perplexity(0.0, 0) is None


def test_continuation_nll_equals_a_direct_log_likelihood() -> None:
    model = build_tiny_model("llama").eval()
    prompt, continuation = _documents()[0][:5], _documents()[1][:4]
    ((nll, count),) = continuation_nll(model, [(prompt, continuation)])
    other = continuation_nll(
        model, [(prompt, continuation), (prompt[:2], continuation[:1])], batch_size=2
    )
    with torch.no_grad():
        log_p = model(torch.tensor([prompt + continuation])).logits.log_softmax(-1)[0]
    direct = -sum(float(log_p[4 + i, token]) for i, token in enumerate(continuation))
    assert count == 4 and nll == pytest.approx(direct, abs=1e-5)
    assert other[0][0] == pytest.approx(direct, abs=1e-5)


def _texts(path: Path) -> Path:
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in TEXTS))
    return path


def test_saeval_kl_prints_the_library_numbers(tiny_bundle: Path, tmp_path: Path) -> None:
    texts = _texts(tmp_path / "texts.jsonl")
    steer = tiny_bundle / "steer.csv"
    args = ["kl", str(steer), "--model", str(tiny_bundle / "model"), "--texts", str(texts)]
    result = invoke(*args, "--scale", "0,1,2", "--format", "json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    report = measure_kl([steer], texts, model=str(tiny_bundle / "model"), scales=(0, 1, 2))
    expected = [m.to_dict() for m in report.measurements]
    keys = ("scale", "mean", "ci_low", "ci_high", "tokens")
    assert [{k: e[k] for k in keys} for e in printed] == [{k: e[k] for k in keys} for e in expected]
    assert printed[0]["mean"] == 0.0 and 0 < printed[1]["mean"] < printed[2]["mean"]
    table = invoke(*args)
    assert table.exit_code == 0 and "mean KL" in table.stdout


@pytest.mark.parametrize(
    ("content", "needle"),
    [('{"text": "a"}\nnot json\n', "texts.jsonl:2: invalid JSON"),
     ('{"txt": "a"}\n', 'texts.jsonl:1: expected an object with a non-empty "text"'),
     ("\n\n", "no texts")],
)  # fmt: skip
def test_a_bad_corpus_is_one_line(
    tiny_bundle: Path, tmp_path: Path, content: str, needle: str
) -> None:
    texts = tmp_path / "texts.jsonl"
    texts.write_text(content)
    steer = write_steer_csv(tmp_path / "s.csv", [(3, 1.0, tiny_bundle / "sae", "")])
    args = ["kl", str(steer), "--model", str(tiny_bundle / "model"), "--texts", str(texts)]
    assert_one_line_error(invoke(*args), needle)


def test_a_run_measures_kl_and_generation_quality_per_configuration(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    """KL beside every steered (configuration, task), exactly 0 at scale 0; generation
    measures paired against the baseline's; the manifest names every side-effect file."""
    args = ["run", str(tiny_bundle / "steer.csv"), "--model", str(tiny_bundle / "model")]
    args += ["--include-path", str(tiny_bundle / "tasks"), "--output", str(tmp_path)]
    args += ["--tasks", "tiny_mc,tiny_gen", "--scale", "0,1", "--limit", "4", "--kl-docs", "3"]
    result = invoke(*args, "--device", "cpu", "--name", "r")
    assert result.exit_code == 0, result.output
    run = tmp_path / "r"
    manifest = json.loads((run / "run.json").read_text())
    for record in manifest["completed"]:
        (name,) = record["side_effects"]
        effects = json.loads((run / record["configuration"] / name).read_text())
        kl = effects["kl"]
        if record["configuration"] == "baseline":
            assert kl is None
        else:
            assert len(kl["documents"]) == 3 and kl["positions"].startswith("every position")
            sums = [[doc["sum"] / doc["tokens"]] * doc["tokens"] for doc in kl["documents"]]
            assert kl["mean"] == pytest.approx(summarize_kl(sums).mean_kl)
            assert (kl["mean"] == 0.0) is (record["configuration"] == "steered@0")
        assert (effects["generation"] is None) is (record["task"] == "tiny_mc")
    rows = json.loads((run / "comparison.json").read_text())["series"]
    by_metric = {(s["task"], s["metric"]): s for s in rows}
    point = by_metric[("tiny_gen", "gen_ppl")]["points"][1]
    assert point["test"] == "paired t" and point["kl"] > 0
    assert by_metric[("tiny_mc", "acc")]["points"][0]["kl"] == 0.0
    assert "KL (nats/token)" in (run / "comparison.md").read_text()
    assert (run / "sweep_tiny_mc_kl.png").is_file()


def test_kl_docs_zero_measures_no_kl(tiny_bundle: Path, tmp_path: Path) -> None:
    args = ["run", str(tiny_bundle / "steer.csv"), "--model", str(tiny_bundle / "model")]
    args += ["--include-path", str(tiny_bundle / "tasks"), "--output", str(tmp_path)]
    args += ["--tasks", "tiny_mc", "--limit", "2", "--kl-docs", "0", "--device", "cpu"]
    result = invoke(*args, "--name", "r")
    assert result.exit_code == 0, result.output
    comparison = json.loads((tmp_path / "r" / "comparison.json").read_text())
    assert all(row["kl"] is None for row in comparison["rows"])
    assert "KL" not in (tmp_path / "r" / "comparison.md").read_text()
