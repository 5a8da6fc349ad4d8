"""Reading lm-eval outputs, comparing them, rendering the report and the `saeval compare` CLI."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_checks import assert_one_line_error
from conftest import HANG_S, invoke
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from saeval.analysis import number_text, render, stats
from saeval.analysis.compare import (
    MCNEMAR,
    NO_TEST,
    SIGN,
    UNPAIRED_Z,
    Comparison,
    ComparisonRow,
    compare,
)
from saeval.analysis.results_io import (
    DocSample,
    MetricValue,
    ResultSet,
    TaskResult,
    load_run,
    load_side,
)
from saeval.errors import ResultsError, UsageError

GOLDEN = Path(__file__).parent / "golden" / "lmeval"
MODEL = "tiny-gpt2"


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A writable copy of the golden folders: <tmp>/run/{baseline,steered}/tiny-gpt2/..."""
    return Path(shutil.copytree(GOLDEN, tmp_path / "run", ignore=shutil.ignore_patterns("*.md")))


def _file(side: Path, prefix: str) -> Path:
    (found,) = (side / MODEL).glob(f"{prefix}*")
    return found


def _golden() -> Comparison:
    return compare(load_side(GOLDEN / "baseline"), load_side(GOLDEN / "steered"))


def _row(comparison: Comparison, task: str, metric: str) -> ComparisonRow:
    (row,) = (r for r in comparison.rows if r.task == task and r.metric == metric)
    return row


# ---- reading -----------------------------------------------------------------------------


def test_load_side_reads_an_lm_eval_output_folder() -> None:
    side = load_side(GOLDEN / "baseline")
    assert side.model_name == MODEL and side.model_args == f"pretrained={MODEL}"
    assert set(side.tasks) == {
        "tiny_gen",
        "tiny_group",
        "tiny_mc",
        "tiny_ppl",
        "tiny_sub_a",
        "tiny_sub_b",
    }
    mc = side.tasks["tiny_mc"]
    assert mc.metrics["acc,none"] == MetricValue(0.25, 0.09028938981432691)
    assert mc.n == 24 and mc.version == "1.0" and mc.config_hash
    assert mc.samples is not None and len(mc.samples) == 24
    assert mc.samples[0].values == {"acc,none": 1.0, "acc_norm,none": 1.0}
    assert side.tasks["tiny_ppl"].metrics["word_perplexity,none"].stderr is None  # "N/A"
    ppl = side.tasks["tiny_ppl"].samples
    assert ppl is not None and ppl[0].values == {}  # per document: (loglikelihood, words) pairs
    assert side.tasks["tiny_group"].subtasks == ("tiny_sub_a", "tiny_sub_b")
    assert side.tasks["tiny_group"].n == 22
    gen = side.tasks["tiny_gen"].samples
    assert gen is not None and set(gen[0].values) == {
        "exact_match,strict-match",
        "exact_match,flexible-extract",
    }


def test_a_results_file_and_its_folder_read_the_same() -> None:
    by_file = load_side(_file(GOLDEN / "baseline", "results_"))
    by_folder = load_side(GOLDEN / "baseline")
    assert by_file.tasks == by_folder.tasks


def test_output_path_ending_in_json_is_read(tmp_path: Path) -> None:
    """`lm_eval --output_path out/mine.json` writes out/mine_<time>.json + samples beside it."""
    source = GOLDEN / "baseline" / MODEL
    stamp = "2026-11-25T12-54-10.160168"
    for file in source.iterdir():
        target = f"mine_{stamp}.json" if file.name.startswith("results_") else file.name
        shutil.copy(file, tmp_path / target)
    side = load_side(tmp_path / f"mine_{stamp}.json")
    assert side.tasks["tiny_mc"].samples is not None


