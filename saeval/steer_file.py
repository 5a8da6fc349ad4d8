"""Read a steer.csv into SteerRow records, in whichever of three dialects it is written.

The dialect is detected from the header's column names (column order is free):

seed
    ``latent_idx, steering_coefficient, sae_release, sae_id`` plus optional ``description``,
    ``action`` (``add`` default, ``clamp``, ``ablate``) and ``hook`` (a TransformerLens hook name
    overriding the SAE's own). For clamp the coefficient is the target latent value; ablate
    takes no coefficient (0.0).
fork
    The lm-eval fork that registered ``sae_steered_beta``
    (github.com/AMindToThink/lm-evaluation-harness, ``lm_eval/models/InterventionModel.py``;
    its example files, e.g. ``models/dog_steer_with_action.csv`` in
    AMindToThink/sae_jailbreak_unlearning). Seed columns plus ``hook_action`` and
    ``clamp_value``; no ``hook``. ``add`` maps to add. The fork's ``clamp`` (only where the
    latent is already active), ``clamp_cond`` (clamps the hard-coded latent 15864), ``print`` and
    ``debug`` have no saeval equivalent and are errors naming the row: saeval never runs a row
    with a meaning other than the one its author wrote.
lm-eval
    lm-eval 0.4.13's ``steered`` model (``lm_eval/models/hf_steered.py``): ``loader, action,
    sparse_model, hookpoint, feature_index, steering_coefficient, head_index, sae_id,
    description``; ``loader`` and ``sparse_model``, ``feature_index``, ``steering_coefficient``,
    ``sae_id`` are required. ``loader`` must be ``sae_lens``; ``sparse_model`` is the release,
    ``feature_index`` the latent; ``hookpoint`` is a Hugging Face module name under
    ``model.base_model`` (``layers.20``), kept in ``SteerRow.hook`` (empty: the SAE's own hook
    point). ``add`` maps to add (the same edit). lm-eval's ``clamp`` sets the projection of
    ``h - b_dec`` on the unit decoder direction, not the SAE latent, so it is an error naming
    the row (use the seed dialect's ``action=clamp``). ``head_index`` must be empty (lm-eval's CSV
    loader ignores it).

Tolerated everywhere: whitespace around fields, a UTF-8 BOM, CRLF line ends, ``#`` comment lines
(a line whose first non-space character is ``#``; quote a first field starting with ``#``) and
blank lines between rows, a trailing empty column (a comma at the end of every line). A latent
index is a whole number: ``12082.0`` is rejected (a pandas float column's artefact, not an
index). Every problem found is collected: ``SteerFileError.problems`` lists them, each as
``file:line column: message``; unknown columns are errors (a misspelt ``action`` must not
silently mean add).
"""

from __future__ import annotations

import codecs
import csv
import difflib
import hashlib
import io
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import NoReturn, TypeVar

from saeval.errors import SteerFileError

T = TypeVar("T")


class Action(StrEnum):
    """What a row does to its latent: add its decoder row, clamp it, or ablate it."""

    ADD = "add"
    CLAMP = "clamp"
    ABLATE = "ablate"


def _where(file: str, line: int | None, column: str | None = None) -> str:
    """``file:line column``, leaving out the parts that are not known."""
    place = file if line is None else f"{file}:{line}"
    return place if column is None else f"{place} {column}"


@dataclass(frozen=True)
class SteerRow:
    """One steering instruction: what to do to one latent of one SAE."""

    file: str  # the path as the user gave it (for messages)
    line: int  # 1-based physical line number where the row starts
    latent_idx: int  # >= 0
    coefficient: float  # add: multiple of W_dec[latent_idx]; clamp: target value; ablate: 0.0
    sae_release: str  # sae_lens release, Hugging Face repo id, or local SAE directory
    sae_id: str  # may be "" for a local directory
    action: Action = Action.ADD
    hook: str | None = None  # TransformerLens hook name; lm-eval dialect: HF module name
    description: str = ""
    dialect: str = "seed"  # "seed" | "fork" | "lm-eval"

    def where(self, column: str | None = None) -> str:
        """Where this row is, for messages: ``steers/dog.csv:3 latent_idx``."""
        return _where(self.file, self.line, column)

    def column(self, field: str) -> str:
        """The column of this row's dialect that holds ``field`` (lm-eval: ``feature_index``)."""
        return _DIALECT_NAMED[self.dialect].column(field)


@dataclass(frozen=True)
class SteerFile:
    """A checked steer file: its rows plus the text and hash a run manifest records."""

    path: Path
    text: str
    sha256: str
    dialect: str
    rows: tuple[SteerRow, ...]


