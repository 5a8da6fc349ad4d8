"""The sweet spot of each steering intervention of a leaderboard: its strength with the largest
target effect in the goal direction that is significant and whose capability is non-inferior
(both after Holm); without target tasks, the strongest non-inferior strength. A prompt alone
has no strength to pick."""

from __future__ import annotations

from dataclasses import replace

from saeval.analysis.board_rows import BoardRow


def sweet_spots(
    rows: list[BoardRow], alpha: float, direction: str, has_target: bool
) -> tuple[list[BoardRow], dict[str, float | None]]:
    """Mark each steering intervention's sweet spot (see ``saeval.analysis.leaderboard``) and
    return them by name."""
    sign = 1.0 if direction == "increase" else -1.0

    def merit(row: BoardRow) -> float:
        """The target effect in the goal direction (without target tasks: the strength)."""
        return sign * row.target.delta if row.target is not None else abs(row.scale)

    spots: dict[str, float | None] = {}
    for name in dict.fromkeys(row.intervention for row in rows if row.steers):
        fit = [
            row
            for row in rows
            if row.intervention == name
            and row.control is None
            and _fits(row, alpha, sign, has_target)
        ]
        spots[name] = max(fit, key=merit).scale if fit else None
    marked = [
        replace(
            row,
            sweet_spot=row.control is None and row.steers and spots[row.intervention] == row.scale,
        )
        for row in rows
    ]
    return marked, spots


def _fits(row: BoardRow, alpha: float, sign: float, has_target: bool) -> bool:
    """Capability non-inferior (when measured) and a significant target effect in the goal
    direction (when there are target tasks)."""
    if row.capability is not None and row.non_inferior is not True:
        return False
    if not has_target:
        return True
    target = row.target
    return (
        target is not None
        and target.p_holm is not None
        and target.p_holm < alpha
        and sign * target.delta > 0
    )