def test_newest_results_file_wins_and_is_named(run: Path) -> None:
    folder = run / "baseline" / MODEL
    older = folder / "results_2026-01-01T00-00-00.000000.json"
    data = json.loads(_file(run / "baseline", "results_").read_text())
    data["results"]["tiny_mc"]["acc,none"] = 0.99
    older.write_text(json.dumps(data))
    side = load_side(run / "baseline")
    assert side.tasks["tiny_mc"].metrics["acc,none"].value == 0.25
    assert any("2 results files" in note and older.name in note for note in side.notes)


def test_results_of_several_models_are_ambiguous(run: Path) -> None:
    shutil.copytree(run / "baseline" / MODEL, run / "baseline" / "other-model")
    with pytest.raises(ResultsError, match="several models"):
        load_side(run / "baseline")


def test_corrupt_json_names_file_and_line(run: Path) -> None:
    results = _file(run / "baseline", "results_")
    results.write_text(results.read_text().replace('"results": {', '"results": {,', 1))
    with pytest.raises(ResultsError, match=rf"{results.name}:2: invalid JSON"):
        load_side(run / "baseline")


def test_truncated_jsonl_names_file_and_line(run: Path) -> None:
    samples = _file(run / "steered", "samples_tiny_mc_")
    samples.write_text(samples.read_text()[:-300])
    with pytest.raises(ResultsError, match=rf"{samples.name}:24: invalid JSON"):
        load_side(run / "steered")


def test_missing_or_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no such file or folder"):
        load_side(tmp_path / "nowhere")
    with pytest.raises(ResultsError, match="no lm-eval results file"):
        load_side(tmp_path)
    (tmp_path / "results_x.json").write_text('{"not": "lm-eval"}')
    with pytest.raises(ResultsError, match="not an lm-eval results file"):
        load_side(tmp_path / "results_x.json")


def test_a_run_folder_as_one_side_asks_which_configuration() -> None:
    with pytest.raises(UsageError, match="run folder with configurations baseline, steered"):
        load_side(GOLDEN)


def test_load_run_keys_steered_configurations_by_scale(run: Path) -> None:
    (run / "steered").rename(run / "steered@2")
    shutil.copytree(run / "steered@2", run / "steered@0.5")
    sides = load_run(run)
    assert list(sides.steered) == [0.5, 2.0]
    assert sides.baseline.label == "baseline" and sides.steered[2.0].label == "steered@2"


# ---- comparing ---------------------------------------------------------------------------


def test_golden_multiple_choice_row_is_an_exact_mcnemar() -> None:
    comparison = _golden()
    row = _row(comparison, "tiny_mc", "acc")
    assert (row.a, row.b, row.delta) == pytest.approx((0.25, 2 / 3, 5 / 12))
    assert row.test == MCNEMAR and row.paired
    assert (row.right_to_wrong, row.wrong_to_right, row.n_paired) == (0, 10, 24)
    assert row.p == pytest.approx(sps.binomtest(10, 10).pvalue)
    tested = [r for r in comparison.rows if r.p is not None]
    assert len(tested) == 10  # the three perplexity rows carry no test
    assert row.p_holm == pytest.approx(10 * sps.binomtest(10, 10).pvalue) and row.significant


def test_group_pools_its_subtasks_documents() -> None:
    comparison = _golden()
    group = _row(comparison, "tiny_group", "acc")
    a, b = _row(comparison, "tiny_sub_a", "acc"), _row(comparison, "tiny_sub_b", "acc")
    assert group.n_paired == 22
    assert (group.right_to_wrong, group.wrong_to_right) == (1, 5)
    assert (a.right_to_wrong, a.wrong_to_right, b.right_to_wrong, b.wrong_to_right) == (0, 2, 1, 3)
    assert group.note == ""  # size-weighted group: the pooled mean difference is the delta
    tasks = list(dict.fromkeys(row.task for row in comparison.rows))
    assert tasks == ["tiny_gen", "tiny_group", "tiny_sub_a", "tiny_sub_b", "tiny_mc", "tiny_ppl"]


