"""Per-document steerability against direct fits of the logged per-choice log-likelihoods."""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
from conftest import invoke
from scipy import stats

from saeval.analysis import render
from saeval.analysis.results import MetricValue, ResultSet, TaskResult
from saeval.analysis.steerability import Steerability, steerability
from saeval.analysis.steerability_plot import plot_steerability
from saeval.analysis.sweep import sweep

CHOICES = ["A cat", "A dog", "A fish", "A bird"]
N_DOCS = 30
SCALES = (0.5, 1.0, 2.0)


def _logliks(rng: np.random.Generator) -> dict[float, np.ndarray]:
    """Per (scale, document, choice) log-likelihoods: the target's rises with the scale for
    most documents and falls for a few (documents 0, 7, 14, 21, 28)."""
    base = rng.normal(-8.0, 1.5, size=(N_DOCS, len(CHOICES)))
    trend = rng.uniform(0.2, 1.0, size=N_DOCS)
    trend[::7] = -rng.uniform(0.2, 0.6, size=len(trend[::7]))
    found = {}
    for scale in (0.0, *SCALES, -0.5, -1.0):
        noise = rng.normal(0.0, 0.05, size=base.shape)
        values = base + noise - 0.1 * abs(scale)  # every choice loses a little
        values[np.arange(N_DOCS), _targets()] += trend * scale
        found[scale] = values
    return found


def _targets() -> np.ndarray:
    return np.arange(N_DOCS) % len(CHOICES)


def _write_samples(path: Path, logliks: np.ndarray, *, text_target: bool = False) -> Path:
    """An lm-eval samples JSONL of a 4-choice task (log-likelihoods as strings, like lm-eval)."""
    lines = []
    for doc_id, row in enumerate(logliks):
        target = int(_targets()[doc_id])
        arguments = {
            f"gen_args_{i}": {"arg_0": f"Question {doc_id}\nAnswer:", "arg_1": f" {choice}"}
            for i, choice in enumerate(CHOICES)
        }
        responses = [[str(value), "False"] for value in row]
        record = {
            "doc_id": doc_id,
            "doc": {"q": doc_id},
            "target": CHOICES[target] if text_target else str(target),
            "arguments": arguments,
            "resps": [[response] for response in responses],
            "filtered_resps": responses,
            "filter": "none",
            "metrics": ["acc"],
            "doc_hash": f"hash{doc_id}",
            "acc": float(np.argmax(row) == target),
        }
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")
    return path


def _side(folder: Path, label: str, logliks: np.ndarray, **options: bool) -> ResultSet:
    folder.mkdir(parents=True, exist_ok=True)
    samples = _write_samples(folder / "samples_mc.jsonl", logliks, **options)
    acc = float(np.mean(np.argmax(logliks, axis=1) == _targets()))
    task = TaskResult(
        "mc", {"acc,none": MetricValue(acc, 0.05)}, N_DOCS, "1", None, {"acc": True},
        samples_file=samples,
    )  # fmt: skip
    return ResultSet(label, folder, (), "m", "", {"mc": task})


def _direct_slopes(logliks: dict[float, np.ndarray], scales: tuple[float, ...]) -> np.ndarray:
    """scipy's linregress of log P(target | choices), computed with math.exp by hand."""
    slopes = []
    for doc in range(N_DOCS):
        target = int(_targets()[doc])
        ys = []
        for scale in scales:
            row = [float(v) for v in logliks[scale][doc]]
            ys.append(row[target] - math.log(sum(math.exp(v) for v in row)))
        slopes.append(stats.linregress(scales, ys).slope)
    return np.array(slopes)


def _hand_wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[float, np.ndarray], Path]:
    root = tmp_path_factory.mktemp("steer")
    return _logliks(np.random.default_rng(3)), root


def _sides(
    logliks: dict[float, np.ndarray], root: Path, scales: tuple[float, ...], **options: bool
) -> tuple[ResultSet, dict[float, ResultSet]]:
    baseline = _side(root / "baseline", "baseline", logliks[0.0], **options)
    steered = {s: _side(root / f"steered@{s:g}", f"s{s:g}", logliks[s], **options) for s in scales}
    return baseline, steered


def _only(entries: list[Steerability]) -> Steerability:
    (entry,) = entries
    return entry


def test_slopes_equal_a_direct_least_squares_fit(swept: tuple[dict, Path]) -> None:
    logliks, root = swept
    entry = _only(steerability(*_sides(logliks, root, SCALES)))
    direct = _direct_slopes(logliks, (0.0, *SCALES))
    assert entry.scales == (0.0, *SCALES) and entry.n == N_DOCS and entry.skipped == 0
    np.testing.assert_allclose([doc.slope for doc in entry.slopes], direct, rtol=1e-9, atol=1e-12)
    assert [doc.target for doc in entry.slopes] == list(_targets())
    assert entry.median_slope == pytest.approx(float(np.median(direct)))
    assert entry.mean_slope == pytest.approx(float(np.mean(direct))) and entry.mean_slope > 0