@dataclass(frozen=True)
class _Dialect:
    """The columns of one steer.csv dialect and how its actions map onto saeval's."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    latent: str  # the column holding the latent index
    release: str  # the column holding the SAE release
    action: str  # the column holding the action
    hook: str | None  # the column holding a hook override, if the dialect has one
    actions: Mapping[str, Action]
    refused: Mapping[str, str]  # actions of the dialect that saeval cannot honour -> why
    clamp_note: str = ""  # added to the message for a clamp row without a value

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the dialect knows."""
        return self.required + self.optional

    def column(self, field: str) -> str:
        """The column holding a SteerRow field; the field's own name where the dialect agrees."""
        renamed = {
            "latent_idx": self.latent,
            "sae_release": self.release,
            "action": self.action,
            "hook": self.hook,
            "coefficient": "steering_coefficient",
        }
        return renamed.get(field) or field

    def describe(self) -> str:
        """One line naming the dialect's columns, for messages."""
        required, optional = ",".join(self.required), ",".join(self.optional)
        return f"{self.name} columns: {required}, optional {optional}"


_SEED = _Dialect(
    name="seed",
    required=("latent_idx", "steering_coefficient", "sae_release", "sae_id"),
    optional=("description", "action", "hook"),
    latent="latent_idx",
    release="sae_release",
    action="action",
    hook="hook",
    actions={a.value: a for a in Action},
    refused={},
)
_FORK = _Dialect(
    name="fork",
    required=("latent_idx", "steering_coefficient", "sae_release", "sae_id"),
    optional=("hook_action", "clamp_value", "description"),
    latent="latent_idx",
    release="sae_release",
    action="hook_action",
    hook=None,
    actions={"add": Action.ADD},
    refused={
        "clamp": "the fork clamps only where the latent is already active, saeval clamps at "
        "every position; write the row in the seed dialect with action=clamp if that is meant",
        "clamp_cond": "the fork clamps the hard-coded latent 15864 wherever this latent "
        "exceeds clamp_value, a conditional clamp saeval does not have",
        "print": "the fork prints SAE activations there (a debugging aid, not steering); "
        "remove the row",
        "debug": "the fork stops in the pdb debugger there (not steering); remove the row",
    },
    clamp_note=" (clamp_value is only the threshold of the fork's clamp_cond)",
)
_LM_EVAL = _Dialect(
    name="lm-eval",
    required=("loader", "sparse_model", "feature_index", "steering_coefficient", "sae_id"),
    optional=("action", "hookpoint", "head_index", "description"),
    latent="feature_index",
    release="sparse_model",
    action="action",
    hook="hookpoint",
    actions={"add": Action.ADD},
    refused={
        "clamp": "lm-eval clamps the projection of h - b_dec on the decoder direction, saeval "
        "clamps the SAE latent; write the row in the seed dialect with action=clamp if that "
        "is meant",
    },
)
_DIALECTS = (_SEED, _FORK, _LM_EVAL)
_DIALECT_NAMED = {dialect.name: dialect for dialect in _DIALECTS}
_FOREIGN_DELIMITERS = ((";", "';'"), ("\t", "tab"), ("|", "'|'"))
_EXAMPLE_HEADER = "latent_idx,steering_coefficient,sae_release,sae_id,description"
_QUOTING = (
    'a field holding a comma or a quote is wrapped in double quotes, each quote inside doubled ("")'
)


class _Invalid(Exception):
    """One field's problem; the message names what is valid."""