def test_filters_stay_visible_and_perplexity_has_no_per_document_test() -> None:
    comparison = _golden()
    metrics = {row.metric for row in comparison.rows}
    assert {"acc", "exact_match,strict-match", "exact_match,flexible-extract"} <= metrics
    flexible = _row(comparison, "tiny_gen", "exact_match,flexible-extract")
    assert (flexible.right_to_wrong, flexible.wrong_to_right) == (0, 3)
    strict = _row(comparison, "tiny_gen", "exact_match,strict-match")
    assert (strict.delta, strict.p) == (0.0, 1.0)
    ppl = _row(comparison, "tiny_ppl", "word_perplexity")
    assert ppl.test == NO_TEST and ppl.p is None and ppl.higher_is_better is False
    assert ppl.delta > 0 and "corpus-level" in ppl.note


def _loglikelihood_side(folder: Path, lls: list[float], metric_list: list[Any] | None) -> Path:
    """What lm-eval writes for a loglikelihood task: per document, "perplexity" holds the
    log-likelihood; the aggregate is exp(-mean) and lower is better."""
    correct = [int(ll > -5.0) for ll in lls]
    results = {
        "perplexity,none": math.exp(-sum(lls) / len(lls)),
        "perplexity_stderr,none": 1.0,
        "acc,none": sum(correct) / len(correct),
        "acc_stderr,none": 0.1,
    }
    config = {"task": "tiny_ll", "output_type": "loglikelihood"}
    if metric_list is not None:
        config["metric_list"] = metric_list
    data = {
        "results": {"tiny_ll": {"alias": "tiny_ll", **results}},
        "configs": {"tiny_ll": config},
        "versions": {"tiny_ll": 1.0},
        "higher_is_better": {"tiny_ll": {"perplexity": False, "acc": True}},
        "n-samples": {"tiny_ll": {"original": len(lls), "effective": len(lls)}},
        "model_name": MODEL,
    }
    stamp = "2026-11-25T12-00-00.000000"
    folder.mkdir(parents=True)
    (folder / f"results_{stamp}.json").write_text(json.dumps(data), encoding="utf-8")
    records = [
        {"doc_id": i, "doc_hash": f"h{i}", "filter": "none", "metrics": ["perplexity", "acc"]}
        | {"perplexity": ll, "acc": ok}
        for i, (ll, ok) in enumerate(zip(lls, correct, strict=True))
    ]
    text = "".join(json.dumps(record) + "\n" for record in records)
    (folder / f"samples_tiny_ll_{stamp}.jsonl").write_text(text, encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    "metric_list",
    [
        None,
        [{"metric": "perplexity"}, {"metric": "acc"}],
        [
            {"metric": "perplexity", "aggregation": "perplexity", "higher_is_better": False},
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
        ],
    ],
)
def test_loglikelihood_perplexity_is_not_paired_on_log_likelihoods(
    tmp_path: Path, metric_list: list[Any] | None
) -> None:
    baseline = [-2.0, -3.0, -4.0, -6.0, -2.5, -3.5]
    worse = [ll - 1.5 for ll in baseline]  # every document less likely: perplexity rises
    comparison = compare(
        load_side(_loglikelihood_side(tmp_path / "a", baseline, metric_list)),
        load_side(_loglikelihood_side(tmp_path / "b", worse, metric_list)),
    )
    ppl = _row(comparison, "tiny_ll", "perplexity")
    assert ppl.delta > 0 and ppl.higher_is_better is False
    assert ppl.test == UNPAIRED_Z and "corpus-level" in ppl.note
    assert ppl.ci_low is not None and ppl.ci_high is not None and ppl.ci_high > 0
    assert _row(comparison, "tiny_ll", "acc").test == MCNEMAR


def test_without_samples_the_test_is_an_unpaired_z(run: Path) -> None:
    for samples in (run / "steered" / MODEL).glob("samples_*"):
        samples.unlink()
    comparison = compare(load_side(run / "baseline"), load_side(run / "steered"))
    row = _row(comparison, "tiny_mc", "acc")
    expected = stats.unpaired_z(row.a, row.a_stderr or 0, row.b, row.b_stderr or 0)
    assert row.test == UNPAIRED_Z and not row.paired
    assert row.p == pytest.approx(expected.p) and row.right_to_wrong is None
    assert "no per-document samples" in row.note


