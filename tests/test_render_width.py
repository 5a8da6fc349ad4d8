"""Every table stays readable at 80 columns: each number and each row label is shown whole
(a number is never cut or folded; a task name is whole, or its short form with a legend), and
only low-value columns, named below the table, are left out."""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import run_saeval
from rich.console import Console
from test_leaderboard import _board
from test_sweep import golden_sweep as _golden_sweep

from saeval.analysis import leaderboard_render, render
from saeval.analysis.compare import Comparison, compare
from saeval.analysis.leaderboard import Leaderboard
from saeval.analysis.leaderboard_render import cells as board_cells
from saeval.analysis.results_io import load_side
from saeval.analysis.table_fit import shortest_unique_suffixes

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "lmeval"
WIDTH = 80


def shown(renderable: object, width: int = WIDTH) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(renderable)
    return buffer.getvalue()


def tokens(text: str) -> Counter[str]:
    """Whitespace-separated words, counted (box characters are separators too)."""
    return Counter(re.split(r"[\s│┃]+", text.replace("━", " ").replace("─", " ")))


def hidden_columns(text: str, width: int = WIDTH) -> list[str]:
    found = re.search(rf"^not shown at {width} columns: (.*?)\n*\Z", text, re.M | re.S)
    names = "" if found is None else " ".join(found[1].split())  # the line may wrap
    return [name.strip() for name in names.split(", ")] if names else []


def assert_cells_whole(text: str, cells: Sequence[dict[str, str]], labels: Sequence[str]) -> None:
    """Every word of every shown cell appears whole, as often as the cells have it; each label
    (task) column shows the full name or its shortest unique suffix, spelled out in a legend."""
    assert "…" not in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= WIDTH
    hidden = hidden_columns(text)
    wanted: Counter[str] = Counter()
    for label in labels:
        names = [cell[label] for cell in cells]
        short = shortest_unique_suffixes(names)
        full = all(re.search(rf"(?<!\S){re.escape(name)}(?!\S)", text) for name in names)
        for name in names:
            wanted[name if full else short[name]] += 1
            if not full and short[name] != name:
                entry = re.escape(f"{short[name]}={name}")  # the legend wraps between entries
                assert re.search(rf"(?<!\S){entry}(,|$)", text, re.M), (entry, text)
    for cell in cells:
        for header, value in cell.items():
            if header not in hidden and header not in labels:
                wanted.update(value.split())
    seen = tokens(text)
    missing = {word: count for word, count in wanted.items() if seen[word] < count}
    assert not missing, text


def golden_comparison() -> Comparison:
    return compare(load_side(GOLDEN / "baseline"), load_side(GOLDEN / "steered"))


def with_kl_and_long_names(comparison: Comparison) -> Comparison:
    """The demo's shape: long task names sharing a prefix, and a KL column."""
    rows = [
        replace(row, task=f"saeval_demo_{row.task}", kl=0.0123 * (i + 1))
        for i, row in enumerate(comparison.rows)
    ]
    return replace(comparison, rows=tuple(rows))


@pytest.mark.parametrize(
    "build", [golden_comparison, lambda: with_kl_and_long_names(golden_comparison())]
)
def test_a_comparison_at_80_columns_keeps_every_number_and_task(build: object) -> None:
    comparison = build()  # type: ignore[operator]
    text = shown(render.table(comparison))
    cells = render.comparison_cells(comparison, compact=True)
    for cell in cells:  # a metric's filter goes on its own line; KL's unit in the caption
        cell["metric"] = cell["metric"].replace(",", ", ")
        if render.KL_HEADER in cell:
            cell["KL"] = cell.pop(render.KL_HEADER)
            assert "KL in nats per token" in text
    assert_cells_whole(text, cells, ["task"])
    assert set(hidden_columns(text)) <= {"test", "flips r>w/w>r", "p", "n"}


def test_a_sweep_at_80_columns_keeps_every_number_and_task() -> None:
    sweep = _golden_sweep.__wrapped__()  # type: ignore[attr-defined]
    text = shown(render.table(sweep))
    cells = render.sweep_cells(sweep, compact=True)  # the terminal's: values without stderr
    for cell in cells:
        cell["metric"] = cell["metric"].replace(",", ", ")
    assert_cells_whole(text, cells, ["task"])
    assert set(hidden_columns(text)) <= {"test", "p", "p (Holm)"}


