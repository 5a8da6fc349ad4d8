"""Every view of a Leaderboard: a Rich table, Markdown, CSV and JSON (schema
``saeval.leaderboard/1``), with numbers formatted as the comparison tables format them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from saeval.analysis.board_rows import BoardRow, Effect
from saeval.analysis.compare import metric_label
from saeval.analysis.dose import DOSE_HEADER, DOSE_UNIT
from saeval.analysis.leaderboard import Leaderboard
from saeval.analysis.number_text import MISSING, ci_header, fmt_ci, fmt_number, fmt_p
from saeval.analysis.render import KL_HEADER, KL_SHORT, KL_UNIT
from saeval.analysis.table_fit import COMPACT, SHORT_LABELS, FitColumn, FitTable
from saeval.errors import UsageError
from saeval.records.json_file import json_text
from saeval.records.reports import LEADERBOARD_SCHEMA, LeaderboardRecord

LEADERBOARD_FORMATS = ("markdown", "csv", "json")
SWEET_SPOT = "*"
PROMPT = "prompt"
WORST_TASK = "worst task"
# What a narrow terminal gives up, in order: the worst capability task, the outer border, then
# the confidence intervals (their p-values stay).
NARROW_STEPS = (WORST_TASK, COMPACT)
SWEET_SPOT_HEADER = "sweet spot"  # also named in the summary lines: the last column to go
CONTROL_LEGEND = "~randomK: the K-th random control of the intervention above it"


def title(board: Leaderboard) -> str:
    """What the table shows, in one line."""
    target = ", ".join(board.target_tasks) or "none"
    capability = ", ".join(board.capability_tasks) or "none"
    return (
        f"leaderboard vs {board.baseline.label}: target {target} "
        f"({metric_label(board.target_metric)}, goal: {board.target_direction}); capability "
        f"{capability} ({metric_label(board.capability_metric)}, "
        f"margin {board.capability_margin:.4g})"
    )


def cells(board: Leaderboard) -> list[dict[str, str]]:
    """Formatted cells of every row, keyed by the column headers."""
    level = ci_header(1 - board.alpha)
    with_kl = any(row.kl is not None for row in board.rows)
    found = []
    for row in board.rows:
        cell = {"intervention": row.label if row.control is None else f"  {row.label}"}
        cell["scale"] = scale_text(row)
        if board.target_tasks:
            cell |= _effect_cells("target", row.target, level)
            cell["target p"] = _target_p(row)
        if board.capability_tasks:
            cell |= _effect_cells("capability", row.capability, level)
            cell["non-inferior"] = _verdict(row)
            worst = row.worst
            cell[WORST_TASK] = (
                MISSING if worst is None else f"{worst.task} {fmt_number(worst.delta, signed=True)}"
            )
        if with_kl:
            cell[KL_HEADER] = fmt_number(row.kl)
        if any(row.dose is not None for row in board.rows):
            cell[DOSE_HEADER] = fmt_number(row.dose)
        cell["vs intervention"] = _versus(row.versus)
        cell[SWEET_SPOT_HEADER] = SWEET_SPOT if row.sweet_spot else ""
        found.append(cell)
    return found


def scale_text(row: BoardRow) -> str:
    """A row's strength: ``2``; ``2+prompt`` when it was also asked; ``prompt`` for a prompt
    alone."""
    if not row.steers:
        return PROMPT
    return f"{row.scale:g}" + ("" if row.prompt is None else f"+{PROMPT}")


def _effect_cells(name: str, effect: Effect | None, level: str) -> dict[str, str]:
    """The delta and CI of one effect."""
    if effect is None:
        return {f"{name} Δ": MISSING, f"{name} {level}": MISSING}
    return {
        f"{name} Δ": fmt_number(effect.delta, signed=True),
        f"{name} {level}": fmt_ci(effect.ci_low, effect.ci_high),
    }


def _target_p(row: BoardRow) -> str:
    """An intervention's Holm-adjusted p; a control's own p in brackets (not in the family)."""
    if row.target is None:
        return MISSING
    if row.control is None:
        return fmt_p(row.target.p_holm)
    return f"({fmt_p(row.target.p)})"


def _verdict(row: BoardRow) -> str:
    """``yes (p 0.003)``: capability non-inferior after Holm, with the adjusted one-sided p."""
    if row.control is not None or row.non_inferior is None:
        return MISSING
    return f"{'yes' if row.non_inferior else 'no'} (p {fmt_p(row.p_non_inferior_holm)})"


def _versus(effect: Effect | None) -> str:
    """A control's row: the intervention minus the control; a prompt's with compare_to: the
    steering minus the prompt; with the Holm-adjusted p."""
    if effect is None:
        return ""
    return f"{fmt_number(effect.delta, signed=True)} (p {fmt_p(effect.p_holm)})"


def summary_lines(board: Leaderboard) -> list[str]:
    """The sweet spot of each intervention, the family size, then the notes."""
    lines = [
        f"sweet spot of {name}: "
        + (MISSING if scale is None else f"scale {scale:g}")
        + ("" if board.target_tasks else " (strongest with capability non-inferior)")
        for name, scale in board.sweet_spots.items()
    ]
    asked = {r.intervention: r for r in board.rows if r.prompt is not None and r.control is None}
    lines += [
        f"{name} asks with the system prompt {row.prompt!r}"
        + ("; its vs intervention is the steering it is compared to minus it" if row.versus else "")
        for name, row in asked.items()
    ]
    lines.append(
        f"Holm's correction across all {board.family_size} tests of the leaderboard "
        f"(alpha {board.alpha:g}): target p, non-inferior p and vs intervention are adjusted; "
        "a control's own target p (in brackets) is not in the family; intervals are unadjusted "
        "(exact McNemar for 0/1 metrics)"
    )
    return lines + list(board.notes)


def table(board: Leaderboard) -> FitTable:
    """A table that fits the console: sweet spots bold green, controls dim; a narrow console
    drops the worst-task column first, and shows a control as ``~random1`` under its
    intervention before it drops the KL column."""
    found = cells(board)
    headers = list(found[0]) if found else ["intervention", "scale"]
    columns = [
        FitColumn(KL_SHORT, "right")  # its unit in the caption
        if header == KL_HEADER
        else FitColumn(  # "non-inferior" may break after its hyphen: the narrowest header word
            header.replace("-", "-\n"),
            justify="left" if header in ("intervention", WORST_TASK) else "right",
        )
        for header in headers
    ]
    controls = any(row.control is not None for row in board.rows)
    return FitTable(
        title=title(board),
        columns=columns,
        rows=[list(cell.values()) for cell in found],
        styles=[
            "bold green" if row.sweet_spot else ("dim" if row.control is not None else "")
            for row in board.rows
        ],
        column_captions={KL_SHORT: KL_UNIT, DOSE_HEADER: DOSE_UNIT},
        steps=[
            *(step for step in NARROW_STEPS if step in (*headers, COMPACT)),
            *([DOSE_HEADER] if DOSE_HEADER in headers else []),
            *(header for header in headers if header.endswith(" CI")),
            *([SWEET_SPOT_HEADER] if SWEET_SPOT_HEADER in headers else []),
            *([SHORT_LABELS] if controls else []),
            *([KL_SHORT] if KL_HEADER in headers else []),
        ],
        short_rows=[
            list((cell | {"intervention": label}).values())
            for cell, label in zip(found, _short_labels(board.rows), strict=True)
        ],
        legend=[CONTROL_LEGEND] if controls else [],
    )


def _short_labels(rows: Sequence[BoardRow]) -> list[str]:
    """Each row's intervention cell, a control under a row of its intervention as
    ``  ~random1``."""
    labels = []
    for index, row in enumerate(rows):
        above = rows[index - 1].intervention if index else None
        if row.control is None or above != row.intervention:
            labels.append(row.label if row.control is None else f"  {row.label}")
        else:
            labels.append(f"  {row.label.removeprefix(row.intervention)}")
    return labels


def to_markdown(board: Leaderboard) -> str:
    """A GitHub-flavoured Markdown table, then the sweet spots and notes as a list."""
    found = cells(board)
    lines = [f"**{title(board)}**", ""]
    if found:
        headers = list(found[0])
        lines.append(_markdown_row(headers))
        lines.append("|" + "|".join("---" for _ in headers) + "|")
        lines += [_markdown_row([value.strip() for value in cell.values()]) for cell in found]
    lines += ["", *(f"- {line}" for line in summary_lines(board))]
    return "\n".join(lines).rstrip() + "\n"


def _markdown_row(values: list[str]) -> str:
    return "| " + " | ".join(value.replace("|", "\\|") for value in values) + " |"


def to_data(board: Leaderboard) -> LeaderboardRecord:
    """Every number unrounded (``saeval.records.reports.LeaderboardRecord``)."""
    return {
        "schema": LEADERBOARD_SCHEMA,
        "baseline": asdict(board.baseline),
        "target_tasks": list(board.target_tasks),
        "capability_tasks": list(board.capability_tasks),
        "target_metric": board.target_metric,
        "capability_metric": board.capability_metric,
        "target_direction": board.target_direction,
        "margin": board.margin,
        "capability_margin": board.capability_margin,
        "alpha": board.alpha,
        "family_size": board.family_size,
        "sweet_spots": dict(board.sweet_spots),
        "rows": [asdict(row) | {"label": row.label} for row in board.rows],
        "notes": list(board.notes),
    }


def render_leaderboard(board: Leaderboard, fmt: str) -> str:
    """The leaderboard as text in one of LEADERBOARD_FORMATS."""
    if fmt == "markdown":
        return to_markdown(board)
    if fmt == "csv":
        import pandas as pd

        frame = pd.DataFrame(board.to_records()).astype({"control": "Int64"})
        return str(frame.to_csv(index=False))
    if fmt == "json":
        return json_text(to_data(board), allow_nan=False)
    raise UsageError(
        f"unknown format {fmt!r}", hint=f"use one of: {', '.join(LEADERBOARD_FORMATS)}"
    )