def test_different_documents_are_an_error(run: Path) -> None:
    samples = _file(run / "steered", "samples_tiny_sub_b_")
    lines = samples.read_text().splitlines(keepends=True)
    record = json.loads(lines[3])
    record["doc_hash"] = "0" * 64
    lines[3] = json.dumps(record) + "\n"
    samples.write_text("".join(lines))
    with pytest.raises(ResultsError, match="tiny_sub_b: document 3 differs"):
        compare(load_side(run / "baseline"), load_side(run / "steered"))


def test_fewer_documents_on_one_side_is_a_labelled_partial_comparison(run: Path) -> None:
    samples = _file(run / "steered", "samples_tiny_mc_")
    samples.write_text("".join(samples.read_text().splitlines(keepends=True)[:20]))
    comparison = compare(load_side(run / "baseline"), load_side(run / "steered"))
    assert _row(comparison, "tiny_mc", "acc").n_paired == 20
    assert any("tiny_mc: partial comparison: paired on 20" in note for note in comparison.notes)


def _limit_side(side: Path, task: str, keep: int) -> list[dict[str, Any]]:
    """Rewrite ``side`` as a run with --limit ``keep`` on ``task`` had written it: the first
    ``keep`` samples, and the results file's aggregates recomputed from them by hand."""
    samples = _file(side, f"samples_{task}_")
    records = [json.loads(line) for line in samples.read_text().splitlines()[:keep]]
    samples.write_text("".join(json.dumps(record) + "\n" for record in records))
    results = _file(side, "results_")
    data = json.loads(results.read_text())
    for metric in ("acc", "acc_norm"):
        values = [record[metric] for record in records]
        mean = sum(values) / keep
        data["results"][task][f"{metric},none"] = mean
        variance = sum((value - mean) ** 2 for value in values) / (keep - 1)
        data["results"][task][f"{metric}_stderr,none"] = math.sqrt(variance / keep)
    data["n-samples"][task]["effective"] = keep
    results.write_text(json.dumps(data))
    return records


def test_a_partial_comparison_describes_the_paired_documents_in_every_column(run: Path) -> None:
    """A --limit 10 baseline against a 24-document steered run: a, b, delta, n, CI and flips
    are all over the 10 documents both logged; the steered run's 24-document aggregate is
    kept apart, labelled, and not subtracted from anything."""
    baseline = _limit_side(run / "baseline", "tiny_mc", 10)
    steered = [json.loads(line) for line in _file(run / "steered", "samples_tiny_mc_").open()]
    comparison = compare(load_side(run / "baseline"), load_side(run / "steered"))
    row = _row(comparison, "tiny_mc", "acc")
    a = [record["acc"] for record in baseline]
    b = [record["acc"] for record in steered if record["doc_id"] < 10]
    assert (row.n_a, row.n_b, row.n_paired) == (10, 10, 10)
    assert row.a == pytest.approx(sum(a) / 10) and row.b == pytest.approx(sum(b) / 10)
    assert row.delta == pytest.approx((sum(b) - sum(a)) / 10)
    assert row.b_stderr == pytest.approx(sps.sem(b))
    flips = (
        sum(x > y for x, y in zip(a, b, strict=True)),
        sum(x < y for x, y in zip(a, b, strict=True)),
    )
    assert (row.right_to_wrong, row.wrong_to_right) == flips
    assert (row.ci_low, row.ci_high) == pytest.approx(stats.mcnemar_interval(*flips, 10))
    assert (row.b_reported, row.n_b_reported) == (pytest.approx(16 / 24), 24)
    assert "over the 10 documents both sides logged" in row.note
    assert "steered 0.6667 over 24 documents" in row.note and "weigh" not in row.note
    cells = render.render(comparison, "csv")
    assert "a_reported" in cells.splitlines()[0]