def test_a_leaderboard_at_80_columns_keeps_every_number_and_intervention() -> None:
    board = _board()
    text = shown(leaderboard_render.table(board))
    assert_cells_whole(text, board_cells(board), [])
    assert set(hidden_columns(text)) <= {
        "worst task",
        "target unadjusted 95% CI",
        "capability unadjusted 95% CI",
        "sweet spot",  # the summary lines name every sweet spot
    }
    assert "sweet spot of good: scale 2" in "\n".join(leaderboard_render.summary_lines(board))


@pytest.mark.parametrize("width", [100, 120, 160])
def test_wider_consoles_show_more_and_still_cut_nothing(width: int) -> None:
    comparison = with_kl_and_long_names(golden_comparison())
    text = shown(render.table(comparison), width)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
    assert len(hidden_columns(text, width)) <= len(hidden_columns(shown(render.table(comparison))))


def test_a_table_wide_enough_drops_nothing() -> None:
    text = shown(render.table(golden_comparison()), 250)
    assert "not shown" not in text and "flips r>w/w>r" in text and "tiny_sub_a" in text
    assert "tasks:" not in text


def validate_at_80(*files: str) -> str:
    return run_saeval("validate", *files, cwd=ROOT, columns=WIDTH).stdout


def test_validate_at_80_columns_shows_the_row_the_sae_and_the_link() -> None:
    text = validate_at_80("steers/dog.csv")
    assert max(len(line) for line in text.splitlines()) <= WIDTH and "…" not in text
    row = next(line for line in text.splitlines() if line.startswith("2 "))
    assert row.split()[:4] == ["2", "12082", "add", "240"]
    assert "16384" in row.split() and "blocks.20.hook_resid_post" in row.split()
    key = next((word for word in row.split() if re.fullmatch(r"S\d+", word)), None)
    if key is None:
        assert "gemma-scope-2b-pt-res-canonical" in row.split()
    else:  # the SAE by key, spelled out below
        assert f"{key} = gemma-scope-2b-pt-res-canonical layer_20/width_16k/canonical" in text
    assert "model: google/gemma-2-2b" in text
    link = "https://www.neuronpedia.org/gemma-2-2b/20-gemmascope-res-16k/12082"
    assert f"line 2: {link}" in text


def test_the_kl_table_at_80_columns_keeps_every_number() -> None:
    from saeval.cli.kl import _table
    from saeval.records.side_effects import KlSummary
    from saeval.run.kl import KlMeasurement, KlReport

    summaries = [
        KlSummary(0.01234, 0.01, 0.0156, 0.0789, 123456, 40),
        KlSummary(1.234, 1.1, 1.4, 5.678, 123456, 40),
    ]
    measurements = tuple(KlMeasurement(s, x, 1.0) for s, x in zip((0.5, 8), summaries, strict=True))
    text = shown(_table(KlReport("google/gemma-2-2b", 40, 2, measurements)))
    wanted = ["0.5", "8", "0.0123", "[0.0100,", "0.0156]", "0.0789", "123456", "1.234"]
    wanted += ["[1.100,", "1.400]", "5.678", "google/gemma-2-2b"]
    assert "…" not in text and all(word in tokens(text) for word in wanted), text


def test_saes_at_80_columns_keeps_release_and_sae_id_whole() -> None:
    done = run_saeval("saes", "gemma-scope-2b", "layer_20", "-n", "5", cwd=ROOT, columns=WIDTH)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert max(len(line) for line in text.splitlines()) <= WIDTH and "…" not in text
    rows = [line.split() for line in text.splitlines() if line.startswith("gemma-scope-2b")]
    assert len(rows) == 5
    for row in rows:
        assert re.fullmatch(r"layer_20/width_\d+k/\S+", row[1]) and re.fullmatch(r"\d+", row[-1])


def test_shortest_unique_suffixes_by_hand() -> None:
    demo = ["saeval_demo_knowledge", "saeval_demo_dog_preference", "saeval_demo_generation"]
    assert shortest_unique_suffixes(demo) == {
        "saeval_demo_knowledge": "knowledge",
        "saeval_demo_dog_preference": "preference",
        "saeval_demo_generation": "generation",
    }
    # a name that is another's suffix keeps both whole; a shared last part takes one more
    assert shortest_unique_suffixes(["mc", "tiny_mc", "a_acc", "b_acc"]) == {
        "mc": "mc",
        "tiny_mc": "tiny_mc",
        "a_acc": "a_acc",
        "b_acc": "b_acc",
    }


def test_fit_widths_keep_words_whole_or_give_up() -> None:
    from saeval.analysis.table_fit import FitColumn, fit_widths

    columns = [FitColumn("a"), FitColumn("b", wrap=False)]
    rows = [["one two three", "x y"]]
    assert fit_widths(columns, rows, 100) == [13, 3]  # as wide as the content
    assert fit_widths(columns, rows, 10) == [7, 3]  # "three" is the longest word: 5 <= 7
    assert fit_widths(columns, rows, 8) == [5, 3]
    assert fit_widths(columns, rows, 7) is None  # "three" and "x y" need 8