class _Problems:
    """Every problem found in one file, each formatted as ``file:line column: message``."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[str] = []

    def add(self, line: int | None, column: str | None, message: str) -> None:
        """Record one problem."""
        self.items.append(f"{_where(self.file, line, column)}: {message}")

    def check(self, line: int, column: str, parse: Callable[[str], T], text: str) -> T | None:
        """``parse(text)``, recording its problem (and returning None) if it has one."""
        try:
            return parse(text)
        except _Invalid as problem:
            self.add(line, column, str(problem))
            return None

    def error(self) -> SteerFileError:
        """The error for the problems so far: the first one, counting the rest."""
        first, more = self.items[0], len(self.items) - 1
        if more:
            first += f" (and {more} more problem{'s' if more > 1 else ''})"
        return SteerFileError(first, problems=list(self.items))

    def raise_if_any(self) -> None:
        """Raise SteerFileError listing every problem, if there are any."""
        if self.items:
            raise self.error()

    def fatal(self, line: int | None, column: str | None, message: str) -> NoReturn:
        """Record a problem that ends reading, and raise."""
        self.add(line, column, message)
        raise self.error()


def read_steer_file(path: str | Path) -> SteerFile:
    """Read and check a steer.csv of any dialect; raise SteerFileError listing every problem."""
    shown = str(path)
    problems = _Problems(shown)
    data = _read_bytes(Path(path), problems)
    text = _decode(data, problems)
    records = _records(text, problems)
    if not records:
        problems.raise_if_any()
        problems.fatal(
            1,
            None,
            "the file is empty (no header line; comments and blank lines do not count); the "
            f"first line names the columns, e.g. {_EXAMPLE_HEADER}",
        )
    (header_line, header), body = records[0], records[1:]
    columns = _columns(header, header_line, problems)
    dialect = _detect(columns, header_line, problems)
    _check_columns(columns, dialect, header_line, problems)
    problems.raise_if_any()
    if not body:
        problems.fatal(header_line, None, "no rows under the header; add one row per latent")
    rows = [r for line, fields in body if (r := _row(dialect, columns, line, fields, problems))]
    _check_duplicates(rows, dialect, problems)
    problems.raise_if_any()
    return SteerFile(
        path=Path(path),
        text=text,
        sha256=hashlib.sha256(data).hexdigest(),
        dialect=dialect.name,
        rows=tuple(rows),
    )


def _read_bytes(path: Path, problems: _Problems) -> bytes:
    """The file's bytes, or a problem saying why it cannot be read."""
    if path.is_dir():
        problems.fatal(None, None, "is a directory; expected a steer.csv file")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        problems.fatal(None, None, "file not found; expected a steer.csv file")
    except OSError as error:
        problems.fatal(None, None, f"cannot read the file: {error.strerror or error}")


def _decode(data: bytes, problems: _Problems) -> str:
    """The file's text (UTF-8, BOM removed), or a problem naming the line that is not text."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        problems.fatal(1, None, "UTF-16 text; save the file as UTF-8 (CSV UTF-8)")
    nul = data.find(b"\0")
    if nul >= 0:
        problems.fatal(
            data.count(b"\n", 0, nul) + 1,
            None,
            "binary data (a NUL byte); a steer file is UTF-8 CSV text",
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        problems.fatal(
            data.count(b"\n", 0, error.start) + 1,
            None,
            f"not UTF-8 text (byte 0x{data[error.start]:02x}); save the file as UTF-8",
        )


class _LineFeed:
    """Physical lines for csv.reader, skipping comment and blank lines between records."""

    def __init__(self, text: str) -> None:
        self._lines = io.StringIO(text, newline="")
        self._between_records = True
        self.line = 0  # number of the last line handed out
        self.record_start = 0  # number of the first line of the current record
        self.record_text = ""  # the lines of the current record

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        while True:
            text = next(self._lines)
            self.line += 1
            if not self._between_records:
                self.record_text += text
                return text
            if text.strip() and not text.lstrip().startswith("#"):
                self._between_records = False
                self.record_start = self.line
                self.record_text = text
                return text

    def record_done(self) -> None:
        """The reader returned a record: the next line starts a new one."""
        self._between_records = True


def _records(text: str, problems: _Problems) -> list[tuple[int, list[str]]]:
    """(first line number, fields) of every non-empty CSV record, up to a CSV syntax error."""
    feed = _LineFeed(text)
    # Not strict: csv's strict mode also rejects spaces after a closing quote (`"a, b" ,`).
    reader = csv.reader(feed, skipinitialspace=True)
    records: list[tuple[int, list[str]]] = []
    for fields in _guarded(reader, feed, problems):
        feed.record_done()
        if any(field.strip() for field in fields):
            records.append((feed.record_start, fields))
    last_is_current = bool(records) and records[-1][0] == feed.record_start
    if last_is_current and _ends_in_open_quote(feed.record_text):
        problems.add(
            feed.record_start,
            None,
            "a quoted field opened here is never closed (it runs to the end of the file); "
            f"{_QUOTING}",
        )
        records.pop()
    return records


def _guarded(
    reader: Iterator[list[str]], feed: _LineFeed, problems: _Problems
) -> Iterator[list[str]]:
    """The reader's records until it ends or reports a CSV error, which becomes a problem."""
    try:
        yield from reader
    except csv.Error as error:
        problems.add(feed.record_start, None, f"cannot parse CSV ({error}); {_QUOTING}")


