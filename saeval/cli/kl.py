"""`saeval kl`: how far a steer set moves the model's next-token distributions on a corpus."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from rich.table import Table

from saeval.cli.console import out
from saeval.cli.options import (
    DeviceOpt,
    DtypeOpt,
    FormatOpt,
    LatentSteerFilesArg,
    ModelOpt,
    OutputFormat,
    ScaleOpt,
    TextsBatchOpt,
    TextsOpt,
    parse_scales,
)
from saeval.cli.progress import quiet_libraries

if TYPE_CHECKING:
    from saeval.run.kl import KlReport


def command(
    steer_files: LatentSteerFilesArg,
    texts: TextsOpt,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
    scale: ScaleOpt = "1",
    batch_size: TextsBatchOpt = 4,
    fmt: FormatOpt = OutputFormat.TABLE,
) -> None:
    """Mean KL(unsteered || steered) per token on a corpus, with a 95% CI, for each scale."""
    quiet_libraries()
    from saeval.demo.names import demo_model
    from saeval.run.kl import measure_kl

    report = measure_kl(
        tuple(steer_files),
        texts,
        model=demo_model(model),
        device=device,
        scales=parse_scales(scale),
        dtype=dtype,
        batch_size=batch_size,
    )
    if fmt is OutputFormat.JSON:
        entries = [measurement.to_dict() for measurement in report.measurements]
        out.print_json(json.dumps(entries))
    else:
        out.print(_table(report))


def _table(report: KlReport) -> Table:
    """One row per scale: mean KL, CI, 95th percentile, tokens."""
    from saeval.analysis.number_text import fmt_number

    cut = f"; {report.truncated} cut at the context length" if report.truncated else ""
    table = Table(
        title=f"KL(unsteered || steered) in nats per token: {report.model_id}",
        title_justify="left",
        caption=f"{report.texts} texts{cut}; CI over documents",
        caption_justify="left",
        header_style="bold",
    )
    for header in ("scale", "mean KL", "95% CI", "p95", "tokens"):
        table.add_column(header, justify="right")
    for measurement in report.measurements:
        summary = measurement.summary
        table.add_row(
            f"{measurement.scale:g}",
            fmt_number(summary.mean_kl),
            _interval(summary.ci_low, summary.ci_high),
            fmt_number(summary.p95),
            str(summary.tokens),
        )
    return table


def _interval(low: float | None, high: float | None) -> str:
    """A KL interval, unsigned: "[0.0123, 0.0201]"."""
    from saeval.analysis.number_text import MISSING, fmt_number

    return MISSING if low is None or high is None else f"[{fmt_number(low)}, {fmt_number(high)}]"
