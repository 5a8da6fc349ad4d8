"""Prompt interventions in the leaderboard, on constructed results with known answers: a prompt
alone is tested against the baseline like any row, ``compare_to`` pairs it with one steering
configuration (one more test in the Holm family), and it is drawn and rendered as a prompt."""

from __future__ import annotations

import pytest
from test_leaderboard import N, _holm, _mcnemar_p, _results, _row

from saeval.analysis.board_rows import Entry
from saeval.analysis.leaderboard import leaderboard
from saeval.analysis.leaderboard_plot import draw, points
from saeval.analysis.leaderboard_render import render_leaderboard, summary_lines

PROMPT = "Talk about dogs."


def _board(compare_to: dict[str, tuple[str, float]] | None = None):  # type: ignore[no-untyped-def]
    """good: +10/+20 target documents at 1/2; asked (a prompt alone): +4; good at 1 asked too:
    +15."""
    entries = [
        Entry("good", 1.0, _results("good@1", 10)),
        Entry("good", 2.0, _results("good@2", 20)),
        Entry("asked", 0.0, _results("asked", 4), prompt=PROMPT, steers=False),
        Entry("both", 1.0, _results("both@1", 15), prompt=PROMPT),
    ]
    return leaderboard(
        _results("baseline", 0),
        entries,
        target=["tgt"],
        capability=["cap_a", "cap_b"],
        margin=0.1,
        compare_to=compare_to,
    )


def test_a_prompt_is_paired_with_the_steering_it_names_in_one_holm_family() -> None:
    board = _board({"asked": ("good", 2.0)})
    asked = _row(board, "asked", 0.0)
    assert asked.steers is False and asked.prompt == PROMPT and asked.sweet_spot is False
    assert asked.target is not None and asked.target.p == pytest.approx(_mcnemar_p(4))
    assert asked.versus is not None
    assert asked.versus.delta == pytest.approx((20 - 4) / N)  # good@2 - asked
    assert asked.versus.p == pytest.approx(_mcnemar_p(16))  # 16 documents right only at good@2
    rows = [_row(board, "good", 1.0), _row(board, "good", 2.0), asked, _row(board, "both", 1.0)]
    pvalues = [p for r in rows for p in (r.target.p, r.p_non_inferior)] + [asked.versus.p]
    assert board.family_size == len(pvalues) == 9
    adjusted = _holm(pvalues)
    assert asked.versus.p_holm == pytest.approx(adjusted[-1])
    assert asked.target.p_holm == pytest.approx(adjusted[4])
    assert "asked" not in board.sweet_spots and set(board.sweet_spots) == {"good", "both"}
    plain = _board()
    assert _row(plain, "asked", 0.0).versus is None and plain.family_size == 8


def test_prompt_rows_are_rendered_and_drawn_as_prompts() -> None:
    board = _board({"asked": ("good", 2.0)})
    markdown = render_leaderboard(board, "markdown")
    assert "| asked | prompt |" in markdown and "| both | 1+prompt |" in markdown
    assert f"asked asks with the system prompt {PROMPT!r}; its vs intervention is" in (
        " ".join(summary_lines(board))
    )
    records = {r["intervention"]: r for r in board.to_records()}
    assert records["asked"]["prompt"] == PROMPT and records["asked"]["steers"] is False
    drawn = {point.label: point for point in points(board)}
    assert drawn["asked@0"].prompt and not drawn["asked@0"].steers
    assert drawn["both@1"].prompt and not drawn["good@1"].prompt
    axes = draw(board).axes[0]
    labels = {text.get_text() for text in axes.texts}
    assert {"prompt", "1x+prompt", "1x", "2x"} <= labels
    markers = {line.get_marker() for line in axes.lines}
    assert "D" in markers and "o" in markers