def _ends_in_open_quote(text: str) -> bool:
    """Whether CSV text ends inside a quoted field (csv's lenient reader accepts that at EOF)."""
    state = "start"  # start of a field | plain | quoted | quote (a quote inside a quoted field)
    for char in text:
        if state == "quoted":
            state = "quote" if char == '"' else "quoted"
        elif state == "quote" and char == '"':
            state = "quoted"
        elif char in ",\r\n":
            state = "start"
        elif state == "start" and char == '"':
            state = "quoted"
        elif not (state == "start" and char == " "):
            state = "plain"
    return state == "quoted"


def _columns(header: list[str], line: int, problems: _Problems) -> list[str]:
    """The header's column names, without a trailing empty column; header problems raise."""
    names = [field.strip() for field in header]
    while len(names) > 1 and not names[-1]:
        names.pop()
    if len(names) == 1:
        for delimiter, label in _FOREIGN_DELIMITERS:
            if delimiter in header[0]:
                problems.fatal(line, None, f"looks like {label}-separated; use commas")
    for number, name in enumerate(names, start=1):
        if not name:
            problems.add(line, None, f"column {number} has no name; name it or remove it")
    for name in sorted({name for name in names if name and names.count(name) > 1}):
        problems.add(line, name, "appears twice in the header; keep one")
    problems.raise_if_any()
    return names


def _detect(columns: list[str], line: int, problems: _Problems) -> _Dialect:
    """The dialect whose own columns the header uses; seed when only shared columns appear."""
    seed_columns = set(_SEED.columns)
    hits = {d.name: sorted(set(columns) & (set(d.columns) - seed_columns)) for d in _DIALECTS}
    found = [d for d in _DIALECTS if hits[d.name]]
    if len(found) > 1:
        mixed = " with ".join(f"{d.name} columns ({', '.join(hits[d.name])})" for d in found)
        accepted = "; ".join(d.describe() for d in found)
        problems.fatal(line, None, f"the header mixes {mixed}; use one dialect: {accepted}")
    if found:
        return found[0]
    if seed_columns & set(columns):
        return _SEED
    accepted = "; ".join(d.describe() for d in _DIALECTS)
    problems.fatal(
        line, None, f"header {','.join(columns)!r} matches no steer.csv dialect; {accepted}"
    )


def _check_columns(columns: list[str], dialect: _Dialect, line: int, problems: _Problems) -> None:
    """Record missing required columns and columns the dialect does not know."""
    for name in dialect.required:
        if name not in columns:
            problems.add(line, name, f"missing column; {dialect.describe()}")
    for name in columns:
        if name not in dialect.columns:
            close = difflib.get_close_matches(name, dialect.columns, n=1)
            guess = f"did you mean {close[0]!r}? " if close else ""
            problems.add(line, name, f"unknown column; {guess}{dialect.describe()}")


def _row(
    dialect: _Dialect, columns: list[str], line: int, fields: list[str], problems: _Problems
) -> SteerRow | None:
    """One record as a SteerRow, or None after recording its problems."""
    if len(fields) < len(columns) or any(field.strip() for field in fields[len(columns) :]):
        problems.add(line, None, _field_count_message(fields, columns))
        return None
    cells = {name: field.strip() for name, field in zip(columns, fields, strict=False)}
    before = len(problems.items)
    action = problems.check(
        line, dialect.action, lambda t: _action(t, dialect), _cell(cells, dialect.action)
    )
    latent_idx = problems.check(line, dialect.latent, _latent, cells[dialect.latent])
    coefficient = problems.check(
        line,
        "steering_coefficient",
        lambda t: _coefficient(t, action, dialect),
        cells["steering_coefficient"],
    )
    release = cells[dialect.release]
    if not release:
        problems.add(
            line,
            dialect.release,
            "empty; expected a sae_lens release (e.g. gemma-scope-2b-pt-res-canonical), "
            "a Hugging Face repo id, or a local SAE directory",
        )
    if dialect is _LM_EVAL:
        _check_lm_eval(cells, line, problems)
    if len(problems.items) > before or action is None or latent_idx is None or coefficient is None:
        return None
    return SteerRow(
        file=problems.file,
        line=line,
        latent_idx=latent_idx,
        coefficient=coefficient,
        sae_release=release,
        sae_id=cells["sae_id"],
        action=action,
        hook=_cell(cells, dialect.hook) or None,
        description=cells.get("description", ""),
        dialect=dialect.name,
    )


def _cell(cells: Mapping[str, str], column: str | None) -> str:
    """A cell's text, or "" when the dialect or the file lacks the column."""
    return cells.get(column, "") if column else ""


