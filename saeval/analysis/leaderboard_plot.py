"""The leaderboard's figure: capability delta against target delta, one point per intervention x
strength with both CIs as error bars (a diamond where the model was asked with a prompt), each
random control in a lighter shade of its intervention's colour, the capability margin as a band,
a star on each sweet spot (when there is one). Without target tasks the x axis is the steering
strength (logarithmic when the strengths are geometric)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saeval.analysis.board_rows import Effect
from saeval.analysis.figure_style import TaskFacts, lighter, metric_name, strength_axis
from saeval.analysis.leaderboard import Leaderboard

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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
    prompt: bool = False  # asked with a system prompt (drawn as a diamond)
    steers: bool = True  # False: a prompt alone


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
                row.prompt is not None,
                row.steers,
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


def draw(board: Leaderboard, facts: TaskFacts | None = None) -> Figure:
    """The figure (matplotlib, Agg): margin band, zero lines, one error-bar point per row,
    labelled with its strength; one legend entry per intervention and per set of controls."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    facts = facts or TaskFacts()
    figure = Figure(figsize=(6.4, 4.8), layout="constrained")
    axes = figure.add_subplot()
    size = board.capability_margin
    axes.axhspan(-size, 0.0, color="0.9", label=f"capability margin ({size:.4g})")
    axes.axhline(0.0, color="0.3", linewidth=0.8)
    if board.target_tasks:
        axes.axvline(0.0, color="0.3", linewidth=0.8)
    drawn = points(board)
    colors: dict[str, str] = {}
    labelled: set[str] = set()
    for index, point in enumerate(drawn):
        color = colors.setdefault(point.intervention, f"C{len(colors) % 10}")
        name = f"{point.intervention}: random controls" if point.control else point.intervention
        _draw_point(axes, point, control_color(color) if point.control else color, name, labelled)
        if not point.control:
            _label(axes, point, color, index)
    _axes_labels(axes, board, facts, drawn)
    axes.legend(fontsize="x-small")
    return figure


def control_color(color: str) -> tuple[float, float, float]:
    """How the random controls of the intervention drawn in ``color`` are drawn."""
    return lighter(color)


def _axes_labels(axes: Any, board: Leaderboard, facts: TaskFacts, drawn: list[Point]) -> None:
    """Axis labels with the tasks' names and n, the title, the strength axis without targets."""
    confidence = f"{1 - board.alpha:.0%} CI"
    capability = _tasks(board.capability_tasks, facts)
    axes.set_ylabel(
        f"capability Δ {metric_name(board.capability_metric)}, {confidence}\n{capability}"
    )
    if board.target_tasks:
        target = _tasks(board.target_tasks, facts)
        axes.set_xlabel(f"target Δ {metric_name(board.target_metric)}, {confidence}\n{target}")
        title = "Target effect against capability cost, one point per strength"
    else:
        strength_axis(axes, [point.scale for point in drawn])
        title = "Capability cost against strength"
    if any(point.sweet_spot for point in drawn):
        title += " (star: sweet spot)"
    axes.set_title(title, fontsize="medium")


def _tasks(tasks: tuple[str, ...], facts: TaskFacts) -> str:
    """'dog preference (n = 40), ...' for an axis label."""
    return ", ".join(facts.titled(task) for task in tasks)


def _draw_point(axes: Any, point: Point, color: Any, name: str, labelled: set[str]) -> None:
    """One point with its error bars (the first of ``name`` in the legend)."""
    axes.errorbar(
        [point.x],
        [point.y],
        xerr=[[point.x_err[0]], [point.x_err[1]]],
        yerr=[[point.y_err[0]], [point.y_err[1]]],
        fmt="*" if point.sweet_spot else ("D" if point.prompt else "o"),
        markersize=12 if point.sweet_spot else 6,
        color=color,
        capsize=3,
        zorder=2 if point.control else 3,  # a control never hides its intervention
        label=None if name in labelled else name,
    )
    labelled.add(name)


OFFSETS = ((5, 5), (5, -11), (-14, 5), (-14, -11))


def _label(axes: Any, point: Point, color: str, index: int) -> None:
    """The strength next to a point, its offset turning between four corners so that labels of
    neighbouring points do not sit on each other."""
    text = f"{point.scale:g}x" if point.steers else "prompt"
    axes.annotate(
        text + ("+prompt" if point.prompt and point.steers else ""),
        (point.x, point.y),
        xytext=OFFSETS[index % len(OFFSETS)],
        textcoords="offset points",
        fontsize="x-small",
        color=color,
    )


def plot_leaderboard(board: Leaderboard, path: Path, facts: TaskFacts | None = None) -> Path:
    """Write the figure as a PNG at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draw(board, facts).savefig(path, dpi=150)
    return path