def with_dose(comparison: Comparison) -> Comparison:
    """Each row with a dose as well: a table too wide for 80 columns with both measures."""
    rows = [replace(row, dose=0.01 * (i + 1)) for i, row in enumerate(comparison.rows)]
    return replace(comparison, rows=tuple(rows))


@pytest.mark.parametrize("width", [WIDTH, 250])
def test_a_caption_names_the_units_of_the_shown_columns_only(width: int) -> None:
    from saeval.analysis.dose import DOSE_UNIT

    text = shown(render.table(with_dose(with_kl_and_long_names(golden_comparison()))), width)
    hidden = hidden_columns(text, width)
    for header, unit in (("steered KL", render.KL_UNIT), ("steered dose", DOSE_UNIT)):
        assert (header in hidden) == (unit not in " ".join(text.split())), (header, text)
    if width == WIDTH:  # 80 columns leave the KL out; 250 show both
        assert "steered KL" in hidden and render.KL_UNIT not in text
    else:
        assert not hidden and render.KL_UNIT in text


def prompt_and_control_board() -> Leaderboard:
    """An experiment's shape: long names, a prompt alone and with steering, random controls,
    KL and dose."""
    from test_leaderboard import _results

    from saeval.analysis.board_rows import Entry
    from saeval.analysis.leaderboard import leaderboard

    prompt = "Talk about dogs."
    entries = [Entry("dogs", s, _results(f"d{s}", int(10 * s))) for s in (1.0, 2.0)]
    entries += [Entry("france", s, _results(f"f{s}", int(4 * s), cap_b_lost=3)) for s in (1.0, 2.0)]
    entries += [Entry("dogs_prompt", 0.0, _results("dp", 4), prompt=prompt, steers=False)]
    entries += [Entry("dogs_and_prompt", 1.0, _results("dap", 15), prompt=prompt)]
    entries += [Entry("france", s, _results(f"c{s}", 1), control=1) for s in (1.0, 2.0)]
    entries += [Entry("dogs", s, _results(f"e{s}", 0), control=2) for s in (1.0, 2.0)]
    board = leaderboard(
        _results("baseline", 0),
        entries,
        target=["tgt"],
        capability=["cap_a", "cap_b"],
        margin=0.1,
        compare_to={"dogs_prompt": ("dogs", 2.0)},
    )
    measured = [
        replace(r, kl=0.0123 * (i + 1), dose=0.0456 * (i + 1)) for i, r in enumerate(board.rows)
    ]
    return replace(board, rows=tuple(measured))


@pytest.mark.parametrize("width", [WIDTH, 250])
def test_a_leaderboard_with_prompts_controls_and_dose_keeps_every_name_whole(width: int) -> None:
    from saeval.analysis.dose import DOSE_UNIT

    board = prompt_and_control_board()
    text = shown(leaderboard_render.table(board), width)
    assert "…" not in text and max(len(line.rstrip()) for line in text.splitlines()) <= width
    hidden = hidden_columns(text, width)
    seen = tokens(text)
    wanted: Counter[str] = Counter()
    for cell in board_cells(board):  # KL's unit goes to the caption: its header is "KL"
        for header, value in cell.items():
            shown_as = "KL" if header == render.KL_HEADER else header
            if header != "intervention" and shown_as not in hidden:
                wanted.update(value.split())
    assert not {word: n for word, n in wanted.items() if seen[word] < n}, text
    names = Counter(row.label for row in board.rows)
    if all(seen[name] >= count for name, count in names.items()):
        assert leaderboard_render.CONTROL_LEGEND not in text
    else:  # a control under its intervention as ~randomK, which the legend explains
        assert leaderboard_render.CONTROL_LEGEND in " ".join(text.split())
        for row in board.rows:
            short = row.label if row.control is None else f"~random{row.control}"
            assert seen[short] >= names[row.label] or seen[row.label] >= names[row.label]
    for name in ("dogs_prompt", "dogs_and_prompt", "prompt", "1+prompt"):
        assert seen[name] >= 1, (name, text)
    joined = " ".join(text.split())
    assert ("KL" in hidden) == (render.KL_UNIT not in joined)
    assert ("dose" in hidden) == (DOSE_UNIT not in joined)
    if width == WIDTH:
        assert {"KL", "dose", "sweet spot"} <= set(hidden)
    else:
        assert not hidden and "dogs~random2" in seen and "france~random1" in seen
