"""Load SAEs through sae_lens, wherever a steer row says they live (see ``catalog.locate``).

- a local folder holding ``cfg.json`` + ``sae_weights.safetensors``: ``SAE.load_from_disk``;
- a built-in release registered in the catalog (the demo's): its folder (built on first use),
  then ``SAE.load_from_disk``;
- a sae_lens release name, or a Hugging Face repo id whose ``sae_id`` is the folder inside the
  repo: ``SAE.from_pretrained``, which folds normalisation constants (``norm_scaling_factor``)
  into the weights it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
    """Load one SAE with sae_lens (``from_pretrained`` or ``load_from_disk``); ResolutionError
    naming the SAE (its folder, when local) when it cannot be loaded."""
    from sae_lens import SAE
    from safetensors import SafetensorError

    local = sae_dir(release, sae_id)
    where = str(local) if local is not None else f"{release} {sae_id}".strip()
    try:
        if local is not None:
            return SAE.load_from_disk(local, device=device, dtype=dtype)
        return SAE.from_pretrained(release, sae_id, device=device, dtype=dtype)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SafetensorError) as error:
        hint = OFFLINE_HINT if local is None and isinstance(error, OSError) else None
        raise ResolutionError(f"cannot load SAE {where}: {_reason(error)}", hint=hint) from None


def row_loader(
    rows: Iterable[object], *, device: str = "cpu", dtype: str = "float32"
) -> Callable[[tuple[str, str]], SAE]:
    """``load_sae`` for ``plan.plan_rows``: a failure also names the first of ``rows`` (its SAE
    latent rows) that uses the SAE."""
    from saeval.spec.steer_file import SteerRow

    first: dict[tuple[str, str], SteerRow] = {}
    for row in rows:
        if isinstance(row, SteerRow):
            first.setdefault((row.sae_release, row.sae_id), row)

    def load(key: tuple[str, str]) -> SAE:
        try:
            return load_sae(key[0], key[1], device=device, dtype=dtype)
        except ResolutionError as error:
            row = first.get(key)
            if row is None:
                raise
            where = row.where(row.column("sae_release"))
            raise ResolutionError(f"{where}: {error.message}", hint=error.hint) from None

    return load


def _reason(error: Exception) -> str:
    """An exception as one line; what sae_lens's loader stumbled on (a missing key, a field of
    the wrong type) is said to be sae_lens's reading of the files, never by its class name."""
    text = " ".join(str(error).split())
    if isinstance(error, OSError | ValueError):
        return text
    return f"sae_lens could not read its cfg.json or weights ({text})"
