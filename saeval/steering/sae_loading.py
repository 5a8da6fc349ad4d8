"""Load SAEs through sae_lens, wherever a steer row says they live (see ``catalog.locate``).

- a local folder holding ``cfg.json`` + ``sae_weights.safetensors``: ``SAE.load_from_disk``;
- a built-in release registered in the catalog (the demo's): its folder (built on first use),
  then ``SAE.load_from_disk``;
- a sae_lens release name, or a Hugging Face repo id whose ``sae_id`` is the folder inside the
  repo: ``SAE.from_pretrained``, which folds normalisation constants (``norm_scaling_factor``)
  into the weights it returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from saeval.errors import ResolutionError
from saeval.spec import catalog

if TYPE_CHECKING:
    from sae_lens import SAE

OFFLINE_HINT = (
    "the SAE is not in the local Hugging Face cache: run once with network access "
    "(HF_HUB_OFFLINE unset), or give a local SAE folder as sae_release"
)


def sae_dir(release: str, sae_id: str) -> Path | None:
    """The local folder ``SAE.load_from_disk`` reads for this SAE; None for hub SAEs."""
    ref = catalog.locate(release, sae_id)
    if ref.kind == "local":
        return Path(ref.path)
    if ref.catalog is not None and sae_id in ref.catalog.builtin:
        return ref.catalog.builtin[sae_id].folder()
    return None


def load_sae(release: str, sae_id: str, *, device: str = "cpu", dtype: str = "float32") -> SAE:
    """Load one SAE with sae_lens (``from_pretrained`` or ``load_from_disk``)."""
    from sae_lens import SAE

    local = sae_dir(release, sae_id)
    where = str(local) if local is not None else f"{release} {sae_id}".strip()
    try:
        if local is not None:
            return SAE.load_from_disk(local, device=device, dtype=dtype)
        return SAE.from_pretrained(release, sae_id, device=device, dtype=dtype)
    except (OSError, ValueError) as error:
        hint = OFFLINE_HINT if local is None and isinstance(error, OSError) else None
        raise ResolutionError(f"cannot load SAE {where}: {error}", hint=hint) from None
