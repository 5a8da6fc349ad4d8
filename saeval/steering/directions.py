"""Steering along a direction without an SAE's encoder: vector rows (a vector file or an entry
of lm-eval's ``.pt`` file) and lm-eval's ``loader=sparsify`` rows (a sparse coder's ``W_dec``
row, with its ``b_dec`` for ``project``), each as a ``Part`` of its hook point: adds join the
hook point's summed add vector, projections and one-head adds become interventions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saeval.errors import SteeringError
from saeval.spec.dialects import Action
from saeval.spec.pt_steer_file import load_pt
from saeval.spec.steer_file import AnyRow, SteerRow, VectorRow
from saeval.spec.vector_files import read_vector
from saeval.steering.finite import check_finite
from saeval.steering.hook_point import Part
from saeval.steering.interventions import HeadAdd, projection
from saeval.steering.sparsify_loading import load_sparse_coder

if TYPE_CHECKING:
    from torch import Tensor


def direction_parts(rows: Sequence[AnyRow]) -> list[Part]:
    """The parts of every vector row and sparsify row (each coder loaded once, then freed)."""
    coders: dict[tuple[str, str], Any] = {}
    parts = []
    for row in rows:
        if isinstance(row, VectorRow):
            vector, bias = _vector_of(row)
            parts.append(direction_part(row, row.hook, vector, bias, row.head_index))
        elif row.loader == "sparsify":
            if row.sae_key not in coders:
                coders[row.sae_key] = load_sparse_coder(*row.sae_key)
            vector, bias = _coder_row(row, coders[row.sae_key])
            parts.append(direction_part(row, row.hook or "", vector, bias, None))
    return parts


def direction_part(
    row: AnyRow, hook_name: str, vector: Tensor, bias: Tensor | None, head: int | None
) -> Part:
    """``row`` steering along ``vector``: an add (summed, or on one head) or a projection."""
    import torch

    width = None if head is not None else int(vector.numel())
    if row.action is Action.PROJECT:
        return Part(hook_name, width, [row], interventions=[projection(row, vector, bias, head)])
    with torch.no_grad():
        scaled = (row.coefficient * vector.detach().to(torch.float32)).clone()
    if head is None:
        return Part(hook_name, width, [row], add_vector=scaled)
    return Part(hook_name, None, [row], interventions=[HeadAdd((row,), scaled, head)])


def _vector_of(row: VectorRow) -> tuple[Tensor, Tensor | None]:
    """The row's vector (float32) and, for a .pt steer file's entry, its bias."""
    import torch

    values, _ = read_vector(Path(row.vector), row.entry)
    vector = torch.as_tensor(values).to(torch.float32)
    if vector.dim() != 1 or vector.numel() == 0:
        raise SteeringError(
            f"{row.where('vector')}: shape {tuple(vector.shape)}; a steering vector is 1-D"
        )
    check_finite(vector, f"steering vector {row.vector}", where=row.where())
    bias = None
    if row.entry is not None:
        entry = load_pt(Path(row.vector), row.vector)[row.entry]
        bias = entry.get("bias")
        bias = None if bias is None else bias.detach().to(torch.float32)
    return vector, bias


def _coder_row(row: SteerRow, coder: Any) -> tuple[Tensor, Tensor]:
    """A sparsify coder's ``W_dec[i]`` and ``b_dec`` (float32 copies)."""
    import torch

    if coder.W_dec is None or row.latent_idx >= coder.num_latents:
        raise SteeringError(
            f"{row.where(row.column('latent_idx'))}: latent {row.latent_idx} is out of range for "
            f"the sparsify coder {row.sae_release} {row.hook!r} (num_latents={coder.num_latents})"
        )
    with torch.no_grad():
        vector = coder.W_dec[row.latent_idx].detach().to(torch.float32).clone()
        bias = coder.b_dec.detach().to(torch.float32).clone()
    check_finite(vector, f"W_dec[{row.latent_idx}] of sparsify coder", where=row.where())
    return vector, bias