def test_a_partial_comparison_skips_a_corpus_metric_it_cannot_restrict(run: Path) -> None:
    samples = _file(run / "steered", "samples_tiny_ppl_")
    samples.write_text("".join(samples.read_text().splitlines(keepends=True)[:3]))
    comparison = compare(load_side(run / "baseline"), load_side(run / "steered"))
    assert all(row.task != "tiny_ppl" for row in comparison.rows)
    assert any(
        note.startswith("tiny_ppl: word_perplexity skipped: partial comparison")
        for note in comparison.notes
    )


def test_a_document_twice_in_a_samples_file_names_the_line_and_doc_id(run: Path) -> None:
    samples = _file(run / "steered", "samples_tiny_mc_")
    lines = samples.read_text().splitlines(keepends=True)
    again = json.loads(lines[4])
    again["acc"] = 1.0 - again["acc"]  # the same document with the other answer
    samples.write_text("".join(lines) + json.dumps(again) + "\n")
    with pytest.raises(ResultsError, match=rf"{samples.name}:25: doc_id 4 appears again") as e:
        load_side(run / "steered")
    assert "first at line 5" in e.value.message
    result = invoke("compare", run / "baseline", run / "steered")
    assert_one_line_error(result, f"{samples}:25: doc_id 4 appears again")


def test_an_aggregate_that_is_not_the_mean_of_its_samples_is_noted(run: Path) -> None:
    assert not any("disagree" in note for note in _golden().notes)  # ppl, groups: not checked
    results = _file(run / "steered", "results_")
    data = json.loads(results.read_text())
    data["results"]["tiny_mc"]["acc,none"] = 0.5  # the samples' mean is 16/24
    results.write_text(json.dumps(data))
    comparison = compare(load_side(run / "baseline"), load_side(run / "steered"))
    assert any(
        f"{results}: tiny_mc acc,none is 0.5, but the mean over the 24 documents of its "
        "samples file is 0.666667" in note
        for note in comparison.notes
    )


def test_tasks_on_one_side_and_changed_versions_are_noted(run: Path) -> None:
    results = _file(run / "steered", "results_")
    data = json.loads(results.read_text())
    del data["results"]["tiny_ppl"]
    data["versions"]["tiny_mc"] = 2.0
    results.write_text(json.dumps(data))
    comparison = compare(load_side(run / "baseline"), load_side(run / "steered"))
    assert "skipped tiny_ppl: only in baseline" in comparison.notes
    assert "tiny_mc: task versions differ (1.0 vs 2.0)" in comparison.notes
    assert all(row.task != "tiny_ppl" for row in comparison.rows)


def test_metric_selection_and_unknown_metrics() -> None:
    a, b = load_side(GOLDEN / "baseline"), load_side(GOLDEN / "steered")
    only_acc = compare(a, b, metrics=["acc"])
    assert {row.metric for row in only_acc.rows} == {"acc"}
    strict = compare(a, b, metrics=["exact_match,strict-match"])
    assert [row.metric for row in strict.rows] == ["exact_match,strict-match"]
    with pytest.raises(UsageError, match="metric accuracy is not in both"):
        compare(a, b, metrics=["accuracy"])
    with pytest.raises(UsageError, match="alpha"):
        compare(a, b, alpha=1.5)


def test_compare_golden_with_itself_changes_nothing() -> None:
    side = load_side(GOLDEN / "steered")
    comparison = compare(side, side)
    assert comparison.a.label != comparison.b.label  # "A (steered)" / "B (steered)"
    for row in comparison.rows:
        assert row.delta == 0.0
        assert row.p in (1.0, None) and not row.significant
        assert row.right_to_wrong in (0, None) and row.wrong_to_right in (0, None)


