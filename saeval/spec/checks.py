"""The checks ``saeval validate`` makes of one resolved steer row, each ok, error or unchecked.

- ``sae``: the release (or local SAE folder, or Hugging Face repo id) and its ``sae_id`` exist;
- ``latent_idx``: the latent index is below the SAE's width ``d_sae``;
- ``model``: the SAE's base model is the one every other row steers, and ``--model`` if given;
- ``hook``: the hook point (the row's ``hook``, else the SAE's own) maps onto a module of the
  base model's architecture (``saeval.spec.hook_points.check_hook_name``);
- ``duplicate``: no other row, in any of the files, does the same thing to the same latent.

A check that needs what is not known offline is ``unchecked``, with a message saying what is
missing: it is never reported as passed. Messages read ``file:line column: ...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from saeval.errors import SteeringError
from saeval.spec.hook_points import check_hook_name, is_module_name
from saeval.spec.models import ModelInfo
from saeval.spec.sae_facts import ResolvedSae
from saeval.spec.steer_file import AnyRow, SteerRow, duplicate_message, steered_kind

_HOOK_Z = ".attn.hook_z"  # the one hook kind whose width is n_heads * d_head, not d_model


class CheckOutcome(StrEnum):
    """The outcome of one check."""

    OK = "ok"
    ERROR = "error"
    UNCHECKED = "unchecked"


@dataclass(frozen=True)
class Check:
    """One check of one row: its name, outcome, and where and why."""

    name: str
    status: CheckOutcome
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


def check(name: str, row: AnyRow, field: str, status: CheckOutcome, message: str) -> Check:
    """A check located at the cell that holds one of the row's fields."""
    return Check(name, status, row.where(row.column(field)), message)


def latent_check(row: SteerRow, sae: ResolvedSae, online: bool) -> Check:
    """latent_idx < d_sae."""
    if sae.d_sae is None:
        why = (
            "its config could not be fetched"
            if online
            else "unknown offline; --online fetches the SAE's config"
        )
        message = f"latent {row.latent_idx} not checked: the SAE's d_sae is {why}"
        return check("latent_idx", row, "latent_idx", CheckOutcome.UNCHECKED, message)
    if row.latent_idx < sae.d_sae:
        message = f"latent {row.latent_idx} < d_sae {sae.d_sae}"
        return check("latent_idx", row, "latent_idx", CheckOutcome.OK, message)
    message = (
        f"latent {row.latent_idx} is out of range: {sae.label} has "
        f"d_sae={sae.d_sae} latents (valid: 0-{sae.d_sae - 1})"
    )
    return check("latent_idx", row, "latent_idx", CheckOutcome.ERROR, message)


def first_model(
    rows: Sequence[SteerRow], located: Sequence[tuple[ResolvedSae | None, Check]]
) -> tuple[SteerRow, str] | None:
    """The first row whose base model is known, and that model: every row must match it."""
    for row, (sae, _) in zip(rows, located, strict=True):
        if sae is not None and sae.model:
            return row, sae.model
    return None


def model_check(
    row: SteerRow,
    sae: ResolvedSae,
    sae_model: ModelInfo | None,
    target: ModelInfo | None,
    reference: tuple[SteerRow, str] | None,
) -> Check:
    """The SAE's base model is the one all rows (and --model, if given) steer."""
    if sae.model is None or sae_model is None:
        message = "base model not checked: the SAE's config, which names it, is unknown offline"
        return check("model", row, "sae_release", CheckOutcome.UNCHECKED, message)
    if target is not None:
        return _target_check(row, sae, sae_model, target)
    assert reference is not None  # this row's model is known, so some row's is
    first, model = reference
    if sae.model.lower() == model.lower():
        return check("model", row, "sae_release", CheckOutcome.OK, f"SAE for {sae.model}")
    message = (
        f"the SAE is for {sae.model}, but {first.where()} steers {model}; "
        "every row must steer the same base model"
    )
    return check("model", row, "sae_release", CheckOutcome.ERROR, message)


