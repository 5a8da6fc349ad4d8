"""What steering costs besides the benchmark score: KL summaries and the quality of generations.

A task's side-effects file (``saeval.records.side_effects``) gives it generation measures as
per-document metrics (``gen_ppl``, ``distinct_2``, ``repetition_4``, ``gen_tokens``: the
generation's length in tokens; filter ``none``) with a mean and its standard error, so a
comparison pairs them document by document like any other continuous metric (paired t). KL is a
property of the steered side alone (it is 0 for the baseline by definition): the task's ``kl``
summary.

KL (nats) comes per position from ``saeval.steering.divergence``; here it is summarised over
documents: the token-weighted mean, a confidence interval for it, and the 95th percentile over
positions. The interval treats documents as the sampling units (positions of one document are
not independent): the token-weighted mean is the ratio R = sum(S_i) / sum(T_i) of per-document
KL sums S_i and token counts T_i, and its standard error is the linearised (delta-method) one,
sd((S_i - R T_i) / mean(T)) / sqrt(n), with a t interval on n - 1 degrees of freedom.

Generation quality, per document, on token ids: distinct-2 (unique bigrams over bigrams) and
the repetition rate (the share of tokens that complete an n-gram, n = 4, already seen earlier in
the same text).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from saeval.records.side_effects import GENERATION_MEASURES, KlSummary, SideEffects

REPEAT_N = 4
GENERATION_FILTER = "none"  # the filter name of a generation measure's metric key


def summarize_kl(per_document: Sequence[Sequence[float]], confidence: float = 0.95) -> KlSummary:
    """The summary of per-position KL values of each document (empty documents are skipped)."""
    docs = [np.asarray(values, dtype=float) for values in per_document if len(values)]
    if not docs:
        raise ValueError("no positions to summarise")
    sums = np.array([doc.sum() for doc in docs])
    counts = np.array([doc.size for doc in docs], dtype=float)
    ratio = float(sums.sum() / counts.sum())
    p95 = float(np.percentile(np.concatenate(docs), 95))
    low, high = _ratio_interval(sums, counts, ratio, confidence)
    return KlSummary(ratio, low, high, p95, int(counts.sum()), len(docs))


def pooled_kl(summaries: Sequence[KlSummary]) -> float | None:
    """The token-weighted mean KL over several tasks' summaries (None without any): the mean a
    single summary of all their documents would have."""
    tokens = sum(summary.tokens for summary in summaries)
    if not tokens:
        return None
    return sum(summary.mean_kl * summary.tokens for summary in summaries) / tokens


def _ratio_interval(
    sums: np.ndarray, counts: np.ndarray, ratio: float, confidence: float
) -> tuple[float | None, float | None]:
    """The t interval of a ratio estimator from per-document sums and counts."""
    n = sums.size
    if n < 2:
        return None, None
    residuals = (sums - ratio * counts) / counts.mean()
    se = float(residuals.std(ddof=1) / math.sqrt(n))
    if se == 0.0:
        return ratio, ratio
    low, high = stats.t.interval(confidence, df=n - 1, loc=ratio, scale=se)
    return float(low), float(high)


def generation_values(effects: SideEffects) -> dict[int, dict[str, float]]:
    """Per document, its generation measures keyed as metrics ("gen_ppl,none", ...)."""
    return {
        doc_id: {f"{name},{GENERATION_FILTER}": value for name, value in values.items()}
        for doc_id, values in effects.generation.items()
    }


def generation_means(effects: SideEffects) -> dict[str, tuple[float, float | None]]:
    """Per generation measure ("gen_ppl,none", ...): its mean over the documents that have it
    and the standard error sd / sqrt(n) (None for one document)."""
    means = {}
    for name in GENERATION_MEASURES:
        values = np.array([doc[name] for doc in effects.generation.values() if name in doc])
        if values.size:
            stderr = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else None
            means[f"{name},{GENERATION_FILTER}"] = (float(values.mean()), stderr)
    return means


def distinct_2(tokens: Sequence[int]) -> float | None:
    """Unique bigrams / bigrams; None for fewer than two tokens."""
    bigrams = list(itertools.pairwise(tokens))
    return len(set(bigrams)) / len(bigrams) if bigrams else None


def repetition_rate(tokens: Sequence[int], n: int = REPEAT_N) -> float | None:
    """The share of tokens that complete an n-gram already seen earlier; None for no tokens."""
    if not tokens:
        return None
    seen: set[tuple[int, ...]] = set()
    repeated = 0
    for end in range(n, len(tokens) + 1):
        gram = tuple(tokens[end - n : end])
        repeated += gram in seen
        seen.add(gram)
    return repeated / len(tokens)


def perplexity(nll_sum: float, tokens: int) -> float | None:
    """exp(mean negative log-likelihood per token); None without tokens."""
    return math.exp(nll_sum / tokens) if tokens else None