def _result_set(values: dict[str, list[float]]) -> ResultSet:
    """A one-task result set whose documents carry `values` per metric key."""
    n = len(next(iter(values.values())))
    docs = {
        i: DocSample(i, f"hash{i}", {key: column[i] for key, column in values.items()})
        for i in range(n)
    }
    metrics = {
        key: MetricValue(sum(column) / n, float(sps.sem(column)) if n > 1 else None)
        for key, column in values.items()
    }
    task = TaskResult("t", metrics, n, "1", "h", {"acc": True, "score": True}, samples=docs)
    return ResultSet("x", Path("x"), (), "m", "", {"t": task})


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 40).flatmap(
        lambda n: st.tuples(
            st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n),
            st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=n, max_size=n),
        )
    )
)
def test_comparing_a_run_with_itself_gives_zero_deltas(columns: tuple[list[float], ...]) -> None:
    binary, continuous = columns
    side = _result_set({"acc,none": binary, "score,none": continuous})
    comparison = compare(side, side)
    by_metric = {row.metric: row for row in comparison.rows}
    assert by_metric["acc"].test == MCNEMAR and by_metric["score"].test in (MCNEMAR, SIGN)
    for row in comparison.rows:
        assert row.delta == 0.0 and row.p == 1.0 and row.p_holm == 1.0
    # no flip in n documents bounds |delta| by the discordance rate's exact upper limit; equal
    # continuous differences have no variance, so no t interval (never a certain [0, 0])
    u = 1 - 0.025 ** (1 / len(binary))
    assert (by_metric["acc"].ci_low, by_metric["acc"].ci_high) == pytest.approx((-u, u))
    if by_metric["score"].test == MCNEMAR:
        assert by_metric["score"].ci_high == pytest.approx(u)
    else:
        assert (by_metric["score"].ci_low, by_metric["score"].ci_high) == (None, None)
    for row in comparison.rows:
        assert row.right_to_wrong in (0, None) and row.wrong_to_right in (0, None)


# ---- rendering ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "signed", "text"),
    [
        (0.25, False, "0.2500"),
        (-0.04567, True, "-0.0457"),
        (0.0, True, "+0.0000"),
        (9.38458, False, "9.385"),
        (76776.18, False, "76776"),
        (0.000123, False, "0.000123"),
        (None, False, "—"),
    ],
)
def test_fmt_number(value: float | None, signed: bool, text: str) -> None:
    assert number_text.fmt_number(value, signed=signed) == text


@pytest.mark.parametrize(
    ("p", "text"), [(0.0021, "0.0021"), (0.5, "0.5"), (1.0, "1"), (3e-7, "<1e-4"), (None, "—")]
)
def test_fmt_p(p: float | None, text: str) -> None:
    assert number_text.fmt_p(p) == text


def test_every_format_renders_the_golden_comparison() -> None:
    comparison = _golden()
    markdown = render.render(comparison, "markdown")
    assert "| tiny_mc | acc | 24 | 0.2500 ± 0.0903 | 0.6667 ± 0.0983 | +0.4167 |" in markdown
    rows = list(csv.DictReader(io.StringIO(render.render(comparison, "csv"))))
    assert len(rows) == len(comparison.rows) and rows[0]["n_paired"] == "8"
    data = json.loads(render.render(comparison, "json"))
    assert data["rows"][0]["p"] == 1.0 and data["a"]["label"] == "baseline"
    latex = render.render(comparison, "latex")
    assert r"\begin{tabular}" in latex and r"tiny\_mc" in latex and r"$\pm$" in latex
    with pytest.raises(UsageError, match="unknown format"):
        render.render(comparison, "html")


# ---- CLI ---------------------------------------------------------------------------------


def _invoke(*args: str | Path) -> tuple[int, str, str]:
    result = invoke("compare", *args, columns=200)
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def test_cli_table_for_two_folders() -> None:
    code, stdout, _ = _invoke(GOLDEN / "baseline", GOLDEN / "steered")
    assert code == 0
    assert "steered vs baseline" in stdout and "McNemar" in stdout and "0/10" in stdout
    assert "(1) no per-document form" in stdout


