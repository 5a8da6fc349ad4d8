"""Resolve steer rows against the SAE catalog before any model or SAE is loaded.

Every row gets five checks, each ``ok``, ``error`` or ``unchecked``:

- ``sae``: the release (or local SAE folder, or Hugging Face repo id) and its ``sae_id`` exist;
- ``latent_idx``: the latent index is below the SAE's width ``d_sae``;
- ``model``: the SAE's base model is the one every other row steers, and ``--model`` if given;
- ``hook``: the hook point (the row's ``hook``, else the SAE's own) maps onto a module of the
  base model's architecture (``saeval.hooks.check_hook_name``);
- ``duplicate``: no other row, in any of the files, does the same thing to the same latent.

A check that needs what is not known offline (the width of an SAE whose config is neither
derivable from its id nor cached, a local model folder's identity, ...) is ``unchecked``, with a
message saying what is missing: it is never reported as passed. Messages read
``file:line column: ...`` and name what would be valid.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from saeval import catalog
from saeval.catalog import ModelInfo, SaeRef, UnknownSaeId
from saeval.errors import ResolutionError, SteerFileError, SteeringError
from saeval.hooks import check_hook_name, is_module_name
from saeval.steer_file import Action, SteerFile, SteerRow, read_steer_file

SCHEMA = "saeval.resolution/1"
# Column names of the dialects whose columns differ from the seed's, for messages.
_HOOK_Z = ".attn.hook_z"  # the one hook kind whose width is n_heads * d_head, not d_model


class Status(StrEnum):
    """The outcome of one check."""

    OK = "ok"
    ERROR = "error"
    UNCHECKED = "unchecked"


@dataclass(frozen=True)
class Check:
    """One check of one row: its name, outcome, and where and why."""

    name: str
    status: Status
    where: str  # "steers/dog.csv:2 latent_idx"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        """The check as JSON-able data."""
        return {
            "name": self.name,
            "status": self.status.value,
            "where": self.where,
            "message": self.message,
        }


@dataclass(frozen=True)
class ResolvedSae:
    """One SAE as resolved offline: where it lives and what is known about it."""

    kind: str  # "release" | "hf_repo" | "local"
    release: str
    sae_id: str
    repo_id: str | None
    path: str  # folder inside the repo, or the local SAE folder
    model: str | None  # Hugging Face id of the base model (None: unknown)
    hook_name: str | None  # the SAE's own hook point
    d_sae: int | None
    d_in: int | None
    neuronpedia_id: str | None
    source: str  # where d_sae / hook_name came from ("" when nowhere)

    def to_dict(self) -> dict[str, Any]:
        """The SAE as JSON-able data."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @property
    def label(self) -> str:
        """How messages name the SAE: `release 'sae_id'`, or the local folder."""
        return self.release if not self.sae_id else f"{self.release} {self.sae_id!r}"


