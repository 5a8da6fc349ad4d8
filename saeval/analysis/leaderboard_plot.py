"""The leaderboard's figure: capability delta against target delta, one point per intervention x
strength with both 95% CIs as error bars, controls in grey, the capability margin as a band.
Without target tasks the x axis is the steering strength."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saeval.analysis.compare import metric_label
from saeval.analysis.leaderboard import Effect, Leaderboard

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CONTROL_COLOR = "0.6"
PLOT_FILE = "leaderboard.png"


@dataclass(frozen=True)
class Point:
    """One drawn point: where, its error bars (low, high distances) and how it is drawn."""

    intervention: str
    label: str
    scale: float
    x: float
    y: float
    x_err: tuple[float, float]
    y_err: tuple[float, float]
    control: bool
    sweet_spot: bool


def points(board: Leaderboard) -> list[Point]:
    """What the figure draws, one point per row with a capability effect."""
    drawn = []
    for row in board.rows:
        if row.capability is None:
            continue
        x, x_err = _axis(row.target) if board.target_tasks else (row.scale, (0.0, 0.0))
        y, y_err = _axis(row.capability)
        drawn.append(
            Point(
                row.intervention,
                f"{row.label}@{row.scale:g}",
                row.scale,
                x,
                y,
                x_err,
                y_err,
                row.control is not None,
                row.sweet_spot,
            )
        )
    return drawn


def _axis(effect: Effect | None) -> tuple[float, tuple[float, float]]:
    """An effect's delta and the distances to its CI bounds (0 where it has no CI)."""
    if effect is None:
        return float("nan"), (0.0, 0.0)
    if effect.ci_low is None or effect.ci_high is None:
        return effect.delta, (0.0, 0.0)
    return effect.delta, (effect.delta - effect.ci_low, effect.ci_high - effect.delta)


def draw(board: Leaderboard) -> Figure:
    """The figure (matplotlib, Agg): margin band, zero lines, one error-bar point per row,
    labelled with its strength; one legend entry per intervention and one for the controls."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 4.5), layout="constrained")
    axes = figure.add_subplot()
    size = board.capability_margin
    axes.axhspan(-size, 0.0, color="0.9", label=f"capability margin ({size:.4g})")
    axes.axhline(0.0, color="0.3", linewidth=0.8)
    if board.target_tasks:
        axes.axvline(0.0, color="0.3", linewidth=0.8)
    colors: dict[str, str] = {}
    labelled: set[str] = set()
    for point in points(board):
        color = colors.setdefault(point.intervention, f"C{len(colors) % 10}")
        name = "random controls" if point.control else point.intervention
        _draw_point(axes, point, CONTROL_COLOR if point.control else color, name, labelled)
    confidence = f"{1 - board.alpha:.0%} CI"
    target = ", ".join(board.target_tasks)
    metric = metric_label(board.target_metric)
    axes.set_xlabel(f"target Δ {metric} ({target}), {confidence}" if target else "scale")
    axes.set_ylabel(f"capability Δ {metric_label(board.capability_metric)}, {confidence}")
    axes.set_title("one point per strength (its label); star: sweet spot")
    axes.legend(fontsize="x-small")
    return figure


def _draw_point(axes: Any, point: Point, color: str, name: str, labelled: set[str]) -> None:
    """One point with its error bars and strength label (the first of ``name`` in the legend)."""
    axes.errorbar(
        [point.x],
        [point.y],
        xerr=[[point.x_err[0]], [point.x_err[1]]],
        yerr=[[point.y_err[0]], [point.y_err[1]]],
        fmt="*" if point.sweet_spot else "o",
        markersize=11 if point.sweet_spot else 6,
        color=color,
        capsize=3,
        label=None if name in labelled else name,
    )
    labelled.add(name)
    axes.annotate(
        f"{point.scale:g}",
        (point.x, point.y),
        xytext=(4, 4),
        textcoords="offset points",
        fontsize="x-small",
        color=color,
    )


def plot_leaderboard(board: Leaderboard, path: Path) -> Path:
    """Write the figure as a PNG at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draw(board).savefig(path, dpi=120)
    return path
