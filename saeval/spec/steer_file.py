"""Read a steer file into SteerRow and VectorRow records, in whichever dialect it is written.

A ``.pt``/``.pth`` file is lm-eval's steering-vector format (``saeval.spec.pt_steer_file``).
Otherwise it is a CSV whose dialect is detected from the header's column names (column order is
free); ``saeval.spec.row_formulas`` says what each action computes.

seed
    ``latent_idx, steering_coefficient, sae_release, sae_id`` plus optional ``description``,
    ``action`` (``add`` default, ``clamp``, ``ablate``, ``clamp_active``, ``add_through_sae``,
    ``project``), ``hook`` (a TransformerLens hook name overriding the SAE's own) and
    ``threshold`` (clamp_active's ``t``, default 0). For clamps the coefficient is the target
    latent value; ablate takes no coefficient (0.0). A row may name a steering vector file in
    ``vector`` (with ``hook``, optional ``head_index``) instead of an SAE latent
    (``saeval.spec.vector_rows``); a file of vector rows only needs no SAE columns.
fork
    The lm-eval fork that registered ``sae_steered_beta``
    (github.com/AMindToThink/lm-evaluation-harness, ``lm_eval/models/InterventionModel.py``;
    its example files, e.g. ``models/dog_steer_with_action.csv`` in
    AMindToThink/sae_jailbreak_unlearning). Seed columns plus ``hook_action`` and
    ``clamp_value``; no ``hook``. ``add`` maps to add; the fork's ``clamp`` (``clamp_original``:
    set the latent where it is > 0) to clamp_active with t = 0; ``clamp_cond`` (on the fork's
    main branch: set it where it exceeds ``clamp_value``) to clamp_active with t =
    ``clamp_value``. ``print`` and ``debug`` are not steering and are errors naming the row.
lm-eval
    lm-eval 0.4.13's ``steered`` model (``lm_eval/models/hf_steered.py``): ``loader, action,
    sparse_model, hookpoint, feature_index, steering_coefficient, head_index, sae_id,
    description``; ``loader`` and ``sparse_model``, ``feature_index``, ``steering_coefficient``,
    ``sae_id`` are required. ``loader`` is ``sae_lens`` or ``sparsify`` (EleutherAI's coders:
    ``sparse_model`` is a local folder or hub repo holding one folder per hookpoint, so
    ``hookpoint`` is required); ``sparse_model`` is the release, ``feature_index`` the latent;
    ``hookpoint`` is a Hugging Face module name under ``model.base_model`` (``layers.20``), kept
    in ``SteerRow.hook`` (empty: the SAE's own hook point). ``add`` maps to add; lm-eval's
    ``clamp`` sets the projection of ``h - b_dec`` on the unit decoder direction: project.
    ``head_index`` must be empty (lm-eval's CSV loader ignores it).

Every CSV dialect also takes saeval's ``positions`` column (``saeval.spec.positions``: where
the row steers; empty: the run's default).

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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from saeval.errors import SteerFileError
from saeval.spec import cells
from saeval.spec.csv_records import Problems, decode, read_bytes, read_records
from saeval.spec.dialects import (
    DIALECTS,
    FORK,
    LM_EVAL,
    LOADERS,
    SEED,
    VECTOR_REQUIRED,
    Action,
    Dialect,
)
from saeval.spec.positions import positions_mode
from saeval.spec.pt_steer_file import PT_SUFFIXES, read_pt_steer_file
from saeval.spec.steer_rows import AnyRow, SteerFile, SteerRow, VectorRow
from saeval.spec.vector_rows import vector_row

__all__ = [
    "Action",
    "AnyRow",
    "SteerFile",
    "SteerRead",
    "SteerRow",
    "VectorRow",
    "read_steer_file",
    "read_steer_rows",
]

_FOREIGN_DELIMITERS = ((";", "';'"), ("\t", "tab"), ("|", "'|'"))
_EXAMPLE_HEADER = "latent_idx,steering_coefficient,sae_release,sae_id,description"


def read_steer_file(path: str | Path) -> SteerFile:
    """Read and check a steer file of any dialect; raise SteerFileError listing every problem."""
    if Path(path).suffix.lower() in PT_SUFFIXES and not Path(path).is_dir():
        return read_pt_steer_file(Path(path))
    problems = Problems(str(path))
    steer, _ = _read(Path(path), problems)
    problems.raise_if_any()
    return steer


@dataclass(frozen=True)
class SteerRead:
    """A CSV steer file read as far as it goes: its good rows (None where the file or its header
    cannot be read), rows whose cells have problems but whose SAE can still be looked up
    (``probes``: a bad latent index reads as -1 there), and every problem found reading."""

    file: SteerFile | None
    probes: tuple[SteerRow, ...]
    problems: tuple[str, ...]


def read_steer_rows(path: str | Path) -> SteerRead:
    """Read a steer file without stopping at its first bad row (``saeval validate``)."""
    if Path(path).suffix.lower() in PT_SUFFIXES and not Path(path).is_dir():
        try:
            return SteerRead(read_pt_steer_file(Path(path)), (), ())
        except SteerFileError as error:
            return SteerRead(None, (), tuple(error.problems))
    problems = Problems(str(path))
    try:
        steer, probes = _read(Path(path), problems)
    except SteerFileError:
        return SteerRead(None, (), tuple(problems.items))
    return SteerRead(steer, probes, tuple(problems.items))


def _read(path: Path, problems: Problems) -> tuple[SteerFile, tuple[SteerRow, ...]]:
    """The file's good rows (a row repeating a latent is not one) and probes; problems
    recorded (a file or header problem raises)."""
    data = read_bytes(path, problems)
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
    rows: list[AnyRow] = []
    probes: list[SteerRow] = []
    for line, fields in body:
        before = len(problems.items)
        row = _row(dialect, columns, line, fields, problems)
        if len(problems.items) == before and row is not None:
            rows.append(row)
        elif isinstance(row, SteerRow):
            probes.append(row)
    repeated = _check_duplicates(rows, dialect, problems)
    steer = SteerFile(
        path=path,
        text=text,
        sha256=hashlib.sha256(data).hexdigest(),
        dialect=dialect.name,
        rows=tuple(row for row in rows if row not in repeated),
    )
    return steer, tuple(probes)


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
    vectors = dialect is SEED and "vector" in columns  # SAE columns only for SAE rows
    for name in VECTOR_REQUIRED if vectors else dialect.required:
        if name not in columns:
            problems.add(line, name, f"missing column; {dialect.describe()}")
    for name in columns:
        if name not in dialect.columns:
            close = difflib.get_close_matches(name, dialect.columns, n=1)
            guess = f"did you mean {close[0]!r}? " if close else ""
            problems.add(line, name, f"unknown column; {guess}{dialect.describe()}")


def _row(
    dialect: Dialect, columns: list[str], line: int, fields: list[str], problems: Problems
) -> AnyRow | None:
    """One record as a SteerRow (or VectorRow), or None after recording its problems."""
    if len(fields) < len(columns) or any(field.strip() for field in fields[len(columns) :]):
        problems.add(line, None, _field_count_message(fields, columns))
        return None
    cells_of = {name: field.strip() for name, field in zip(columns, fields, strict=False)}
    if cells_of.get("vector"):
        return vector_row(cells_of, line, problems)
    return _sae_row(dialect, cells_of, line, problems)


def _sae_row(
    dialect: Dialect, cells_of: Mapping[str, str], line: int, problems: Problems
) -> SteerRow | None:
    """A record naming an SAE latent as a SteerRow, or None after recording its problems."""
    before = len(problems.items)
    written = _cell(cells_of, dialect.action)
    action = problems.check(line, dialect.action, lambda t: cells.action(t, dialect), written)
    latent_idx = problems.check(line, dialect.latent, cells.latent, _cell(cells_of, dialect.latent))
    coefficient = problems.check(
        line,
        "steering_coefficient",
        lambda t: cells.coefficient(t, action, dialect),
        cells_of["steering_coefficient"],
    )
    threshold = _threshold(dialect, cells_of, line, action, problems)
    mode = problems.check(line, "positions", positions_mode, cells_of.get("positions", ""))
    release = _cell(cells_of, dialect.release)
    if not release:
        problems.add(
            line,
            dialect.release,
            "empty; expected a sae_lens release (e.g. gemma-scope-2b-pt-res-canonical), "
            "a Hugging Face repo id, or a local SAE directory",
        )
    if dialect is LM_EVAL:
        _check_lm_eval(cells_of, line, problems)
    elif cells_of.get("head_index"):
        problems.add(
            line,
            "head_index",
            "applies to a vector row only (one head's d_head slice);"
            " an SAE's W_dec row spans its whole d_in: leave it empty",
        )
    if len(problems.items) > before and not release:
        return None  # with a release it is a probe: its SAE and hook can still be checked
    return SteerRow(  # a None below always came with a problem (a probe's -1: not known)
        file=problems.file,
        line=line,
        latent_idx=-1 if latent_idx is None else latent_idx,
        coefficient=coefficient or 0.0,
        sae_release=release,
        sae_id=cells_of.get("sae_id", ""),
        action=action or Action.ADD,
        hook=_cell(cells_of, dialect.hook) or None,
        description=cells_of.get("description", ""),
        dialect=dialect.name,
        threshold=threshold,
        loader=cells_of.get("loader", "sae_lens"),
        dialect_action="" if written.lower() in ("", action or "") else written.lower(),
        positions=mode,
    )


def _cell(cells_of: Mapping[str, str], column: str | None) -> str:
    """A cell's text, or "" when the dialect or the file lacks the column."""
    return cells_of.get(column, "") if column else ""


