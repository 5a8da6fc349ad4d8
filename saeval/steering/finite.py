"""NaN and infinity stop the configuration that meets them: no score is computed from them.

- When a plan is built: every SAE parameter a row's arithmetic reads (``parameters_read``: an
  add row's ``W_dec[i]``; a clamp's encoder parameters of latent ``i`` and ``b_dec``; the whole
  SAE for ``add_through_sae`` and for TopK-style clamps, whose latents compete); each hook
  point's summed add vector (``check_sae_rows``, ``check_finite``).
- When a strength is first used: ``scale * add vector`` in the activation's dtype.
- At every steered hook call: the edited activation (``finite_edit``), one reduction per call.
- At every model call of the lm-eval model: the logits, steered or not (``check_logits``).

Each error names the hook point and the first steer row that feeds it; the runner adds the
configuration and task. torch is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from saeval.errors import SteeringError
from saeval.spec.dialects import CLAMPS, Action
from saeval.spec.steer_rows import VectorRow

if TYPE_CHECKING:
    from sae_lens import SAE
    from torch import Tensor

    from saeval.spec.steer_file import AnyRow, SteerRow
    from saeval.steering.hooks import Edit
    from saeval.steering.plan import LoadedSae

_WEIGHTS_HINT = "the SAE's weights are damaged: save or download the SAE again"
_OVERFLOW_HINT = (
    "the steered activation overflows the model's dtype: use a smaller --scale or coefficient"
)


def check_finite(tensor: Tensor, what: str, *, where: str = "", hint: str | None = None) -> None:
    """Raise SteeringError when ``tensor`` holds a NaN or an infinity: ``where: non-finite what
    (3 NaN of 64 values)``."""
    import torch

    finite = torch.isfinite(tensor)
    if not bool(finite.all()):
        place = f"{where}: " if where else ""
        message = f"{place}non-finite {what} ({_census(tensor, finite)})"
        raise SteeringError(message, hint=hint)


def check_sae_rows(sae: SAE, info: LoadedSae, rows: Sequence[SteerRow]) -> None:
    """Every SAE parameter that ``rows``' arithmetic reads is finite (``parameters_read``); each
    is checked once, and an error names the first row that reads it."""
    state = sae.state_dict()
    label = info.release if not info.sae_id else f"{info.release} {info.sae_id!r}"
    checked: set[str] = set()
    for row in rows:
        where = row.where(row.column("latent_idx"))
        for name, tensor in parameters_read(state, row, info.architecture).items():
            if name not in checked:
                checked.add(name)
                check_finite(tensor, f"{name} of SAE {label}", where=where, hint=_WEIGHTS_HINT)


def parameters_read(
    state: dict[str, Tensor], row: SteerRow, architecture: str
) -> dict[str, Tensor]:
    """The SAE parameters ``row``'s arithmetic reads, by name (``W_dec[3]``, ``b_dec``):

    - ``add``: ``W_dec[i]``; ``project``: ``W_dec[i]`` and ``b_dec``;
    - a clamp of a sliceable SAE: ``W_dec[i]``, latent ``i``'s encoder parameters and ``b_dec``;
    - ``add_through_sae``, and a clamp of a TopK-style SAE (its latents compete): every
      parameter, since the whole SAE encodes (and, through the SAE, decodes) every latent.
    """
    from saeval.steering.clamp import COMPETING

    i = row.latent_idx
    if row.action is Action.ADD_THROUGH_SAE or (row.action in CLAMPS and architecture in COMPETING):
        return dict(state)
    parts = {f"W_dec[{i}]": state["W_dec"][i]}
    if row.action is Action.PROJECT and "b_dec" in state:
        parts["b_dec"] = state["b_dec"]
    elif row.action in CLAMPS:
        parts.update(_latent_parameters(state, i, int(state["W_dec"].shape[0])))
    return parts


def _latent_parameters(state: dict[str, Tensor], i: int, d_sae: int) -> dict[str, Tensor]:
    """The encoder parameters of latent ``i`` (what ``clamp.sliced_sae`` keeps) and ``b_dec``."""
    parts: dict[str, Tensor] = {}
    for name, tensor in state.items():
        if name == "W_enc":
            parts[f"W_enc[:, {i}]"] = tensor[:, i]
        elif name == "b_dec":
            parts[name] = tensor
        elif name != "W_dec" and tensor.dim() == 1 and tensor.shape[0] == d_sae:
            parts[f"{name}[{i}]"] = tensor[i]
    return parts


def check_scaled_add(vector: Tensor, scale: float, hook_name: str, rows: Sequence[AnyRow]) -> None:
    """``scale * add vector`` (in the activation's dtype) is finite."""
    dtype = str(vector.dtype).removeprefix("torch.")
    what = f"add vector at {hook_name} at scale {scale:g} in {dtype}"
    check_finite(vector, what, where=feeds(rows), hint=_OVERFLOW_HINT)


def finite_edit(edit: Edit, hook_name: str, rows: Sequence[AnyRow]) -> Edit:
    """``edit``, raising SteeringError when the activation it returns is not finite."""
    import torch

    def checked(h: Tensor) -> Tensor:
        edited = edit(h)
        if not bool(torch.isfinite(edited).all()):
            before = not bool(torch.isfinite(h).all())
            when = "before steering (the model produced it)" if before else "after steering"
            raise SteeringError(
                f"non-finite activation at {hook_name} {when} ({feeds(rows)})",
                hint="try --dtype float32" if before else _OVERFLOW_HINT,
            )
        return edited

    return checked


def check_logits(logits: Tensor, scale: float | None) -> None:
    """The logits of one model call are finite (``scale`` None: steering is off)."""
    how = "without steering" if scale is None else f"steered at scale {scale:g}"
    hint = "try --dtype float32" if scale is None else _OVERFLOW_HINT
    check_finite(logits, f"logits from the model {how}", hint=hint)


def feeds(rows: Sequence[AnyRow]) -> str:
    """The first steer row of a hook point, for messages: ``steer.csv:2 latent_idx 3 (add 8)``
    (a vector row: ``steer.csv:4 vector dog.npy (add 2)``)."""
    first = rows[0]
    what = (
        f"vector {first.vector}"
        if isinstance(first, VectorRow)
        else f"latent_idx {first.latent_idx}"
    )
    action = first.action
    does = str(action) if action == Action.ABLATE else f"{action} {first.coefficient:g}"
    more = len(rows) - 1
    extra = f" and {more} more row{'s' if more > 1 else ''}" if more else ""
    return f"{first.where()} {what} ({does}){extra}"


def _census(tensor: Tensor, finite: Tensor) -> str:
    """``3 NaN and 1 inf of 64 values``."""
    import torch

    nan = int(torch.isnan(tensor).sum())
    inf = int((~finite).sum()) - nan
    counts = [f"{count} {kind}" for count, kind in ((nan, "NaN"), (inf, "inf")) if count]
    return f"{' and '.join(counts)} of {tensor.numel()} values"