@dataclass(frozen=True)
class ResolvedRow:
    """One steer row with its SAE (None when it could not be found) and its checks."""

    row: SteerRow
    sae: ResolvedSae | None
    checks: tuple[Check, ...]

    @property
    def hook_name(self) -> str | None:
        """The hook point the row steers: its own `hook`, else the SAE's."""
        return self.row.hook or (self.sae.hook_name if self.sae else None)

    @property
    def neuronpedia_url(self) -> str | None:
        """The latent's Neuronpedia page, when the SAE has a Neuronpedia id."""
        if self.sae is None or not self.sae.neuronpedia_id:
            return None
        return catalog.neuronpedia_url(self.sae.neuronpedia_id, self.row.latent_idx)

    @property
    def status(self) -> Status:
        """error if any check failed, else unchecked if any was not checked, else ok."""
        statuses = {check.status for check in self.checks}
        return next(s for s in (Status.ERROR, Status.UNCHECKED, Status.OK) if s in statuses)

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-able data."""
        row = self.row
        return {
            "file": row.file,
            "line": row.line,
            "latent_idx": row.latent_idx,
            "coefficient": row.coefficient,
            "action": row.action.value,
            "description": row.description,
            "hook_name": self.hook_name,
            "sae": self.sae.to_dict() if self.sae else None,
            "neuronpedia_url": self.neuronpedia_url,
            "status": self.status.value,
            "checks": [check.to_dict() for check in self.checks],
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
        errors = [str(c) for r in self.rows for c in r.checks if c.status is Status.ERROR]
        return [*self.read_problems, *errors]

    @property
    def unchecked(self) -> list[str]:
        """Every check that could not be made, as `file:line column: message`."""
        return [str(c) for r in self.rows for c in r.checks if c.status is Status.UNCHECKED]

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
        if unreadable:
            return f"{file}: not readable: {_count(unreadable, 'problem')}"
        rows = self.rows_of(file)
        checks = [check for resolved in rows for check in resolved.checks]
        errors = sum(check.status is Status.ERROR for check in checks)
        unchecked = sum(check.status is Status.UNCHECKED for check in checks)
        bad = sum(resolved.status is Status.ERROR for resolved in rows)
        verdict = (
            f"{_count(len(rows), 'row')} valid"
            if not errors
            else f"{bad} of {_count(len(rows), 'row')} invalid ({_count(errors, 'error')})"
        )
        if unchecked:
            offline = "" if self.online else " (offline)"
            verdict += f"; {_count(unchecked, 'check')} unchecked{offline}"
        return f"{file}: {verdict}"

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


def _count(n: int, noun: str) -> str:
    """`1 row`, `2 rows`."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def validate(
    paths: Sequence[str | Path], *, model: str | None = None, online: bool = False
) -> Resolution:
    """Read every steer file (collecting all reader problems) and resolve the readable ones."""
    files: list[SteerFile] = []
    read_problems: list[str] = []
    for path in paths:
        try:
            files.append(read_steer_file(path))
        except SteerFileError as error:
            read_problems.extend(error.problems)
    resolution = resolve(files, model=model, online=online)
    shown = tuple(str(path) for path in paths)
    return replace(resolution, files=shown, read_problems=tuple(read_problems))


def resolve(
    steer_files: Iterable[SteerFile], *, model: str | None = None, online: bool = False
) -> Resolution:
    """Resolve every row of the steer files (as one steer set) against the catalog, offline."""
    files = list(steer_files)
    rows = [row for steer_file in files for row in steer_file.rows]
    target = catalog.model_info(model) if model else None
    resolver = _Resolver(online)
    located = [resolver.locate(row) for row in rows]
    reference = _reference(rows, located)
    seen: dict[tuple[str, ...], SteerRow] = {}
    resolved: list[ResolvedRow] = []
    for row, (sae, sae_check) in zip(rows, located, strict=True):
        checks = [sae_check]
        if sae is not None:
            sae_model = resolver.model(sae.model) if sae.model else None
            checks += [
                _latent_check(row, sae, online),
                _model_check(row, sae, sae_model, target, reference),
                _hook_check(row, sae, target or sae_model),
            ]
        checks.append(_duplicate_check(row, sae, seen))
        resolved.append(ResolvedRow(row, sae, tuple(checks)))
    shown = tuple(str(steer_file.path) for steer_file in files)
    return Resolution(shown, tuple(resolved), model, online)


class _Resolver:
    """Locates SAEs and models once each per resolution (a config is read or fetched once)."""

    def __init__(self, online: bool) -> None:
        self.online = online
        self._saes: dict[tuple[str, str], tuple[ResolvedSae | None, Status, str, str]] = {}
        self._models: dict[str, ModelInfo] = {}

    def locate(self, row: SteerRow) -> tuple[ResolvedSae | None, Check]:
        """The row's SAE and the `sae` check."""
        key = (row.sae_release, row.sae_id)
        if key not in self._saes:
            self._saes[key] = self._locate(row.sae_release, row.sae_id)
        sae, status, column, message = self._saes[key]
        return sae, _check("sae", row, column, status, message)

    def _locate(self, release: str, sae_id: str) -> tuple[ResolvedSae | None, Status, str, str]:
        """(SAE, status, column to blame, message) for one (sae_release, sae_id)."""
        try:
            ref = catalog.locate(release, sae_id)
            info = catalog.sae_info(ref, online=self.online)
        except UnknownSaeId as error:
            return None, Status.ERROR, "sae_id", error.message
        except ResolutionError as error:
            return None, Status.ERROR, "sae_release", error.message
        sae = _resolved_sae(ref, info)
        if ref.kind != "hf_repo" or info.source:
            return sae, Status.OK, "sae_release", _found(ref)
        why = (
            "the hub could not be reached"
            if self.online
            else f"offline and its {catalog.SAE_CFG_FILE} is not in the Hugging Face cache "
            "(--online fetches it)"
        )
        message = f"Hugging Face repo {ref.repo_id!r} (folder {sae_id!r}) not checked: {why}"
        return sae, Status.UNCHECKED, "sae_release", message

    def model(self, model: str) -> ModelInfo:
        """What is known about a base model (cached per resolution)."""
        if model not in self._models:
            self._models[model] = catalog.model_info(model)
        return self._models[model]


