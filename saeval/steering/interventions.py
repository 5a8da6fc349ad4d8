"""The intervention protocol (a ``delta(h, scale)``, the change to an activation ``h``) and the
interventions that are not one summed add vector (clamps: ``saeval.steering.clamp``).

At a hook point with activation ``h`` (``c`` a row's coefficient times ``scale``):

- ``Projection`` (the seed's ``project``, lm-eval's ``clamp``): with ``u = v/|v|`` and bias ``b``
  (an SAE's ``b_dec``, a ``.pt`` entry's ``bias``, else 0), ``h <- (h - b) - ((h - b)·u) u + c u
  + b``, i.e. ``delta = (c - (h - b)·u) u``;
- ``HeadAdd``: ``c·v`` added to one head's ``d_head`` slice of ``attn.hook_z`` (the heads'
  flattened outputs); a ``Projection`` with a head index acts on that slice too;
- ``ThroughSae`` (``add_through_sae``, the fork's ``add``): the whole SAE with its error term,
  the adds made at its input: ``delta = dec(a') - dec(enc(h))``, ``a' = enc(h + Σ c_j W_dec[j])``
  with the same SAE's clamp rows set in ``a'`` (clamp_active only where ``a'_i > t``), which is
  what ``HookedSAETransformer`` computes with ``use_error_term=True`` and hooks on
  ``hook_sae_input`` and ``hook_sae_acts_post``.

Each keeps its tensors in float32 (or the SAE's dtype) and copies them once per device.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from saeval.errors import SteeringError

if TYPE_CHECKING:
    from sae_lens import SAE
    from torch import Tensor

    from saeval.spec.steer_file import AnyRow, SteerRow


class ActivationDelta(Protocol):
    """What a hook point applies after its add vector: a delta computed from ``h``."""

    def delta(self, h: Tensor, scale: float) -> Tensor:
        """The change to ``h`` at strength ``scale`` (any float dtype, ``h``'s device)."""
        ...

    def nbytes(self) -> int:
        """Bytes of the tensors it keeps."""
        ...


def tensor_bytes(tensor: Tensor) -> int:
    """Bytes of one tensor's elements."""
    return tensor.numel() * tensor.element_size()


@dataclass
class Projection:
    """Set the component of ``h - b`` along the unit direction ``u`` to the target."""

    rows: tuple[AnyRow, ...]
    direction: Tensor  # (d,) unit norm
    bias: Tensor | None  # (d,)
    target: float
    head_index: int | None = None
    _on_device: dict[Any, tuple[Tensor, Tensor | None]] = field(default_factory=dict, repr=False)

    def delta(self, h: Tensor, scale: float) -> Tensor:
        """``(scale * c - (x - b)·u) u`` for ``x`` the activation (or its head's slice)."""
        import torch

        if h.device not in self._on_device:
            bias = None if self.bias is None else self.bias.to(h.device)
            self._on_device[h.device] = (self.direction.to(h.device), bias)
        u, b = self._on_device[h.device]
        with torch.no_grad():
            x = head_slice(h, self.head_index, u.numel(), self.rows).to(u.dtype)
            if b is not None:
                x = x - b
            change = (self.target * scale - x @ u).unsqueeze(-1) * u
            return on_head(h, change, self.head_index)

    def nbytes(self) -> int:
        """Direction and bias."""
        return tensor_bytes(self.direction) + (0 if self.bias is None else tensor_bytes(self.bias))


def projection(row: AnyRow, vector: Tensor, bias: Tensor | None, head: int | None) -> Projection:
    """The Projection of ``row`` onto ``vector`` (any norm but 0) with ``bias``."""
    import torch

    with torch.no_grad():
        vector = vector.detach().to(torch.float32)
        norm = vector.norm()
        if not bool(norm > 0):
            raise SteeringError(f"{row.where()}: the direction has norm 0; project needs one")
        unit = (vector / norm).clone()
        kept = None if bias is None else bias.detach().to(torch.float32).clone()
    return Projection((row,), unit, kept, row.coefficient, head)


@dataclass
class HeadAdd:
    """``scale * c * v`` added to one attention head's slice of the flattened ``attn.hook_z``."""

    rows: tuple[AnyRow, ...]
    vector: Tensor  # (d_head,) c * v
    head_index: int

    def delta(self, h: Tensor, scale: float) -> Tensor:
        """Zero outside the head's slice."""
        head_slice(h, self.head_index, self.vector.numel(), self.rows)
        change = (self.vector * scale).to(h.device).expand(*h.shape[:-1], -1)
        return on_head(h, change, self.head_index)

    def nbytes(self) -> int:
        """The vector."""
        return tensor_bytes(self.vector)


def head_slice(h: Tensor, head: int | None, width: int, rows: tuple[AnyRow, ...]) -> Tensor:
    """``h`` itself, or head ``head``'s ``width``-wide slice of it (SteeringError if none)."""
    if head is None:
        return h
    total = h.shape[-1]
    if total % width or (head + 1) * width > total:
        where = ", ".join(row.where() for row in rows)
        raise SteeringError(
            f"{where}: head {head} of a {width}-wide head does not fit the activation of width "
            f"{total} (n_heads * d_head); head_index must be below {total // width} and the "
            "vector one head's d_head wide"
        )
    return h[..., head * width : (head + 1) * width]


def on_head(h: Tensor, change: Tensor, head: int | None) -> Tensor:
    """``change`` as a delta of ``h``'s shape: itself, or placed in head ``head``'s slice."""
    import torch

    if head is None:
        return change
    width = change.shape[-1]
    full = torch.zeros(h.shape, dtype=change.dtype, device=h.device)
    full[..., head * width : (head + 1) * width] = change
    return full


@dataclass
class ThroughSae:
    """The fork's arithmetic: adds at the SAE's input, clamps in its activations, error kept."""

    rows: tuple[SteerRow, ...]
    sae: SAE  # the whole SAE, reading flattened activations
    vector: Tensor  # (d_in,) sum of c * W_dec[j] over the add_through_sae rows
    latents: Tensor  # (k,) latents of the SAE's clamp rows (k may be 0)
    targets: Tensor  # (k,) their values
    thresholds: Tensor  # (k,) set only where the latent exceeds it (-inf: everywhere)
    _on_device: dict[Any, tuple[Any, ...]] = field(default_factory=dict, repr=False)

    def delta(self, h: Tensor, scale: float) -> Tensor:
        """``dec(a') - dec(enc(h))`` (see the module docstring)."""
        import torch

        sae, vector, latents, targets, thresholds = self._moved(h)
        with torch.no_grad():
            x = h.to(vector.dtype)
            clean = sae.encode(x)
            acts = sae.encode(x + vector * scale)
            if latents.numel():
                picked = acts.index_select(-1, latents)
                picked = torch.where(picked > thresholds, targets * scale, picked)
                acts = acts.index_copy(acts.dim() - 1, latents, picked)
            return sae.decode(acts) - sae.decode(clean)

    def _moved(self, h: Tensor) -> tuple[Any, ...]:
        """The SAE and tensors on ``h``'s device (copied once per device)."""
        if h.device not in self._on_device:
            same = h.device == self.vector.device
            sae = self.sae if same else copy.deepcopy(self.sae).to(h.device)
            tensors = (self.vector, self.latents, self.targets, self.thresholds)
            self._on_device[h.device] = (sae, *(t.to(h.device) for t in tensors))
        return self._on_device[h.device]

    def nbytes(self) -> int:
        """The whole SAE, the input vector and the clamp tensors."""
        kept = (self.vector, self.latents, self.targets, self.thresholds)
        return sum(tensor_bytes(t) for t in (*self.sae.state_dict().values(), *kept))