def test_cli_single_run_folder_compares_baseline_with_steered() -> None:
    code, stdout, _ = _invoke(GOLDEN, "--metric", "acc")
    assert code == 0 and "tiny_mc" in stdout and "acc_norm" not in stdout


@pytest.mark.parametrize(
    ("fmt", "check"),
    [
        ("markdown", "| tiny_mc | acc |"),
        ("csv", "task,metric,key,"),
        ("json", '"rows": ['),
        ("latex", r"\toprule"),
    ],
)
def test_cli_text_formats(fmt: str, check: str) -> None:
    code, stdout, _ = _invoke(GOLDEN / "baseline", GOLDEN / "steered", "--format", fmt)
    assert code == 0 and check in stdout
    if fmt == "json":
        assert len(json.loads(stdout)["rows"]) == 13


def test_cli_output_file_takes_its_format_from_the_suffix(tmp_path: Path) -> None:
    target = tmp_path / "report" / "comparison.md"
    code, stdout, stderr = _invoke(GOLDEN / "baseline", GOLDEN / "steered", "-o", target)
    assert code == 0 and f"wrote {target}" in stderr.replace("\n", "")
    assert target.read_text().startswith("**steered vs baseline")
    assert "tiny_mc" in stdout  # the table is still printed
    code, _, stderr = _invoke(GOLDEN / "baseline", GOLDEN / "steered", "-o", tmp_path / "x.txt")
    assert code == 2 and "cannot tell the format" in stderr