def _threshold(
    dialect: Dialect,
    cells_of: Mapping[str, str],
    line: int,
    action: Action | None,
    problems: Problems,
) -> float | None:
    """clamp_active's threshold: the seed's ``threshold``, the fork's clamp_cond ``clamp_value``."""
    if dialect is FORK:
        if _cell(cells_of, "hook_action").lower() != "clamp_cond":
            return None  # the fork reads clamp_value only for clamp_cond
        text = cells_of.get("clamp_value", "")
        if not text:
            problems.add(
                line,
                "clamp_value",
                "empty; clamp_cond sets the latent where it exceeds clamp_value, e.g. 0.5",
            )
            return None
        return problems.check(line, "clamp_value", cells.number, text)
    text = cells_of.get("threshold", "")
    if text and action is not Action.CLAMP_ACTIVE:
        problems.add(line, "threshold", "is read by clamp_active rows only; leave it empty")
        return None
    return problems.check(line, "threshold", cells.number, text) if text else None


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


def _check_lm_eval(cells_of: Mapping[str, str], line: int, problems: Problems) -> None:
    """Record what saeval cannot honour in lm-eval rows: other loaders, head_index, TL hooks."""
    loader, hookpoint = cells_of["loader"], cells_of.get("hookpoint", "")
    if loader not in LOADERS:
        shown = repr(loader) if loader else "empty"
        problems.add(
            line,
            "loader",
            f"{shown} is not a loader of lm-eval's steered model; valid: {', '.join(LOADERS)}",
        )
    elif loader == "sparsify" and not hookpoint:
        problems.add(
            line,
            "hookpoint",
            "empty; a sparsify coder is found in the sparse_model "
            "folder named by its hookpoint (e.g. layers.3)",
        )
    if cells_of.get("head_index"):
        problems.add(
            line,
            "head_index",
            f"{cells_of['head_index']!r} is not supported (lm-eval's CSV loader ignores it); "
            "leave it empty, or steer one head with a vector (a .pt file, or a seed row with "
            "vector and hook=blocks.L.attn.hook_z)",
        )
    if hookpoint.startswith("blocks.") or "hook_" in hookpoint:
        problems.add(
            line,
            "hookpoint",
            f"{hookpoint!r} is a TransformerLens hook name; lm-eval's hookpoint is a Hugging "
            "Face module name under model.base_model (e.g. layers.20); leave it empty to use "
            "the SAE's own hook point",
        )


