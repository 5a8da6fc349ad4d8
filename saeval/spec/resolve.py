"""Resolve steer rows against the SAE catalog before any model or SAE is loaded.

Every row gets the five checks of ``saeval.spec.checks``, each ``ok``, ``error`` or
``unchecked``. A check that needs what is not known offline (the width of an SAE whose config
is neither derivable from its id nor cached, a local model folder's identity, ...) is
``unchecked``, with a message saying what is missing: it is never reported as passed. Messages
read ``file:line column: ...`` and name what would be valid.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from saeval.errors import ResolutionError
from saeval.spec import catalog, row_formulas
from saeval.spec.catalog import UnknownSaeId
from saeval.spec.checks import (
    Check,
    CheckOutcome,
    check,
    duplicate_check,
    first_model,
    hook_check,
    latent_check,
    model_check,
)
from saeval.spec.models import ModelInfo, model_info
from saeval.spec.sae_facts import SAE_CFG_FILE, ResolvedSae, SaeRef, resolved_sae, sae_facts
from saeval.spec.sparsify_facts import sparsify_sae
from saeval.spec.steer_file import AnyRow, SteerFile, SteerRow, VectorRow, read_steer_rows
from saeval.spec.vector_files import VectorFacts, vector_facts

SCHEMA = "saeval.resolution/1"
__all__ = ["Check", "CheckOutcome", "Resolution", "ResolvedRow", "resolve", "validate"]


@dataclass(frozen=True)
class ResolvedRow:
    """One steer row with its SAE (None when it could not be found, or for a vector row), its
    checks, a vector row's vector, and where the dialect's author computed something else."""

    row: AnyRow
    sae: ResolvedSae | None
    checks: tuple[Check, ...]
    vector: VectorFacts | None = None
    notes: tuple[str, ...] = ()

    @property
    def hook_name(self) -> str | None:
        """The hook point the row steers: its own `hook`, else the SAE's."""
        return self.row.hook or (self.sae.hook_name if self.sae else None)

    @property
    def neuronpedia_url(self) -> str | None:
        """The latent's Neuronpedia page, when the SAE has a Neuronpedia id."""
        if self.sae is None or not self.sae.neuronpedia_id or isinstance(self.row, VectorRow):
            return None
        return catalog.neuronpedia_url(self.sae.neuronpedia_id, self.row.latent_idx)

    @property
    def status(self) -> CheckOutcome:
        """error if any check failed, else unchecked if any was not checked, else ok."""
        statuses = {check.status for check in self.checks}
        return next(
            s
            for s in (CheckOutcome.ERROR, CheckOutcome.UNCHECKED, CheckOutcome.OK)
            if s in statuses
        )

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-able data."""
        row = self.row
        vector = row if isinstance(row, VectorRow) else None
        return {
            "file": row.file,
            "line": row.line,
            "latent_idx": None if isinstance(row, VectorRow) else row.latent_idx,
            "coefficient": row.coefficient,
            "action": row.action.value,
            "dialect_action": row.written_action,
            "computes": row_formulas.formula(row),
            "positions": row.positions,  # None: the run's default (--positions)
            "threshold": None if isinstance(row, VectorRow) else row.threshold,
            "description": row.description,
            "hook_name": self.hook_name,
            "sae": self.sae.to_dict() if self.sae else None,
            "vector": None if vector is None else _vector_dict(vector, self.vector),
            "neuronpedia_url": self.neuronpedia_url,
            "status": self.status.value,
            "checks": [check.to_dict() for check in self.checks],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Resolution:
    """Every row of one or more steer files, resolved, plus the problems of unreadable files."""

    files: tuple[str, ...]
    rows: tuple[ResolvedRow, ...]
    model: str | None = None  # --model as given
    online: bool = False
    read_problems: tuple[str, ...] = field(default=())  # SteerFileError.problems of each file

    @property
    def ok(self) -> bool:
        """No file failed to read and no check failed (unchecked checks do not fail)."""
        return not self.problems

    @property
    def problems(self) -> list[str]:
        """Every error, as `file:line column: message`."""
        errors = [str(c) for r in self.rows for c in r.checks if c.status is CheckOutcome.ERROR]
        return [*self.read_problems, *errors]

    @property
    def unchecked(self) -> list[str]:
        """Every check that could not be made, as `file:line column: message`."""
        return [str(c) for r in self.rows for c in r.checks if c.status is CheckOutcome.UNCHECKED]

    @property
    def notes(self) -> list[str]:
        """Where a dialect's author computed something else, once per file: `file: note`."""
        found = {f"{r.row.file}: note: {note}": None for r in self.rows for note in r.notes}
        return list(found)

    @property
    def base_model(self) -> str | None:
        """The base model every row agrees on (None if unknown or if rows disagree)."""
        models = {row.sae.model for row in self.rows if row.sae and row.sae.model}
        return models.pop() if len(models) == 1 else None

    def rows_of(self, file: str) -> list[ResolvedRow]:
        """The rows read from one file."""
        return [resolved for resolved in self.rows if resolved.row.file == file]

    def summary(self, file: str) -> str:
        """One line: `steers/dog.csv: 1 row valid; 2 checks unchecked (offline)`."""
        unreadable = sum(problem.startswith(f"{file}:") for problem in self.read_problems)
        rows = self.rows_of(file)
        if unreadable and not rows:
            return f"{file}: not readable: {_count(unreadable, 'problem')}"
        unshown = f"{_count(unreadable, 'problem')} in rows not shown; " if unreadable else ""
        return f"{file}: {unshown}{self._verdict(rows)}"

    def _verdict(self, rows: list[ResolvedRow]) -> str:
        """How the rows that were read fared: `1 row valid; 2 checks unchecked (offline)`."""
        checks = [check for resolved in rows for check in resolved.checks]
        errors = sum(check.status is CheckOutcome.ERROR for check in checks)
        unchecked = sum(check.status is CheckOutcome.UNCHECKED for check in checks)
        bad = sum(resolved.status is CheckOutcome.ERROR for resolved in rows)
        verdict = (
            f"{_count(len(rows), 'row')} valid"
            if not errors
            else f"{bad} of {_count(len(rows), 'row')} invalid ({_count(errors, 'error')})"
        )
        if unchecked:
            offline = "" if self.online else " (offline)"
            verdict += f"; {_count(unchecked, 'check')} unchecked{offline}"
        return verdict

    def to_dict(self) -> dict[str, Any]:
        """The resolution as JSON-able data (schema `saeval.resolution/1`)."""
        return {
            "schema": SCHEMA,
            "ok": self.ok,
            "online": self.online,
            "model": self.model,
            "base_model": self.base_model,
            "files": [{"path": f, "summary": self.summary(f)} for f in self.files],
            "rows": [resolved.to_dict() for resolved in self.rows],
            "problems": self.problems,
            "unchecked": self.unchecked,
        }