def _target_check(
    row: SteerRow, sae: ResolvedSae, sae_model: ModelInfo, target: ModelInfo
) -> Check:
    """The SAE's base model against --model (a Hugging Face id, alias or local folder)."""
    model = sae_model.model_id
    shape = _shape_problem(sae, target)
    if shape:
        return check("model", row, "sae_release", CheckOutcome.ERROR, shape)
    if not target.local:
        if model.lower() == target.model_id.lower():
            return check("model", row, "sae_release", CheckOutcome.OK, f"SAE for {model}")
        message = f"the SAE is for {model}, not --model {target.model_id}"
        return check("model", row, "sae_release", CheckOutcome.ERROR, message)
    expected = sae_model.model_type
    if target.model_type and expected and target.model_type != expected:
        message = (
            f"the SAE is for {model} ({expected}), but --model {target.model_id} is a "
            f"{target.model_type} model"
        )
        return check("model", row, "sae_release", CheckOutcome.ERROR, message)
    if _same_folder(model, target.model_id):
        return check("model", row, "sae_release", CheckOutcome.OK, f"SAE for {model}")
    message = (
        f"not checked: the SAE names base model {model}; whether local model folder "
        f"{target.model_id} holds it cannot be told from its config (architecture and sizes "
        "agree where known)"
    )
    return check("model", row, "sae_release", CheckOutcome.UNCHECKED, message)


def _same_folder(model: str, folder: str) -> bool:
    """Whether the SAE's base model names the local model folder itself."""
    return Path(model).expanduser().resolve() == Path(folder).expanduser().resolve()


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


def hook_check(row: AnyRow, sae: ResolvedSae | None, model: ModelInfo | None) -> Check:
    """The hook point maps onto a module of the base model's architecture."""
    hook = row.hook or (sae.hook_name if sae else None)
    column = "hook" if row.hook else "sae_id"
    if hook is None:
        message = "hook point not checked: the SAE's hook_name is unknown offline"
        return check("hook", row, column, CheckOutcome.UNCHECKED, message)
    if model is None or model.model_type is None:
        name = model.model_id if model else "the base model"
        message = f"{hook} not checked: the architecture of {name} is unknown offline"
        return check("hook", row, column, CheckOutcome.UNCHECKED, message)
    if is_module_name(hook):
        message = f"{hook} is a Hugging Face module name: checked when the model loads"
        return check("hook", row, column, CheckOutcome.UNCHECKED, message)
    try:
        check_hook_name(model.model_type, hook, model.n_layers)
    except SteeringError as error:
        return check("hook", row, column, CheckOutcome.ERROR, error.message)
    # The SAE's own hook exists on its own model (it was trained there); the model check
    # reports a different --model.
    if model.n_layers is not None or not row.hook:
        return check("hook", row, column, CheckOutcome.OK, f"{hook} maps onto {model.model_type}")
    message = (
        f"{hook} maps onto {model.model_type}; its layer not checked: the number of layers of "
        f"{model.model_id} is unknown offline"
    )
    return check("hook", row, column, CheckOutcome.UNCHECKED, message)


def duplicate_check(
    row: SteerRow, sae: ResolvedSae | None, seen: dict[tuple[str, ...], SteerRow]
) -> Check:
    """No earlier row (in any file) adds, or clamps, the same latent of the same SAE."""
    identity = (sae.kind, sae.path, sae.sae_id) if sae else (row.sae_release, row.sae_id)
    first = seen.setdefault((*identity, str(row.latent_idx), steered_kind(row)), row)
    if first is row:
        return check("duplicate", row, "latent_idx", CheckOutcome.OK, "no other row steers it")
    label = sae.label if sae else f"{row.sae_release} {row.sae_id!r}"
    message = duplicate_message(row, label, f"at {first.where()}")
    return check("duplicate", row, "latent_idx", CheckOutcome.ERROR, message)
