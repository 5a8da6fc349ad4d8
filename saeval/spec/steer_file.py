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

import difflib
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from saeval.spec.csv_records import Invalid, Problems, decode, location, read_bytes, read_records
from saeval.spec.dialects import DIALECT_NAMED, DIALECTS, LM_EVAL, SEED, Action, Dialect

_FOREIGN_DELIMITERS = ((";", "';'"), ("\t", "tab"), ("|", "'|'"))
_EXAMPLE_HEADER = "latent_idx,steering_coefficient,sae_release,sae_id,description"


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
        return location(self.file, self.line, column)

    def column(self, field: str) -> str:
        """The column of this row's dialect that holds ``field`` (lm-eval: ``feature_index``)."""
        return DIALECT_NAMED[self.dialect].column(field)


@dataclass(frozen=True)
class SteerFile:
    """A checked steer file: its rows plus the text and hash a run manifest records."""

    path: Path
    text: str
    sha256: str
    dialect: str
    rows: tuple[SteerRow, ...]


def read_steer_file(path: str | Path) -> SteerFile:
    """Read and check a steer.csv of any dialect; raise SteerFileError listing every problem."""
    shown = str(path)
    problems = Problems(shown)
    data = read_bytes(Path(path), problems)
    text = decode(data, problems)
    records = read_records(text, problems)
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


def _columns(header: list[str], line: int, problems: Problems) -> list[str]:
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


def _detect(columns: list[str], line: int, problems: Problems) -> Dialect:
    """The dialect whose own columns the header uses; seed when only shared columns appear."""
    seed_columns = set(SEED.columns)
    hits = {d.name: sorted(set(columns) & (set(d.columns) - seed_columns)) for d in DIALECTS}
    found = [d for d in DIALECTS if hits[d.name]]
    if len(found) > 1:
        mixed = " with ".join(f"{d.name} columns ({', '.join(hits[d.name])})" for d in found)
        accepted = "; ".join(d.describe() for d in found)
        problems.fatal(line, None, f"the header mixes {mixed}; use one dialect: {accepted}")
    if found:
        return found[0]
    if seed_columns & set(columns):
        return SEED
    accepted = "; ".join(d.describe() for d in DIALECTS)
    problems.fatal(
        line, None, f"header {','.join(columns)!r} matches no steer.csv dialect; {accepted}"
    )


def _check_columns(columns: list[str], dialect: Dialect, line: int, problems: Problems) -> None:
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
    dialect: Dialect, columns: list[str], line: int, fields: list[str], problems: Problems
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
    if dialect is LM_EVAL:
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


def _action(text: str, dialect: Dialect) -> Action:
    """The action a cell names (empty: add)."""
    value = text.lower()
    if not value:
        return Action.ADD
    if value in dialect.actions:
        return dialect.actions[value]
    valid = ", ".join(dialect.actions)
    if value in dialect.refused:
        raise Invalid(f"{text!r} is not supported: {dialect.refused[value]}; valid: {valid}")
    raise Invalid(f"unknown action {text!r}; valid: {valid}")


def _latent(text: str) -> int:
    """A latent index: a whole number >= 0."""
    if re.fullmatch(r"[0-9]+", text):
        return int(text)
    if not text:
        raise Invalid("empty; expected a latent index, a whole number >= 0 such as 12082")
    if re.fullmatch(r"-[0-9]+(\.0*)?", text):
        raise Invalid(f"{text!r} is negative; a latent index is a whole number >= 0")
    if re.fullmatch(r"[0-9]+\.0*", text):
        raise Invalid(
            f"{text!r} has a decimal point; write the latent index as a whole number "
            f"({text.split('.')[0]})"
        )
    raise Invalid(f"{text!r} is not a whole number; expected a latent index such as 12082")


def _coefficient(text: str, action: Action | None, dialect: Dialect) -> float:
    """The coefficient for ``action`` (None: invalid): add multiple, clamp target, ablate 0.0."""
    if action is Action.ABLATE:
        if text and _number(text) != 0.0:
            raise Invalid(
                f"ablate sets the latent to 0 and takes no coefficient, got {text!r}; "
                "leave it empty, or clamp to set another value"
            )
        return 0.0
    if text:
        return _number(text)
    if action is Action.CLAMP:
        raise Invalid(
            f"empty; a clamp row needs the value to clamp the latent to, e.g. 50.0"
            f"{dialect.clamp_note}"
        )
    if action is Action.ADD:
        raise Invalid("empty; an add row needs the multiple of W_dec[latent] to add, e.g. 240.0")
    return 0.0  # the action itself is invalid and already reported


def _number(text: str) -> float:
    """A finite number."""
    try:
        value = float(text)
    except ValueError:
        raise Invalid(f"{text!r} is not a number; expected a finite number such as 240.0") from None
    if not math.isfinite(value):
        raise Invalid(f"{text!r} is not finite; expected a finite number such as 240.0")
    return value


def _check_lm_eval(cells: Mapping[str, str], line: int, problems: Problems) -> None:
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


def steered_kind(row: SteerRow) -> str:
    """What a row does to its latent, for the duplicate rule: ``added`` or ``clamped``."""
    return "added" if row.action is Action.ADD else "clamped"


def duplicate_message(row: SteerRow, label: str, first_at: str) -> str:
    """Why ``row`` repeats an earlier row that does the same to the same latent of ``label``."""
    kind = steered_kind(row)
    fix = (
        "merge the two rows (sum their coefficients)"
        if kind == "added"
        else "a latent holds one value: keep one of the two rows"
    )
    return f"latent {row.latent_idx} of {label} is already {kind} {first_at}; {fix}"


def _check_duplicates(rows: list[SteerRow], dialect: Dialect, problems: Problems) -> None:
    """Record a latent added twice, or clamped (or ablated) twice, naming both rows."""
    seen: dict[tuple[str, str, int, str], SteerRow] = {}
    for row in rows:
        key = (row.sae_release, row.sae_id, row.latent_idx, steered_kind(row))
        first = seen.setdefault(key, row)
        if first is not row:
            label = f"{row.sae_release} {row.sae_id!r}"
            message = duplicate_message(row, label, f"on line {first.line}")
            problems.add(row.line, dialect.latent, message)
