"""Every view of a Comparison or Sweep: Rich tables, Markdown, CSV, JSON and LaTeX, with numbers
formatted for reading (``saeval.analysis.number_text``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from saeval.analysis.compare import Comparison, ComparisonRow
from saeval.analysis.dose import DOSE_HEADER, DOSE_UNIT, dose_text, is_dose_header
from saeval.analysis.margins import EQUIVALENCE
from saeval.analysis.number_text import MISSING, ci_header, fmt_ci, fmt_estimate, fmt_number, fmt_p
from saeval.analysis.report import Report
from saeval.analysis.steerability import Steerability
from saeval.analysis.sweep import Sweep, SweepSeries
from saeval.analysis.table_fit import (
    COMPACT,
    SHORT_LABELS,
    FitColumn,
    FitTable,
    shortest_unique_suffixes,
)
from saeval.errors import UsageError
from saeval.records.json_file import json_text
from saeval.records.reports import COMPARISON_SCHEMA, SWEEP_SCHEMA, ComparisonRecord, SweepRecord

FORMATS = ("markdown", "csv", "json", "latex")
KL_HEADER = "KL (nats/token)"
KL_SHORT, KL_UNIT = "KL", "KL in nats per token"  # the terminal table's header, and a caption
FLIPS_HEADER = "flips r>w/w>r"
HOLM_HEADER = "p (Holm)"
VERDICT_HEADERS = ("non-inferior", "equivalent")
TEXT_COLUMNS = ("task", "metric", "test", "note")
# What a narrow terminal gives up, in order: the test's name, the flip counts, full task names,
# the outer border, the unadjusted p (Holm's stays), the document count.
NARROW_STEPS = ("test", FLIPS_HEADER, SHORT_LABELS, COMPACT, "p", "n")


def _n(row: ComparisonRow) -> str:
    if row.n_paired is not None:
        return str(row.n_paired)
    if row.n_a == row.n_b:
        return MISSING if row.n_a is None else str(row.n_a)
    return "/".join(MISSING if n is None else str(n) for n in (row.n_a, row.n_b))


def _flips(row: ComparisonRow) -> str:
    if row.right_to_wrong is None or row.wrong_to_right is None:
        return MISSING
    return f"{row.right_to_wrong}/{row.wrong_to_right}"


def comparison_cells(comparison: Comparison, *, compact: bool = False) -> list[dict[str, str]]:
    """Formatted cells of every row, keyed by the column headers.

    `compact` (the terminal table) shows values without their stderr and turns the note column
    into a "(k)" mark on the metric, numbered as `row_footnotes` numbers them.
    """
    level = ci_header(comparison.confidence)
    footnotes = row_footnotes(comparison)
    with_kl = any(row.kl is not None for row in comparison.rows)
    with_dose = any(row.dose is not None for row in comparison.rows)
    cells = []
    for row in comparison.rows:
        mark = f" ({footnotes[row.note]})" if compact and row.note else ""
        cell = {
            "task": row.task,
            "metric": row.metric + mark,
            "n": _n(row),
            comparison.a.label: fmt_number(row.a) if compact else fmt_estimate(row.a, row.a_stderr),
            comparison.b.label: fmt_number(row.b) if compact else fmt_estimate(row.b, row.b_stderr),
            "delta": fmt_number(row.delta, signed=True),
            level: fmt_ci(row.ci_low, row.ci_high),
            "p": fmt_p(row.p),
            HOLM_HEADER: fmt_p(row.p_holm),
            "test": row.test,
            FLIPS_HEADER: _flips(row),
        }
        if with_kl:  # B's own KL against its unsteered model, from B's run: not A vs B
            cell[f"{comparison.b.label} {KL_HEADER}"] = fmt_number(row.kl)
        if with_dose:
            cell[f"{comparison.b.label} {DOSE_HEADER}"] = dose_text(row, fmt_number, compact)
        if not compact:
            cell["note"] = row.note
        cells.append(cell)
    return cells


def row_footnotes(comparison: Comparison) -> dict[str, int]:
    """Number each distinct row note (1, 2, ...) in order of appearance."""
    notes = dict.fromkeys(row.note for row in comparison.rows if row.note)
    return {note: number for number, note in enumerate(notes, start=1)}


def _safe_text(series: SweepSeries) -> str:
    """The safe strength per sign present: `1`, `-0.5`, or `1 (negative scales: -0.5)`."""
    negative = _scale_text(series.largest_safe_negative)
    if all(point.scale < 0 for point in series.points):
        return negative
    positive = _scale_text(series.largest_safe)
    if any(point.scale < 0 for point in series.points):
        return f"{positive} (negative scales: {negative})"
    return positive


def _scale_text(scale: float | None) -> str:
    return MISSING if scale is None else f"{scale:g}"


def sweep_cells(result: Sweep, *, compact: bool = False) -> list[dict[str, str]]:
    """Formatted cells: per series a baseline row, then one row per strength; ``compact`` (the
    terminal table) shows values without their stderr (the change's interval is beside them)."""

    def value(estimate: float, stderr: float | None) -> str:
        return fmt_number(estimate) if compact else fmt_estimate(estimate, stderr)

    level = ci_header(1 - result.alpha)
    verdict_header = VERDICT_HEADERS[result.margins.test == EQUIVALENCE]
    with_kl = any(point.kl is not None for s in result.series for point in s.points)
    dose = any(point.dose is not None for s in result.series for point in s.points)
    kl = {KL_HEADER: "0"} if with_kl else {}
    kl |= {DOSE_HEADER: "0"} if dose else {}
    cells = []
    for series in result.series:
        cells.append(
            {
                "task": series.task,
                "metric": series.metric,
                "scale": "baseline",
                "value": value(series.baseline, series.baseline_stderr),
                "delta": "",
                level: "",
                "p": "",
                HOLM_HEADER: "",
                "test": "",
                verdict_header: "",
                **kl,
            }
        )
        for point in series.points:
            verdict = {True: "yes", False: "no", None: MISSING}[point.safe]
            cells.append(
                {
                    "task": series.task,
                    "metric": series.metric,
                    "scale": f"{point.scale:g}",
                    "value": value(point.value, point.stderr),
                    "delta": fmt_number(point.delta, signed=True),
                    level: fmt_ci(point.ci_low, point.ci_high),
                    "p": fmt_p(point.p),
                    HOLM_HEADER: fmt_p(point.p_holm),
                    "test": point.test,
                    verdict_header: verdict,
                    **({KL_HEADER: fmt_number(point.kl)} if with_kl else {}),
                    **({DOSE_HEADER: dose_text(point, fmt_number, compact)} if dose else {}),
                }
            )
    return cells


@dataclass(frozen=True)
class _View:
    """What every rendering of a report shows: the one place that tells the two kinds apart."""

    title: str
    cells: list[dict[str, str]]  # the full cells (Markdown, LaTeX)
    table_cells: list[dict[str, str]]  # the terminal table's (compact) cells
    styles: list[str]
    caption: str
    summary: list[str]
    data: ComparisonRecord | SweepRecord  # the JSON form


def _view(report: Report) -> _View:
    """The view of a comparison or a sweep."""
    if isinstance(report, Comparison):
        footnotes = row_footnotes(report)
        return _View(
            title=f"{report.b.label} vs {report.a.label} "
            f"(delta = {report.b.label} - {report.a.label})",
            cells=comparison_cells(report),
            table_cells=comparison_cells(report, compact=True),
            styles=[_style(row) for row in report.rows],
            caption="\n".join(f"({number}) {note}" for note, number in footnotes.items()),
            summary=list(report.notes),
            data={
                "schema": COMPARISON_SCHEMA,
                "a": asdict(report.a),
                "b": asdict(report.b),
                "alpha": report.alpha,
                "rows": report.to_records(),
                "notes": list(report.notes),
            },
        )
    cells = sweep_cells(report)
    safe = [
        f"{series.task} {series.metric}: largest scale "
        f"{report.margins.phrase(series.margin, series.higher_is_better)}: {_safe_text(series)}"
        for series in report.series
    ]
    margins = report.margins
    return _View(
        title=f"steering sweep vs {report.baseline.label} ({margins.test}; margin "
        f"{margins.absolute:g}, unbounded metrics {margins.relative:.0%} of baseline)",
        cells=cells,
        table_cells=sweep_cells(report, compact=True),
        styles=[""] * len(cells),
        caption="",
        summary=[
            *safe,
            _sweep_method(report),
            *map(steerability_line, report.steerability),
            *report.notes,
        ],
        data=_sweep_record(report),
    )


def _sweep_record(report: Sweep) -> SweepRecord:
    """comparison.json of a sweep (a comparison's is in ``_view``): every number unrounded."""
    return {
        "schema": SWEEP_SCHEMA,
        "baseline": asdict(report.baseline),
        "margin": report.margin,
        "relative_margin": report.margins.relative,
        "margin_test": report.margins.test,
        "alpha": report.alpha,
        "series": [asdict(series) for series in report.series],
        "steerability": [entry.to_dict() for entry in report.steerability],
        "notes": list(report.notes),
    }


def _sweep_method(report: Sweep) -> str:
    """Which intervals, what Holm adjusts and what the verdict reads."""
    tests = sum(point.p is not None for series in report.series for point in series.points)
    return (
        f"p (Holm) adjusts all {tests} tests of the sweep (alpha {report.alpha:g}); intervals are "
        "unadjusted (exact McNemar for 0/1 metrics, t for others, z unpaired) and each verdict "
        "reads its interval"
    )


def steerability_line(entry: Steerability) -> str:
    """'task: slope of log P(target) over scales 0,0.5,1: median +0.12 [+0.08, +0.15]
    nats/scale; anti-steerable 3/40 = 7.5% [2.6%, 20%]' (CIs at the report's level)."""
    scales = ",".join(f"{scale:g}" for scale in entry.scales)
    median = fmt_number(entry.median_slope, signed=True)
    anti = f"{entry.anti_steerable}/{entry.n} = {entry.anti_fraction:.1%}"
    wilson = f"[{entry.anti_ci_low:.1%}, {entry.anti_ci_high:.1%}]"
    skipped = f" ({entry.skipped} documents left out)" if entry.skipped else ""
    return (
        f"{entry.task}: per-document slope of log P(target) over scales {scales}: median "
        f"{median} {fmt_ci(entry.median_ci_low, entry.median_ci_high)} nats per unit scale; "
        f"anti-steerable {anti} {wilson}{skipped}"
    )


def summary_lines(report: Report) -> list[str]:
    """The report's notes; for a sweep first the largest strength passing the margin test per
    series and how its numbers were made."""
    return _view(report).summary


def _style(row: ComparisonRow) -> str:
    """Green for a significant improvement, red for a significant loss."""
    if not row.significant or row.higher_is_better is None:
        return ""
    better = (row.delta > 0) == row.higher_is_better
    return "bold green" if better else "bold red"


def table(report: Report) -> FitTable:
    """A table of a report that fits the console: a comparison's significant rows green
    (improvement) or red (loss); a sweep's rows per (task, metric) the baseline, then each
    strength. Narrow consoles drop the test and flips columns, then show short task names."""
    view = _view(report)
    headers = list(view.table_cells[0]) if view.table_cells else ["task", "metric"]
    columns = [  # "KL" ("steered KL" in a comparison), its unit in the caption
        FitColumn(header.removesuffix(KL_HEADER) + KL_SHORT, "right")
        if header.endswith(KL_HEADER)
        else FitColumn(header.replace("-", "-\n"), "right")  # "non-inferior" breaks at its "-"
        if header in VERDICT_HEADERS
        else FitColumn(header, "right")
        if header not in TEXT_COLUMNS
        else FitColumn(header)
        for header in headers
    ]
    units = {  # a unit is named only while its column shows
        column.header: KL_UNIT if header.endswith(KL_HEADER) else DOSE_UNIT
        for column, header in zip(columns, headers, strict=True)
        if header.endswith(KL_HEADER) or is_dose_header(header)
    }
    # a metric's filter on its own line: "exact_match," then "strict-match"
    rows = [cell | {"metric": cell["metric"].replace(",", ",\n")} for cell in view.table_cells]
    short = shortest_unique_suffixes([cell["task"] for cell in rows])
    legend = ", ".join(f"{label}={task}" for task, label in short.items() if label != task)
    return FitTable(
        title=view.title,
        columns=columns,
        rows=[list(cell.values()) for cell in rows],
        styles=view.styles,
        caption=view.caption,
        column_captions=units,
        steps=[  # the dose and KL columns go last: they are in the plots and every file format
            *_narrow_steps(headers),
            *(c.header for c, h in zip(columns, headers, strict=True) if h.endswith(KL_HEADER)),
            *(c.header for c, h in zip(columns, headers, strict=True) if is_dose_header(h)),
        ],
        short_rows=[list((cell | {"task": short[cell["task"]]}).values()) for cell in rows],
        legend=[f"tasks: {legend}"] if legend else [],
    )


def _narrow_steps(headers: Sequence[str]) -> list[str]:
    """NARROW_STEPS that apply to a table with these columns; a sweep, whose verdict column
    reads the interval, gives up its Holm p last."""
    kept = [*headers, SHORT_LABELS, COMPACT]
    steps = [s for s in NARROW_STEPS if s in kept]
    return [*steps, HOLM_HEADER] if any(h in VERDICT_HEADERS for h in headers) else steps


def render(report: Report, fmt: str) -> str:
    """The report as text in one of FORMATS."""
    if fmt == "markdown":
        return to_markdown(report)
    if fmt == "csv":
        return report.to_frame().to_csv(index=False)
    if fmt == "json":
        return to_json(report)
    if fmt == "latex":
        return to_latex(report)
    raise UsageError(f"unknown format {fmt!r}", hint=f"use one of: {', '.join(FORMATS)}")


def _markdown_row(values: Sequence[str]) -> str:
    return "| " + " | ".join(value.replace("|", "\\|") for value in values) + " |"


def to_markdown(report: Report) -> str:
    """A GitHub-flavoured Markdown table, then the notes as a list."""
    view = _view(report)
    lines = [f"**{view.title}**", ""]
    if view.cells:
        headers = list(view.cells[0])
        lines.append(_markdown_row(headers))
        lines.append("|" + "|".join("---" for _ in headers) + "|")
        lines += [_markdown_row(list(row.values())) for row in view.cells]
    lines += ["", *(f"- {line}" for line in view.summary)]
    return "\n".join(lines).rstrip() + "\n"


def to_json(report: Report) -> str:
    """Every number unrounded, plus the sides, settings and notes."""
    return json_text(_view(report).data, allow_nan=False)


def to_latex(report: Report) -> str:
    """A booktabs `tabular` (pandas Styler) of the formatted cells."""
    import pandas as pd

    frame = pd.DataFrame(_view(report).cells)
    latex = frame.style.format(escape="latex").hide(axis="index")
    latex = latex.format_index(escape="latex", axis="columns")
    text = latex.to_latex(hrules=True, column_format="l" * max(len(frame.columns), 1))
    return text.replace("±", r"$\pm$").replace(MISSING, "--")