def test_anti_steerable_fraction_and_its_wilson_interval_by_hand(swept: tuple[dict, Path]) -> None:
    logliks, root = swept
    entry = _only(steerability(*_sides(logliks, root, SCALES)))
    direct = _direct_slopes(logliks, (0.0, *SCALES))
    anti = sum(1 for slope in direct if slope < 0)  # the mean slope is positive
    assert anti == 5  # the five documents built to fall
    assert (entry.anti_steerable, entry.anti_fraction) == (anti, pytest.approx(anti / N_DOCS))
    low, high = _hand_wilson(anti, N_DOCS)
    assert (entry.anti_ci_low, entry.anti_ci_high) == (pytest.approx(low), pytest.approx(high))


def test_median_ci_matches_a_hand_percentile_bootstrap(swept: tuple[dict, Path]) -> None:
    logliks, root = swept
    entry = _only(steerability(*_sides(logliks, root, SCALES)))
    slopes = np.array([doc.slope for doc in entry.slopes])
    rng = np.random.default_rng(11)
    medians = np.median(rng.choice(slopes, size=(40000, slopes.size), replace=True), axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    spread = float(np.ptp(slopes))
    assert entry.median_ci_low is not None and entry.median_ci_high is not None
    assert entry.median_ci_low <= entry.median_slope <= entry.median_ci_high
    assert abs(entry.median_ci_low - low) < 0.03 * spread
    assert abs(entry.median_ci_high - high) < 0.03 * spread


def test_target_given_as_choice_text_and_negative_strengths(swept: tuple[dict, Path]) -> None:
    logliks, root = swept
    baseline, steered = _sides(logliks, root / "text", (*SCALES, -0.5, -1.0), text_target=True)
    positive, negative = steerability(baseline, steered)
    assert positive.scales == (0.0, *SCALES) and not positive.negative
    assert negative.scales == (0.0, -0.5, -1.0) and negative.negative
    np.testing.assert_allclose(
        [doc.slope for doc in negative.slopes], _direct_slopes(logliks, (0.0, -0.5, -1.0))
    )


def test_needs_two_strengths_of_one_sign_and_matching_documents(swept: tuple[dict, Path]) -> None:
    logliks, root = swept
    baseline, steered = _sides(logliks, root / "few", (1.0, -1.0))
    assert steerability(baseline, steered) == []
    baseline, steered = _sides(logliks, root / "drop", SCALES)
    file = steered[2.0].tasks["mc"].samples_file
    assert file is not None
    lines = file.read_text().splitlines()
    file.write_text("\n".join(lines[:-3]) + "\n")  # three documents not logged at 2x
    entry = _only(steerability(baseline, steered))
    assert (entry.n, entry.skipped) == (N_DOCS - 3, 3)


def test_sweep_report_carries_slopes_in_json_a_summary_and_a_histogram(
    swept: tuple[dict, Path], tmp_path: Path
) -> None:
    logliks, root = swept
    result = sweep(*_sides(logliks, root / "report", SCALES))
    entry = _only(list(result.steerability))
    data = json.loads(render.render(result, "json"))
    (logged,) = data["steerability"]
    assert [doc["slope"] for doc in logged["slopes"]] == [doc.slope for doc in entry.slopes]
    assert logged["anti_steerable"] == 5 and logged["n"] == N_DOCS
    line = next(line for line in render.summary_lines(result) if "anti-steerable" in line)
    assert line.startswith("mc: per-document slope of log P(target) over scales 0,0.5,1,2")
    assert "anti-steerable 5/30 = 16.7%" in line
    (path,) = plot_steerability(result.steerability, tmp_path)
    assert path.name == "sweep_mc_steerability.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def _logged(folder: Path) -> dict[int, tuple[int, list[float]]]:
    """doc_id -> (target, per-choice log-likelihoods) of the one samples file in ``folder``."""
    (file,) = folder.glob("samples_*.jsonl")
    records = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    return {
        r["doc_id"]: (int(r["target"]), [float(x[0]) for x in r["filtered_resps"]]) for r in records
    }


def test_a_real_sweep_reports_slopes_of_its_logged_log_likelihoods(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    from sae_builders import MC_TASK

    args = ["run", str(tiny_bundle / "steer.csv"), "--model", str(tiny_bundle / "model")]
    args += ["--include-path", str(tiny_bundle / "tasks"), "--output", str(tmp_path)]
    args += ["--device", "cpu", "--tasks", MC_TASK, "--scale", "1,2", "--name", "s"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    run = tmp_path / "s"
    (entry,) = json.loads((run / "comparison.json").read_text())["steerability"]
    sides = [_logged(run / name) for name in ("baseline", "steered@1", "steered@2")]
    assert entry["task"] == MC_TASK and entry["scales"] == [0.0, 1.0, 2.0]
    assert entry["n"] == len(sides[0]) and entry["skipped"] == 0
    for doc in entry["slopes"]:
        target, _ = sides[0][doc["doc_id"]]
        ys = []
        for side in sides:
            logliks = side[doc["doc_id"]][1]
            ys.append(logliks[target] - math.log(sum(math.exp(v) for v in logliks)))
        assert doc["slope"] == pytest.approx(stats.linregress([0, 1, 2], ys).slope, abs=1e-9)
    assert (run / f"sweep_{MC_TASK}_steerability.png").is_file()
    assert "anti-steerable" in result.stdout
