"""`saeval latents`: how strongly each latent of a steer file fires on a corpus, to pick a
coefficient from (max and p99 activation, firing frequency, ||W_dec[i]||, mean ||h||)."""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from saeval.cli.console import out
from saeval.cli.options import (
    DeviceOpt,
    DtypeOpt,
    FormatOpt,
    LatentSteerFilesArg,
    ModelOpt,
    OutputFormat,
    TextsBatchOpt,
    TextsOpt,
)
from saeval.cli.progress import quiet_libraries

if TYPE_CHECKING:
    from saeval.run.latents import LatentRow, LatentsReport


def command(
    steer_files: LatentSteerFilesArg,
    texts: TextsOpt,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
    batch_size: TextsBatchOpt = 4,
    top: Annotated[
        int, typer.Option(min=0, help="Text snippets shown per latent (strongest first).")
    ] = 3,
    fmt: FormatOpt = OutputFormat.TABLE,
) -> None:
    """How strongly each latent row fires on a corpus: numbers to choose a coefficient from."""
    quiet_libraries()
    from saeval.demo.names import demo_model
    from saeval.run.latents import measure_latents
    from saeval.spec.corpus import read_texts

    report = measure_latents(
        tuple(steer_files),
        read_texts(texts),
        model=demo_model(model),
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        top=top,
    )
    if fmt is OutputFormat.JSON:
        out.print_json(json.dumps([row.to_dict() for row in report.rows]))
        return
    out.print(table(report))
    for row in report.rows:
        for line in snippet_lines(row):
            out.print(line, highlight=False, soft_wrap=True)


def table(report: LatentsReport) -> Table:
    """One row per latent row: max, p99, firing frequency, norms, coefficients."""
    from saeval.analysis.number_text import fmt_number

    bos = "; first (BOS) position left out" if report.bos_excluded else ""
    cut = f"; {report.truncated} cut at the context length" if report.truncated else ""
    skipped = f"; not SAE latents: {', '.join(report.skipped)}" if report.skipped else ""
    table = Table(
        title=f"latent activations on {report.texts} texts: {report.model_id}",
        title_justify="left",
        caption=f"{report.rows[0].stats.tokens} tokens counted{bos}{cut}{skipped}. 2x max: the "
        "coefficient adding 2x the max activation; coef: the row's own.",
        caption_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    headers = ("row", "latent", "max", "p99", "fires", "‖W_dec‖", "mean ‖h‖", "2x max", "coef")
    for header in headers:
        table.add_column(header, justify="left" if header == "row" else "right")
    for entry in report.rows:
        stats = entry.stats
        table.add_row(
            escape(entry.row.where()),
            str(stats.latent_idx),
            fmt_number(stats.max_activation),
            fmt_number(stats.p99),
            f"{stats.frequency:.1%}",
            fmt_number(stats.w_dec_norm),
            fmt_number(stats.mean_h_norm),
            fmt_number(stats.coefficient_2x_max),
            fmt_number(entry.row.coefficient),
        )
    return table


def snippet_lines(row: LatentRow) -> list[str]:
    """'latent 0 (demo.csv:5) fires most on:' and one line per snippet, its token in bold."""
    from saeval.analysis.number_text import fmt_number

    stats = row.stats
    where = escape(f"{PurePath(row.row.file).name}:{row.row.line}")  # the table names the path
    if stats.max_activation <= 0:
        return [f"latent {stats.latent_idx} ({where}) never fires on these texts"]
    if not stats.snippets:  # --top 0
        return []
    lines = [f"latent {stats.latent_idx} ({where}) fires most on:"]
    for snippet in stats.snippets:
        text = (
            f"{escape(_flat(snippet.before))}[bold reverse]{escape(_flat(snippet.token))}[/]"
            f"{escape(_flat(snippet.after))}"
        )
        lines.append(f"  {fmt_number(snippet.activation)}  text {snippet.text_index + 1}: …{text}…")
    return lines


def _flat(text: str) -> str:
    """Text on one line (newlines and tabs as spaces)."""
    return " ".join(text.split("\n")).replace("\t", " ")