def test_cli_sweep_over_a_run_folder(run: Path, tmp_path: Path) -> None:
    (run / "steered").rename(run / "steered@1")
    shutil.copytree(run / "baseline", run / "steered@0.5")
    report = tmp_path / "out" / "sweep.json"
    # 0.5 is the baseline again: no flip in 24 documents bounds |delta| by 0.142, so only a
    # margin above that shows it safe (0.02 cannot be shown with 24 documents)
    code, _, stderr = _invoke(run, "-m", "acc", "--margin", "0.15", "-o", report)
    assert (
        code == 0 and "wrote 8 plots" in stderr
    )  # 4 series, 3 steerability histograms, the summary
    data = json.loads(report.read_text())
    safe = {(s["task"], s["metric"]): s["largest_safe"] for s in data["series"]}
    assert safe[("tiny_mc", "acc")] == 1.0
    assert (tmp_path / "out" / "sweep_tiny_mc_acc.png").read_bytes()[:4] == b"\x89PNG"
    # the golden steered run kept every log-likelihood: each document's slope is 0
    steer = {entry["task"]: entry for entry in data["steerability"]}
    assert set(steer) == {"tiny_mc", "tiny_sub_a", "tiny_sub_b"}
    assert steer["tiny_mc"]["n"] == 24 and steer["tiny_mc"]["anti_steerable"] == 0
    assert all(doc["slope"] == 0.0 for doc in steer["tiny_mc"]["slopes"])
    assert (tmp_path / "out" / "sweep_tiny_mc_steerability.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "out" / "summary.png").read_bytes()[:4] == b"\x89PNG"


def _break_results(run: Path) -> str:
    results = _file(run / "steered", "results_")
    results.write_text(results.read_text()[:500])
    return f"{results.name}:"


def _truncate_samples(run: Path) -> str:
    samples = _file(run / "steered", "samples_tiny_sub_a_")
    samples.write_text(samples.read_text()[:-50])
    return f"{samples.name}:10: invalid JSON"


def _change_doc_hash(run: Path) -> str:
    samples = _file(run / "steered", "samples_tiny_mc_")
    text = samples.read_text()
    first = json.loads(text.splitlines()[0])["doc_hash"]
    samples.write_text(text.replace(first, "f" * 64))
    return "tiny_mc: document 0 differs between baseline and steered"


def _remove_results(run: Path) -> str:
    _file(run / "steered", "results_").unlink()
    return f"{run / 'steered'}: no lm-eval results file"


def _other_model(run: Path) -> str:
    results = _file(run / "steered", "results_")
    data = json.loads(results.read_text())
    data["model_name"] = "other-model"
    data["config"]["model_args"] = {"pretrained": "other-model"}
    results.write_text(json.dumps(data))
    return f"are results of different models ({MODEL} vs other-model)"


@pytest.mark.parametrize(
    "damage", [_remove_results, _break_results, _truncate_samples, _change_doc_hash, _other_model]
)
def test_cli_bad_inputs_give_one_error_line(run: Path, damage: Callable[[Path], str]) -> None:
    expected = damage(run)
    result = invoke("compare", run / "baseline", run / "steered")
    assert_one_line_error(result, expected)
    assert result.stdout == ""


def test_results_of_another_model_compare_only_with_any_model(run: Path) -> None:
    _other_model(run)
    result = invoke("compare", run)  # the run folder's two sides
    assert_one_line_error(result, "different models")
    assert "--any-model" in result.stderr.splitlines()[-1]
    code, stdout, _ = _invoke(run, "--any-model", "--format", "json")
    assert code == 0
    notes = json.loads(stdout)["notes"]
    assert notes[0] == f"different models: baseline is {MODEL}, steered is other-model"


def test_cli_usage_errors(tmp_path: Path) -> None:
    code, _, stderr = _invoke(tmp_path / "missing", GOLDEN / "steered")
    assert code == 1 and "missing: no such file or folder" in stderr.replace("\n", "")
    code, _, stderr = _invoke(GOLDEN, GOLDEN / "steered")
    assert code == 2 and "which one?" in stderr
    code, _, stderr = _invoke(GOLDEN / "baseline")
    assert code == 2 and "not a saeval run folder" in stderr
    code, _, stderr = _invoke(GOLDEN, "--metric", "nope")
    assert code == 2 and "metric nope" in stderr


# ---- end to end with lm-eval's own CLI ----------------------------------------------------

_LM_EVAL_TWICE = """
import sys
from lm_eval.__main__ import cli_evaluate

tasks, *runs = sys.argv[1:]
for model, output in zip(runs[::2], runs[1::2]):
    sys.argv = ["lm_eval", "--model", "hf", "--model_args", f"pretrained={model}",
                "--tasks", "tiny_mc,tiny_rolling", "--include_path", tasks,
                "--output_path", output, "--log_samples", "--limit", "5", "--batch_size", "4"]
    cli_evaluate()
"""


def test_two_plain_lm_eval_runs_compare_paired(tmp_path: Path, tiny_bundle: Path) -> None:
    """lm-eval's CLI (as `python -m lm_eval` runs it) on two tiny GPT-2s, then saeval compare."""
    from builders import save_tiny_pretrained

    tasks = tiny_bundle / "tasks"
    models = [tiny_bundle / "model", save_tiny_pretrained("gpt2", tmp_path / "model1", seed=1)]
    outputs = [tmp_path / "out0", tmp_path / "out1"]
    argv = [str(tasks), str(models[0]), str(outputs[0]), str(models[1]), str(outputs[1])]
    done = subprocess.run(
        [sys.executable, "-c", _LM_EVAL_TWICE, *argv],
        capture_output=True,
        text=True,
        timeout=HANG_S,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]

    with pytest.raises(ResultsError, match="different models"):
        compare(load_side(outputs[0]), load_side(outputs[1]))
    comparison = compare(load_side(outputs[0]), load_side(outputs[1]), any_model=True)
    acc = _row(comparison, "tiny_mc", "acc")
    assert acc.test == MCNEMAR and acc.n_paired == 5
    assert acc.right_to_wrong is not None and acc.wrong_to_right is not None
    assert acc.delta == pytest.approx((acc.wrong_to_right - acc.right_to_wrong) / 5)
    assert _row(comparison, "tiny_rolling", "word_perplexity").test == NO_TEST
    code, stdout, _ = _invoke(outputs[0], outputs[1], "--any-model", "--format", "json")
    assert code == 0 and len(json.loads(stdout)["rows"]) == len(comparison.rows)