def _field_count_message(fields: list[str], columns: list[str]) -> str:
    """Why a record's field count does not match the header."""
    if len(fields) == 1:
        for delimiter, label in _FOREIGN_DELIMITERS:
            if delimiter in fields[0]:
                return f"looks like {label}-separated; use commas"
    return (
        f"{len(fields)} fields, but the header has {len(columns)} columns "
        f"({','.join(columns)}); wrap a field holding a comma in double quotes"
    )


def _action(text: str, dialect: _Dialect) -> Action:
    """The action a cell names (empty: add)."""
    value = text.lower()
    if not value:
        return Action.ADD
    if value in dialect.actions:
        return dialect.actions[value]
    valid = ", ".join(dialect.actions)
    if value in dialect.refused:
        raise _Invalid(f"{text!r} is not supported: {dialect.refused[value]}; valid: {valid}")
    raise _Invalid(f"unknown action {text!r}; valid: {valid}")


def _latent(text: str) -> int:
    """A latent index: a whole number >= 0."""
    if re.fullmatch(r"[0-9]+", text):
        return int(text)
    if not text:
        raise _Invalid("empty; expected a latent index, a whole number >= 0 such as 12082")
    if re.fullmatch(r"-[0-9]+(\.0*)?", text):
        raise _Invalid(f"{text!r} is negative; a latent index is a whole number >= 0")
    if re.fullmatch(r"[0-9]+\.0*", text):
        raise _Invalid(
            f"{text!r} has a decimal point; write the latent index as a whole number "
            f"({text.split('.')[0]})"
        )
    raise _Invalid(f"{text!r} is not a whole number; expected a latent index such as 12082")


def _coefficient(text: str, action: Action | None, dialect: _Dialect) -> float:
    """The coefficient for ``action`` (None: invalid): add multiple, clamp target, ablate 0.0."""
    if action is Action.ABLATE:
        if text and _number(text) != 0.0:
            raise _Invalid(
                f"ablate sets the latent to 0 and takes no coefficient, got {text!r}; "
                "leave it empty, or clamp to set another value"
            )
        return 0.0
    if text:
        return _number(text)
    if action is Action.CLAMP:
        raise _Invalid(
            f"empty; a clamp row needs the value to clamp the latent to, e.g. 50.0"
            f"{dialect.clamp_note}"
        )
    if action is Action.ADD:
        raise _Invalid("empty; an add row needs the multiple of W_dec[latent] to add, e.g. 240.0")
    return 0.0  # the action itself is invalid and already reported


def _number(text: str) -> float:
    """A finite number."""
    try:
        value = float(text)
    except ValueError:
        raise _Invalid(
            f"{text!r} is not a number; expected a finite number such as 240.0"
        ) from None
    if not math.isfinite(value):
        raise _Invalid(f"{text!r} is not finite; expected a finite number such as 240.0")
    return value


def _check_lm_eval(cells: Mapping[str, str], line: int, problems: _Problems) -> None:
    """Record the lm-eval features saeval cannot honour: other loaders, head_index, TL hooks."""
    loader = cells["loader"]
    if loader != "sae_lens":
        shown = repr(loader) if loader else "empty"
        problems.add(
            line,
            "loader",
            f"{shown} is not supported; saeval loads SAEs with sae_lens only (loader=sae_lens)",
        )
    if cells.get("head_index"):
        problems.add(
            line,
            "head_index",
            f"{cells['head_index']!r} is not supported (lm-eval's CSV loader ignores it too); "
            "leave it empty",
        )
    hookpoint = cells.get("hookpoint", "")
    if hookpoint.startswith("blocks.") or "hook_" in hookpoint:
        problems.add(
            line,
            "hookpoint",
            f"{hookpoint!r} is a TransformerLens hook name; lm-eval's hookpoint is a Hugging "
            "Face module name under model.base_model (e.g. layers.20); leave it empty to use "
            "the SAE's own hook point",
        )


def _check_duplicates(rows: list[SteerRow], dialect: _Dialect, problems: _Problems) -> None:
    """Record a latent added twice, or clamped (or ablated) twice, naming both rows."""
    seen: dict[tuple[str, str, int, str], SteerRow] = {}
    for row in rows:
        kind = "added" if row.action is Action.ADD else "clamped"
        first = seen.setdefault((row.sae_release, row.sae_id, row.latent_idx, kind), row)
        if first is row:
            continue
        fix = (
            "merge the two rows (sum their coefficients)"
            if kind == "added"
            else "a latent holds one value: keep one of the two rows"
        )
        problems.add(
            row.line,
            dialect.latent,
            f"latent {row.latent_idx} of {row.sae_release} {row.sae_id!r} is already {kind} "
            f"on line {first.line}; {fix}",
        )