def _vector_dict(row: VectorRow, facts: VectorFacts | None) -> dict[str, Any]:
    """A vector row's vector as JSON-able data (width and norm None when unreadable)."""
    return {
        "path": row.vector,
        "entry": row.entry,
        "head_index": row.head_index,
        "width": facts.width if facts else None,
        "norm": facts.norm if facts else None,
        "dtype": facts.dtype if facts else None,
    }


def _count(n: int, noun: str) -> str:
    """`1 row`, `2 rows`."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def validate(
    paths: Sequence[str | Path], *, model: str | None = None, online: bool = False
) -> Resolution:
    """Read every steer file (collecting all reader problems), resolve the rows that read, and
    look up the SAEs of rows that did not: every problem of a row in one round."""
    files: list[SteerFile] = []
    read_problems: list[str] = []
    probes: list[SteerRow] = []
    for path in paths:
        found = read_steer_rows(path)
        read_problems.extend(found.problems)
        probes.extend(found.probes)
        if found.file is not None and found.file.rows:
            files.append(found.file)
    resolution = resolve(files, model=model, online=online)
    read_problems.extend(_probe_problems(probes, online))
    shown = tuple(str(path) for path in paths)
    return replace(resolution, files=shown, read_problems=tuple(read_problems))


def _probe_problems(probes: Sequence[SteerRow], online: bool) -> list[str]:
    """The SAE, latent range and hook errors of rows whose other cells have problems."""
    resolver = _Resolver(online)
    found = []
    for row in probes:
        sae, sae_check = resolver.locate(row)
        checks = [sae_check]
        if sae is not None:
            checks.append(hook_check(row, sae, resolver.model(sae.model) if sae.model else None))
            if row.latent_idx >= 0:
                checks.append(latent_check(row, sae, online))
        found += [str(c) for c in checks if c.status is CheckOutcome.ERROR]
    return found


def resolve(
    steer_files: Iterable[SteerFile], *, model: str | None = None, online: bool = False
) -> Resolution:
    """Resolve every row of the steer files (as one steer set) against the catalog, offline."""
    files = list(steer_files)
    rows = [row for steer_file in files for row in steer_file.rows]
    sae_rows = [row for row in rows if isinstance(row, SteerRow)]
    target = model_info(model) if model else None
    resolver = _Resolver(online)
    located = {id(row): resolver.locate(row) for row in sae_rows}
    first_known = first_model(sae_rows, [located[id(row)] for row in sae_rows])
    vector_model = target or (resolver.model(first_known[1]) if first_known else None)
    seen: dict[tuple[str, ...], SteerRow] = {}
    resolved: list[ResolvedRow] = []
    for row, notes in zip(rows, row_formulas.notes(rows), strict=True):
        if isinstance(row, VectorRow):
            facts, vector_checks = _vector_checks(row, vector_model)
            resolved.append(ResolvedRow(row, None, vector_checks, facts, notes))
            continue
        sae, sae_check = located[id(row)]
        checks = [sae_check]
        if sae is not None:
            sae_model = resolver.model(sae.model) if sae.model else None
            checks += [
                latent_check(row, sae, online),
                model_check(row, sae, sae_model, target, first_known),
                hook_check(row, sae, target or sae_model),
            ]
        checks.append(duplicate_check(row, sae, seen))
        resolved.append(ResolvedRow(row, sae, tuple(checks), notes=notes))
    shown = tuple(str(steer_file.path) for steer_file in files)
    return Resolution(shown, tuple(resolved), model, online)


def _vector_checks(
    row: VectorRow, model: ModelInfo | None
) -> tuple[VectorFacts | None, tuple[Check, ...]]:
    """A vector row's vector (readable, 1-D, finite, the model's width) and its hook."""
    try:
        facts = vector_facts(Path(row.vector), row.entry)
    except ResolutionError as error:
        vector = check("vector", row, "latent_idx", CheckOutcome.ERROR, error.message)
        return None, (vector, hook_check(row, None, model))
    vector = check("vector", row, "latent_idx", CheckOutcome.OK, facts.describe())
    full_width = row.head_index is None and not row.hook.endswith(".attn.hook_z")
    if model is not None and model.d_model and full_width and facts.width != model.d_model:
        message = f"{facts.width} wide, but {model.model_id} has hidden_size={model.d_model}"
        vector = check("vector", row, "latent_idx", CheckOutcome.ERROR, message)
    return facts, (vector, hook_check(row, None, model))


class _Resolver:
    """Locates SAEs and models once each per resolution (a config is read or fetched once)."""

    def __init__(self, online: bool) -> None:
        self.online = online
        self._saes: dict[
            tuple[str, str, str], tuple[ResolvedSae | None, CheckOutcome, str, str]
        ] = {}
        self._models: dict[str, ModelInfo] = {}

    def locate(self, row: SteerRow) -> tuple[ResolvedSae | None, Check]:
        """The row's SAE and the `sae` check."""
        key = (row.loader, *row.sae_key)
        if key not in self._saes:
            if row.loader == "sparsify":
                self._saes[key] = self._locate_sparsify(*row.sae_key)
            else:
                self._saes[key] = self._locate(row.sae_release, row.sae_id)
        sae, status, column, message = self._saes[key]
        return sae, check("sae", row, column, status, message)

    def _locate(
        self, release: str, sae_id: str
    ) -> tuple[ResolvedSae | None, CheckOutcome, str, str]:
        """(SAE, status, column to blame, message) for one (sae_release, sae_id)."""
        try:
            ref = catalog.locate(release, sae_id)
            info = sae_facts(ref, online=self.online)
        except UnknownSaeId as error:
            return None, CheckOutcome.ERROR, "sae_id", error.message
        except ResolutionError as error:
            return None, CheckOutcome.ERROR, "sae_release", error.message
        sae = resolved_sae(ref, info)
        if ref.kind != "hf_repo" or info.source:
            return sae, CheckOutcome.OK, "sae_release", _found(ref)
        why = (
            "the hub could not be reached"
            if self.online
            else f"offline and its {SAE_CFG_FILE} is not in the Hugging Face cache "
            "(--online fetches it)"
        )
        message = f"Hugging Face repo {ref.repo_id!r} (folder {sae_id!r}) not checked: {why}"
        return sae, CheckOutcome.UNCHECKED, "sae_release", message

    def _locate_sparsify(
        self, sparse_model: str, hookpoint: str
    ) -> tuple[ResolvedSae | None, CheckOutcome, str, str]:
        """(coder, status, column to blame, message) for one sparsify (sparse_model, hookpoint)."""
        try:
            sae = sparsify_sae(sparse_model, hookpoint, online=self.online)
        except ResolutionError as error:
            return None, CheckOutcome.ERROR, "sae_release", error.message
        if sae.source:
            return sae, CheckOutcome.OK, "sae_release", f"sparsify coder {sae.source}"
        why = "the hub could not be reached" if self.online else "offline (--online fetches it)"
        message = f"sparsify coder {sparse_model} {hookpoint!r} not checked: its config is {why}"
        return sae, CheckOutcome.UNCHECKED, "sae_release", message

    def model(self, model: str) -> ModelInfo:
        """What is known about a base model (cached per resolution)."""
        if model not in self._models:
            self._models[model] = model_info(model)
        return self._models[model]


def _found(ref: SaeRef) -> str:
    """The message of a passed `sae` check."""
    if ref.kind == "local":
        return f"local SAE folder {ref.path}"
    if ref.kind == "hf_repo":
        return f"Hugging Face repo {ref.repo_id} folder {ref.sae_id!r}"
    return f"release {ref.release} has SAE {ref.sae_id!r}"