def _resolved_sae(ref: SaeRef, info: catalog.SaeInfo) -> ResolvedSae:
    """The ResolvedSae of a located SAE."""
    model = info.model_name or (ref.catalog.model if ref.catalog else None)
    return ResolvedSae(
        kind=ref.kind,
        release=ref.release,
        sae_id=ref.sae_id,
        repo_id=ref.repo_id,
        path=ref.path,
        model=catalog.hf_model_id(model) if model else None,
        hook_name=info.hook_name,
        d_sae=info.d_sae,
        d_in=info.d_in,
        neuronpedia_id=info.neuronpedia_id,
        source=info.source,
    )


def _found(ref: SaeRef) -> str:
    """The message of a passed `sae` check."""
    if ref.kind == "local":
        return f"local SAE folder {ref.path}"
    if ref.kind == "hf_repo":
        return f"Hugging Face repo {ref.repo_id} folder {ref.sae_id!r}"
    return f"release {ref.release} has SAE {ref.sae_id!r}"


def _check(name: str, row: SteerRow, field: str, status: Status, message: str) -> Check:
    """A check located at the cell that holds one of the row's fields."""
    return Check(name, status, row.where(row.column(field)), message)


def _latent_check(row: SteerRow, sae: ResolvedSae, online: bool) -> Check:
    """latent_idx < d_sae."""
    if sae.d_sae is None:
        why = (
            "its config could not be fetched"
            if online
            else "unknown offline; --online fetches the SAE's config"
        )
        message = f"latent {row.latent_idx} not checked: the SAE's d_sae is {why}"
        return _check("latent_idx", row, "latent_idx", Status.UNCHECKED, message)
    if row.latent_idx < sae.d_sae:
        message = f"latent {row.latent_idx} < d_sae {sae.d_sae}"
        return _check("latent_idx", row, "latent_idx", Status.OK, message)
    message = (
        f"latent {row.latent_idx} is out of range: {sae.label} has "
        f"d_sae={sae.d_sae} latents (valid: 0-{sae.d_sae - 1})"
    )
    return _check("latent_idx", row, "latent_idx", Status.ERROR, message)


def _reference(
    rows: Sequence[SteerRow], located: Sequence[tuple[ResolvedSae | None, Check]]
) -> tuple[SteerRow, str] | None:
    """The first row whose base model is known, and that model: every row must match it."""
    for row, (sae, _) in zip(rows, located, strict=True):
        if sae is not None and sae.model:
            return row, sae.model
    return None


def _model_check(
    row: SteerRow,
    sae: ResolvedSae,
    sae_model: ModelInfo | None,
    target: ModelInfo | None,
    reference: tuple[SteerRow, str] | None,
) -> Check:
    """The SAE's base model is the one all rows (and --model, if given) steer."""
    if sae.model is None or sae_model is None:
        message = "base model not checked: the SAE's config, which names it, is unknown offline"
        return _check("model", row, "sae_release", Status.UNCHECKED, message)
    if target is not None:
        return _target_check(row, sae, sae_model, target)
    assert reference is not None  # this row's model is known, so some row's is
    first, model = reference
    if sae.model.lower() == model.lower():
        return _check("model", row, "sae_release", Status.OK, f"SAE for {sae.model}")
    message = (
        f"the SAE is for {sae.model}, but {first.where()} steers {model}; "
        "every row must steer the same base model"
    )
    return _check("model", row, "sae_release", Status.ERROR, message)


