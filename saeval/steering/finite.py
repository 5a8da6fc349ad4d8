"""NaN and infinity stop the configuration that meets them: no score is computed from them.

- When a plan is built: every SAE parameter a row's arithmetic reads (``parameters_read``: an
  add row's ``W_dec[i]``; a clamp's encoder parameters of latent ``i`` and ``b_dec``; the whole
  SAE for ``add_through_sae`` and for TopK-style clamps, whose latents compete); each hook
  point's summed add vector (``check_sae_rows``, ``check_finite``).
- When a strength is first used: ``scale * add vector`` in the activation's dtype.
- At every steered hook call: the edited activation (``finite_edit``).
- At every model call of the lm-eval model: the logits, steered or not (``check_logits``).

The checks made inside ``guarding()`` never stop the device: each ORs its verdict into a
boolean tensor on the activation's device (one per hook point, steer rows and device), and the
guard reads them all at once when it closes, once per batch, where the logits are read anyway.
Outside a guard a check reads its verdict at once. Each error names the hook point and the
first steer row that feeds it; the runner adds the configuration and task. torch is imported
inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import TYPE_CHECKING

from saeval.errors import SteeringError
from saeval.spec.dialects import CLAMPS, Action
from saeval.spec.steer_rows import VectorRow
from saeval.steering.sae_record import COMPETING, LoadedSae

if TYPE_CHECKING:
    from sae_lens import SAE
    from torch import Tensor

    from saeval.spec.steer_file import AnyRow, SteerRow
    from saeval.steering.hooks import Edit

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
    """``scale * add vector`` (in the activation's dtype) is finite (read when the guard closes;
    checked once per guard)."""
    dtype = str(vector.dtype).removeprefix("torch.")
    what = f"add vector at {hook_name} at scale {scale:g} in {dtype}"
    _deferred(vector, what, where=feeds(rows), hint=_OVERFLOW_HINT, key=("add", vector))


def finite_edit(edit: Edit, hook_name: str, rows: Sequence[AnyRow]) -> Edit:
    """``edit``, raising SteeringError when the activation it returns is not finite (when the
    guard closes; at once outside a guard)."""
    import torch

    def before() -> None:
        raise SteeringError(
            f"non-finite activation at {hook_name} before steering (the model produced it) "
            f"({feeds(rows)})",
            hint="try --dtype float32",
        )

    def after() -> None:
        raise SteeringError(
            f"non-finite activation at {hook_name} after steering ({feeds(rows)})",
            hint=_OVERFLOW_HINT,
        )

    def checked(h: Tensor) -> Tensor:
        edited = edit(h)
        broken = ~torch.isfinite(edited).all()
        with _guard() as guard:  # the model's own NaN first: it explains the steered one
            guard.flag((checked, h.device, 0), broken & ~torch.isfinite(h).all(), before)
            guard.flag((checked, h.device, 1), broken, after)
        return edited

    return checked


def check_logits(logits: Tensor, scale: float | None) -> None:
    """The logits of one model call are finite (``scale`` None: steering is off); read when
    the guard closes (at once outside a guard)."""
    how = "without steering" if scale is None else f"steered at scale {scale:g}"
    hint = "try --dtype float32" if scale is None else _OVERFLOW_HINT
    _deferred(logits, f"logits from the model {how}", hint=hint)


class FiniteGuard:
    """Device-side verdicts of the finite checks made while it is open, read by ``check``."""

    def __init__(self) -> None:
        self._flags: dict[Hashable, tuple[Tensor, Callable[[], None]]] = {}

    def flag(self, key: Hashable, broken: Tensor, fail: Callable[[], None]) -> None:
        """OR ``broken`` (a 0-dim bool tensor) into the flag of ``key`` on its device, without
        reading it; ``fail`` raises the error that ``check`` raises when the flag is set."""
        import torch

        held = self._flags.get(key)
        if held is None:
            self._flags[key] = (broken.clone(), fail)
        else:
            torch.logical_or(held[0], broken, out=held[0])

    def holds(self, key: Hashable) -> bool:
        """Whether a check of ``key`` was made since the guard was last read."""
        return key in self._flags

    def check(self) -> None:
        """Read every flag (one read per device) and raise the error of the first set one, in
        the order the checks were first made."""
        import torch

        entries = list(self._flags.values())
        self._flags.clear()
        by_device: dict[torch.device, list[int]] = {}
        for index, (flag, _) in enumerate(entries):
            by_device.setdefault(flag.device, []).append(index)
        broken: set[int] = set()
        for indices in by_device.values():
            flags = torch.stack([entries[i][0] for i in indices])
            if bool(flags.any()):  # the one read of this device; which flags only on failure
                broken.update(i for i, bad in zip(indices, flags.tolist(), strict=True) if bad)
        for index in sorted(broken):
            entries[index][1]()


_GUARD: ContextVar[FiniteGuard | None] = ContextVar("saeval_finite_guard", default=None)


@contextmanager
def guarding() -> Iterator[FiniteGuard]:
    """Collect the finite checks made inside on the device and read them once on leaving; a
    body that fails with a check's flag set fails with that check's error. Nested guards
    leave the reading to the outermost."""
    outer = _GUARD.get()
    if outer is not None:
        yield outer
        return
    guard = FiniteGuard()
    token = _GUARD.set(guard)
    try:
        try:
            yield guard
        finally:
            _GUARD.reset(token)
    except Exception:
        guard.check()  # a NaN that broke the body (sampling from it) is the error to report
        raise
    guard.check()


def _guard() -> AbstractContextManager[FiniteGuard]:
    """The open guard, or a guard of its own that reads at once."""
    guard = _GUARD.get()
    return nullcontext(guard) if guard is not None else guarding()


def _deferred(
    tensor: Tensor,
    what: str,
    *,
    where: str = "",
    hint: str | None = None,
    key: Hashable | None = None,
) -> None:
    """``check_finite`` of ``tensor``, read when the open guard closes; a ``key`` the guard
    holds already is not checked again."""
    import torch

    def fail() -> None:
        check_finite(tensor, what, where=where, hint=hint)

    with _guard() as guard:
        if key is None or not guard.holds(key):
            guard.flag(object() if key is None else key, ~torch.isfinite(tensor).all(), fail)


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