_KINDS = {
    Action.ADD: "added",
    Action.ADD_THROUGH_SAE: "added through the SAE",
    Action.PROJECT: "projected",
}


def steered_kind(row: SteerRow) -> str:
    """What a row does to its latent, for the duplicate rule: ``added``, ``clamped``, ..."""
    return _KINDS.get(row.action, "clamped")


def duplicate_message(row: SteerRow, label: str, first_at: str) -> str:
    """Why ``row`` repeats an earlier row that does the same to the same latent of ``label``."""
    kind = steered_kind(row)
    fix = (
        "merge the two rows (sum their coefficients)"
        if kind.startswith("added")
        else "a latent holds one value: keep one of the two rows"
    )
    return f"latent {row.latent_idx} of {label} is already {kind} {first_at}; {fix}"


def _check_duplicates(rows: list[AnyRow], dialect: Dialect, problems: Problems) -> list[SteerRow]:
    """Record a latent added twice, or clamped (or ablated) twice, naming both rows; the rows
    that repeat an earlier one."""
    seen: dict[tuple[str, str, int, str], SteerRow] = {}
    repeated = []
    for row in rows:
        if isinstance(row, VectorRow):
            continue  # vectors on one hook point are summed like add rows
        key = (*row.sae_key, row.latent_idx, steered_kind(row))
        first = seen.setdefault(key, row)
        if first is not row:
            label = f"{row.sae_release} {row.sae_id!r}"
            message = duplicate_message(row, label, f"on line {first.line}")
            problems.add(row.line, dialect.latent, message)
            repeated.append(row)
    return repeated