def _target_check(
    row: SteerRow, sae: ResolvedSae, sae_model: ModelInfo, target: ModelInfo
) -> Check:
    """The SAE's base model against --model (a Hugging Face id, alias or local folder)."""
    model = sae_model.model_id
    shape = _shape_problem(sae, target)
    if shape:
        return _check("model", row, "sae_release", Status.ERROR, shape)
    if not target.local:
        if model.lower() == target.model_id.lower():
            return _check("model", row, "sae_release", Status.OK, f"SAE for {model}")
        message = f"the SAE is for {model}, not --model {target.model_id}"
        return _check("model", row, "sae_release", Status.ERROR, message)
    expected = sae_model.model_type
    if target.model_type and expected and target.model_type != expected:
        message = (
            f"the SAE is for {model} ({expected}), but --model {target.model_id} is a "
            f"{target.model_type} model"
        )
        return _check("model", row, "sae_release", Status.ERROR, message)
    message = (
        f"not checked: whether local model folder {target.model_id} is {model} "
        "cannot be told from its config (architecture and sizes agree where known)"
    )
    return _check("model", row, "sae_release", Status.UNCHECKED, message)


def _shape_problem(sae: ResolvedSae, target: ModelInfo) -> str | None:
    """Why the SAE's d_in cannot fit the model's width at its hook, if it cannot."""
    hook = sae.hook_name or ""
    if sae.d_in is None or target.d_model is None or hook.endswith(_HOOK_Z):
        return None
    if sae.d_in == target.d_model:
        return None
    return (
        f"the SAE's d_in={sae.d_in} does not match hidden_size={target.d_model} of "
        f"--model {target.model_id}"
    )


def _hook_check(row: SteerRow, sae: ResolvedSae, model: ModelInfo | None) -> Check:
    """The hook point maps onto a module of the base model's architecture."""
    hook = row.hook or sae.hook_name
    column = "hook" if row.hook else "sae_id"
    if hook is None:
        message = "hook point not checked: the SAE's hook_name is unknown offline"
        return _check("hook", row, column, Status.UNCHECKED, message)
    if model is None or model.model_type is None:
        name = model.model_id if model else "the base model"
        message = f"{hook} not checked: the architecture of {name} is unknown offline"
        return _check("hook", row, column, Status.UNCHECKED, message)
    if is_module_name(hook):
        message = f"{hook} is a Hugging Face module name: checked when the model loads"
        return _check("hook", row, column, Status.UNCHECKED, message)
    try:
        check_hook_name(model.model_type, hook, model.n_layers)
    except SteeringError as error:
        return _check("hook", row, column, Status.ERROR, error.message)
    # The SAE's own hook exists on its own model (it was trained there); the model check
    # reports a different --model.
    if model.n_layers is not None or not row.hook:
        return _check("hook", row, column, Status.OK, f"{hook} maps onto {model.model_type}")
    message = (
        f"{hook} maps onto {model.model_type}; its layer not checked: the number of layers of "
        f"{model.model_id} is unknown offline"
    )
    return _check("hook", row, column, Status.UNCHECKED, message)


def _duplicate_check(
    row: SteerRow, sae: ResolvedSae | None, seen: dict[tuple[str, ...], SteerRow]
) -> Check:
    """No earlier row (in any file) adds, or clamps, the same latent of the same SAE."""
    kind = "added" if row.action is Action.ADD else "clamped"
    identity = (sae.kind, sae.path, sae.sae_id) if sae else (row.sae_release, row.sae_id)
    first = seen.setdefault((*identity, str(row.latent_idx), kind), row)
    if first is row:
        return _check("duplicate", row, "latent_idx", Status.OK, "no other row steers it")
    fix = (
        "merge the two rows (sum their coefficients)"
        if kind == "added"
        else "a latent holds one value: keep one of the two rows"
    )
    label = sae.label if sae else f"{row.sae_release} {row.sae_id!r}"
    message = f"latent {row.latent_idx} of {label} is already {kind} at {first.where()}; {fix}"
    return _check("duplicate", row, "latent_idx", Status.ERROR, message)
