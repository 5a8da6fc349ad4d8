"""EleutherAI's sparse coders (lm-eval's ``loader=sparsify``) located and described offline.

Like lm-eval, a row's ``sparse_model`` is a local folder when it exists (the coder is in its
``hookpoint`` subfolder, as ``SparseCoder.save_to_disk`` and ``load_many`` lay them out), else a
Hugging Face repo id whose ``hookpoint`` folder holds the coder. A coder's ``cfg.json`` gives
``d_in`` and its width (``num_latents``, or ``d_in * expansion_factor``); it names neither a
base model nor a TransformerLens hook (the hookpoint is a Hugging Face module name).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from saeval.errors import ResolutionError
from saeval.spec.models import int_or_none
from saeval.spec.sae_facts import ResolvedSae

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae.safetensors"
DEFAULT_EXPANSION = 32  # SparseCoderConfig.expansion_factor


def sparsify_sae(sparse_model: str, hookpoint: str, *, online: bool = False) -> ResolvedSae:
    """The coder a sparsify row names; ``source`` is empty when its config is unknown offline."""
    folder = Path(sparse_model).expanduser()
    if folder.exists():
        coder = folder / hookpoint
        for name in (CFG_FILE, WEIGHTS_FILE):
            if not (coder / name).is_file():
                raise ResolutionError(
                    f"sparsify coder folder {coder} has no {name} (SparseCoder.save_to_disk "
                    f"writes {CFG_FILE} and {WEIGHTS_FILE} into one folder per hookpoint)"
                )
        source = str(coder / CFG_FILE)
        return _resolved(
            "local", sparse_model, hookpoint, None, str(coder), _read(coder / CFG_FILE), source
        )
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", sparse_model):
        raise ResolutionError(
            f"sparse_model {sparse_model!r} is neither a local folder nor a Hugging Face repo id "
            "(owner/name) of sparsify coders"
        )
    cached = _cached_cfg(sparse_model, hookpoint, online)
    cfg = _read(Path(cached)) if cached else {}
    source = f"{sparse_model}/{hookpoint}/{CFG_FILE}" if cached else ""
    return _resolved("hf_repo", sparse_model, hookpoint, sparse_model, hookpoint, cfg, source)


def _resolved(
    kind: str,
    release: str,
    hookpoint: str,
    repo_id: str | None,
    path: str,
    cfg: dict[str, Any],
    source: str,
) -> ResolvedSae:
    d_in = int_or_none(cfg.get("d_in"))
    latents = int_or_none(cfg.get("num_latents")) or None
    expansion = int_or_none(cfg.get("expansion_factor", DEFAULT_EXPANSION))
    d_sae = latents or (d_in * expansion if d_in and expansion else None)
    return ResolvedSae(
        d_sae=d_sae,
        d_in=d_in,
        hook_name=hookpoint,
        source=source,
        kind=kind,
        release=release,
        sae_id=hookpoint,
        repo_id=repo_id,
        path=path,
    )


def _read(path: Path) -> dict[str, Any]:
    """A coder's cfg.json."""
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ResolutionError(f"cannot read sparsify config {path}: {error}") from None
    if not isinstance(cfg, dict):
        raise ResolutionError(f"cannot read sparsify config {path}: not a JSON object")
    return cfg


def _cached_cfg(repo_id: str, hookpoint: str, online: bool) -> str | None:
    """The coder's cfg.json from the Hugging Face cache, or (online) the hub; None if unknown."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    filename = f"{hookpoint}/{CFG_FILE}"
    cached = try_to_load_from_cache(repo_id, filename)
    if isinstance(cached, str):
        return cached
    if not online:
        return None
    try:
        return str(hf_hub_download(repo_id, filename))
    except (LocalEntryNotFoundError, ConnectionError, TimeoutError):
        return None
    except HfHubHTTPError as error:
        raise ResolutionError(f"no sparsify coder {repo_id} {hookpoint!r}: {error}") from None
