"""`saeval compare`: baseline vs steered with paired statistics, for saeval and lm-eval outputs."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from saeval.analysis.defaults import DEFAULT_MARGIN, DEFAULT_RELATIVE_MARGIN
from saeval.cli.console import err, out
from saeval.cli.options import MarginOpt, MarginTestChoice, MarginTestOpt, RelativeMarginOpt
from saeval.errors import UsageError

if TYPE_CHECKING:
    from saeval.analysis.report import Report


class Format(StrEnum):
    """How the report is printed or written."""

    TABLE = "table"
    MARKDOWN = "markdown"
    CSV = "csv"
    JSON = "json"
    LATEX = "latex"


SUFFIX_FORMATS = {
    ".md": Format.MARKDOWN,
    ".csv": Format.CSV,
    ".json": Format.JSON,
    ".tex": Format.LATEX,
}

SIDE_HELP = (
    "a saeval run folder, one of its configuration folders (baseline/, steered/, "
    "steered@<scale>/), an lm_eval --output_path folder or a results JSON file"
)


def command(
    a: Annotated[
        Path,
        typer.Argument(
            metavar="A", help=f"Side A (the baseline): {SIDE_HELP}.", show_default=False
        ),
    ],
    b: Annotated[
        Path | None,
        typer.Argument(
            metavar="B",
            help="Side B (the steered model), same kinds as A. Leave it out to compare a run "
            "folder's baseline with its steered configuration (a sweep for several strengths).",
            show_default=False,
        ),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            "-m",
            metavar="NAME",
            help="Only this metric (repeatable): acc, acc_norm, exact_match,strict-match, ...",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[
        Format,
        typer.Option(
            "--format",
            "-f",
            help="table prints a terminal table; the others print (or --output writes) text.",
        ),
    ] = Format.TABLE,
    alpha: Annotated[
        float,
        typer.Option(help="Family-wise error rate for Holm's correction; intervals are 1 - alpha."),
    ] = 0.05,
    margin: MarginOpt = DEFAULT_MARGIN,
    relative_margin: RelativeMarginOpt = DEFAULT_RELATIVE_MARGIN,
    margin_test: MarginTestOpt = MarginTestChoice.NONINFERIORITY,
    any_model: Annotated[
        bool,
        typer.Option(
            "--any-model",
            help="Compare results of two different models (by default an error: a steering "
            "effect needs the same model on both sides).",
        ),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write the report here (in --format, or by suffix: .md .csv .json .tex); "
            "a sweep's plots go to the same folder (without --output: ./<run>-plots/).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Compare two evaluations per task and metric: delta, 95% CI and a paired test."""
    from saeval.analysis.compare import compare
    from saeval.analysis.defaults import check_alpha, check_margin, check_relative_margin
    from saeval.analysis.figure_style import task_facts
    from saeval.analysis.report import build_report, sweep_of
    from saeval.analysis.report_files import (
        check_not_an_input,
        check_report_path,
        compare_plots_dir,
        write_plots,
    )
    from saeval.analysis.results_io import load_run, load_side
    from saeval.records.run_folder import is_run_folder

    check_alpha(alpha)
    check_margin(margin)
    check_relative_margin(relative_margin)
    if output is not None:  # before any work: a bad --output is one line
        check_report_path(output)
        check_not_an_input(output, [a] if b is None else [a, b])
        _file_format(fmt, output)
    report: Report
    if b is not None:
        report = compare(
            load_side(a), load_side(b), metrics=metric, alpha=alpha, any_model=any_model
        )
    elif not is_run_folder(a):
        raise UsageError(
            f"{a} is not a saeval run folder, so it needs a second side to compare with",
            hint="saeval compare BASELINE STEERED",
        )
    else:
        sides = load_run(a)
        report = build_report(
            sides,
            metrics=metric,
            margin=margin,
            relative_margin=relative_margin,
            margin_test=margin_test.value,
            alpha=alpha,
            any_model=any_model,
        )
        if sweep_of(report) is not None:
            plots = write_plots(report, compare_plots_dir(a, output), task_facts(sides.baseline))
            message = f"wrote {len(plots)} plots to {plots[0].parent}" if plots else "no plots"
            err.print(message, highlight=False, soft_wrap=True)
    _emit(report, fmt, output)


def _file_format(fmt: Format, output: Path) -> Format:
    if fmt is not Format.TABLE:
        return fmt
    if output.suffix.lower() not in SUFFIX_FORMATS:
        raise UsageError(
            f"cannot tell the format of {output} from its suffix",
            hint="add --format markdown|csv|json|latex, or use .md, .csv, .json or .tex",
        )
    return SUFFIX_FORMATS[output.suffix.lower()]


def _emit(report: Report, fmt: Format, output: Path | None) -> None:
    """Print the table (format table) or the text; write --output when given."""
    from saeval.analysis import render
    from saeval.analysis.report_files import write_report

    if output is not None:
        write_report(output, render.render(report, _file_format(fmt, output)))
        err.print(f"wrote {output}", highlight=False)
    if fmt is Format.TABLE:
        out.print(render.table(report))
        for line in render.summary_lines(report):
            out.print(f"[dim]- {escape(line)}[/]", highlight=False)
    elif output is None:
        out.print(
            render.render(report, fmt),
            markup=False,
            highlight=False,
            emoji=False,
            end="",
            soft_wrap=True,
        )
        if fmt in (Format.CSV, Format.LATEX):
            for line in render.summary_lines(report):
                err.print(f"note: {line}", highlight=False, markup=False)
