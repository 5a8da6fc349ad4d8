"""Tables that fit the console without cutting a number or a name.

Rich shrinks a table that is too wide by folding or cutting every column, numbers included
(``0.…``, ``saeval…``). A ``FitTable`` instead lays itself out for the width it is rendered at:
every cell keeps its words whole (a column is never narrower than its longest word; columns
marked ``wrap=False`` never wrap at all), and where the table does not fit it takes the caller's
steps in order: drop a low-value column (links, descriptions, test names), switch to the
short labels (shortest unique suffixes, keys) that a legend below the table spells out, or drop
the outer border. A line below the table names the columns it left out (or shows them as lines,
a link per row); a column's caption line (its unit) shows only with the column. Only where
even the last step does not fit does Rich fold cells.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

_WORD = re.compile(r"^\s*\S+|\S+")  # what Rich keeps together when it wraps: a word, and
# the spaces that indent a line's first word
SHORT_LABELS = "short labels"  # the step that switches to the short rows (and their legend)
COMPACT = "compact"  # the step that drops the outer border and the padding at the edges


@dataclass(frozen=True)
class FitColumn:
    """A column: its header, how it aligns, and whether its cells may wrap at spaces."""

    header: str
    justify: Literal["left", "right"] = "left"
    wrap: bool = True


@dataclass(frozen=True)
class FitTable:
    """A table that picks its layout at render time (see the module docstring).

    ``steps`` are column headers to drop, ``SHORT_LABELS`` and ``COMPACT``, in the order they
    are taken; ``short_rows`` (same shape as ``rows``) and ``legend`` are what
    ``SHORT_LABELS`` switches to and the lines that explain the short labels; ``hidden_lines``
    are lines shown below the table in place of a column that is left out (a link per row).
    """

    title: str | Text
    columns: Sequence[FitColumn]
    rows: Sequence[Sequence[str | Text]]
    styles: Sequence[str] = ()
    caption: str = ""
    steps: Sequence[str] = ()
    short_rows: Sequence[Sequence[str | Text]] = ()
    legend: Sequence[str] = ()
    hidden_lines: Mapping[str, Sequence[str]] = field(default_factory=dict)  # per column header
    column_captions: Mapping[str, str] = field(default_factory=dict)  # per column header: a
    # caption line (a unit) shown only while its column is

    @property
    def row_count(self) -> int:
        """How many rows the table has."""
        return len(self.rows)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """The first layout (in the order of ``steps``) that fits ``options.max_width``."""
        width = options.max_width
        layouts = list(self._layouts())
        for layout in layouts:
            shown, short, compact = layout
            overhead = table_overhead(len(shown), compact=compact)
            cells = self._cells(shown, short)
            widths = fit_widths(self._headers(shown), cells, width - overhead)
            if widths is not None:
                yield from self._render(layout, widths, width)
                return
        yield from self._render(layouts[-1], None, width)

    def _layouts(self) -> Iterator[_Layout]:
        """(shown column indexes, short labels, compact) after each step."""
        shown = list(range(len(self.columns)))
        short = compact = False
        yield list(shown), short, compact
        for step in self.steps:
            if step == SHORT_LABELS:
                short = bool(self.short_rows)
            elif step == COMPACT:
                compact = True
            else:
                shown = [i for i in shown if self.columns[i].header != step]
            yield list(shown), short, compact

    def _headers(self, shown: Sequence[int]) -> list[FitColumn]:
        return [self.columns[i] for i in shown]

    def _cells(self, shown: Sequence[int], short: bool) -> list[list[str | Text]]:
        rows = self.short_rows if short else self.rows
        return [[row[i] for i in shown] for row in rows]

    def _render(self, layout: _Layout, widths: list[int] | None, width: int) -> RenderResult:
        shown, short, compact = layout
        table = _table(compact)
        table.title = self.title
        table.caption = self._caption(shown) or None
        for index, column in enumerate(self._headers(shown)):
            fixed = None if widths is None else widths[index]
            table.add_column(column.header, justify=column.justify, width=fixed, overflow="fold")
        styles = list(self.styles) or [""] * len(self.rows)
        for cells, style in zip(self._cells(shown, short), styles, strict=True):
            table.add_row(*(_text(cell) for cell in cells), style=style)
        yield table
        lines = list(self.legend) if short else []
        hidden = [c.header for i, c in enumerate(self.columns) if i not in shown]
        for header in hidden:
            lines += self.hidden_lines.get(header, ())
        unlisted = [header for header in hidden if header not in self.hidden_lines]
        if unlisted:
            lines.append(f"not shown at {width} columns: {', '.join(unlisted)}")
        for line in lines:
            yield Text(line, style="dim")

    def _caption(self, shown: Sequence[int]) -> str:
        """``caption``, then the caption line of each shown column that has one."""
        notes = [self.column_captions.get(column.header, "") for column in self._headers(shown)]
        return "\n".join(line for line in dict.fromkeys([self.caption, *notes]) if line)


_Layout = tuple[list[int], bool, bool]


def _table(compact: bool) -> Table:
    """An empty table: boxed, or (compact) a rule under the header and columns two apart."""
    style: dict[str, Any] = {"title_justify": "left", "caption_justify": "left"}
    if compact:
        style |= {"box": box.SIMPLE_HEAD, "show_edge": False, "pad_edge": False}
        style["padding"] = (0, 1, 0, 0)
    return Table(header_style="bold", **style)


@functools.cache
def table_overhead(columns: int, *, compact: bool) -> int:
    """The characters a table's borders and padding take beside its columns' content."""
    table = _table(compact)
    for _ in range(columns):
        table.add_column(width=1)
    table.add_row(*["x"] * columns)
    buffer = io.StringIO()
    Console(file=buffer, width=columns * 8 + 8, color_system=None).print(table)
    return max(cell_len(line.rstrip()) for line in buffer.getvalue().splitlines()) - columns


def _text(cell: str | Text) -> Text:
    return cell if isinstance(cell, Text) else Text(cell)


def _plain(cell: str | Text) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def _bounds(column: FitColumn, cells: Sequence[str | Text]) -> tuple[int, int]:
    """(narrowest, widest) content width of a column: its longest word (or line, for a
    column that does not wrap; headers always wrap at spaces) and its longest line."""
    header_words = column.header.split() or [""]
    lines = [line for cell in cells for line in _plain(cell).splitlines()]
    units = [word for line in lines for word in _WORD.findall(line)] if column.wrap else lines
    narrowest = max(cell_len(unit) for unit in [*header_words, *units])
    widest = max(cell_len(line) for line in [column.header, *lines])
    return narrowest, widest


def fit_widths(
    columns: Sequence[FitColumn], rows: Sequence[Sequence[str | Text]], width: int
) -> list[int] | None:
    """Content widths that add up to at most ``width`` keeping every word whole, taken from
    the widest columns first; None when no such widths exist."""
    bounds = [_bounds(column, [row[i] for row in rows]) for i, column in enumerate(columns)]
    widths = [widest for _, widest in bounds]
    excess = sum(widths) - width
    while excess > 0:
        shrinkable = [i for i, (narrowest, _) in enumerate(bounds) if widths[i] > narrowest]
        if not shrinkable:
            return None
        widest = max(shrinkable, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1
    return widths


def shortest_unique_suffixes(names: Sequence[str], separator: str = "_") -> dict[str, str]:
    """Each name's shortest trailing run of ``separator``-joined parts that no other name ends
    with (``saeval_demo_knowledge`` -> ``knowledge``); the whole name where none is shorter."""
    distinct = list(dict.fromkeys(names))
    found = {}
    for name in distinct:
        parts = name.split(separator)
        for count in range(1, len(parts) + 1):
            suffix = separator.join(parts[-count:])
            others = [other for other in distinct if other != name]
            if not any(other == suffix or other.endswith(separator + suffix) for other in others):
                found[name] = suffix
                break
        else:
            found[name] = name
    return found
