"""What is known about one SAE without loading its weights, and where the facts come from.

``d_sae``, ``d_in``, ``hook_name`` and the base model come, in this order, from

1. a built-in release registered in ``saeval.spec.catalog`` (the demo SAE);
2. the SAE id itself, where sae_lens's own loader derives them from it without a download
   (Gemma Scope 1 and 2, Qwen Scope: ``layer_20/width_16k/canonical`` is 16384 latents at
   ``blocks.20.hook_resid_post``);
3. a local SAE folder's ``cfg.json``;
4. a ``cfg.json`` already in the Hugging Face cache;
5. with ``online=True``, the SAE's config files downloaded (never its weights).

Anything else is unknown: callers report it as unchecked, never as valid.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from saeval.errors import ResolutionError
from saeval.spec.models import hf_model_id, int_or_none
from saeval.spec.sae_folder import check_cfg, check_local_folder

SAE_CFG_FILE = "cfg.json"

# sae_lens's Gemma Scope width table (pretrained_sae_loaders.get_gemma_2_config_from_hf).
WIDTHS = {
    "4k": 4096,
    "16k": 16384,
    "32k": 32768,
    "65k": 65536,
    "131k": 131072,
    "262k": 262144,
    "524k": 524288,
    "1m": 1048576,
}
# Gemma 2 sizes as sae_lens matches them in a Gemma Scope repo id (order matters): d_in per hook.
_GEMMA_SCOPE_1 = {
    "2b-it": (2304, 2048),
    "9b-it": (3584, 4096),
    "27b-it": (4608, 4608),
    "2b": (2304, 2048),
    "9b": (3584, 4096),
    "27b": (4608, 4608),
}
# Gemma Scope 2 folder kinds -> TransformerLens hook (get_gemma_3_config_from_hf).
_GEMMA_SCOPE_2_HOOKS = {
    "resid_post": "hook_resid_post",
    "attn_out": "attn.hook_z",
    "mlp_out": "hook_mlp_out",
    "transcoder": "hook_mlp_in",
    "clt": "hook_mlp_in",
}

SaeKind = Literal["release", "hf_repo", "local"]


@dataclass(frozen=True)
class SaeFacts:
    """What is known about one SAE without loading its weights (None: unknown)."""

    d_sae: int | None = None
    d_in: int | None = None
    hook_name: str | None = None
    model_name: str | None = None
    neuronpedia_id: str | None = None
    source: str = ""


@dataclass(frozen=True)
class BuiltinSae:
    """An SAE a package registers (the demo): its facts and how to build its folder."""

    facts: SaeFacts
    folder: Callable[[], Path]  # builds the sae_lens folder on first use, returns it


@dataclass(frozen=True)
class Release:
    """One release of the catalog: a Hugging Face repo (or local release) and its SAEs."""

    name: str
    repo_id: str
    model: str
    conversion_func: str | None
    saes_map: Mapping[str, str] = field(repr=False)  # sae_id -> folder in the repo
    neuronpedia_ids: Mapping[str, str] = field(default_factory=dict, repr=False)
    builtin: Mapping[str, BuiltinSae] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class SaeRef:
    """Where one steer row's SAE lives: a catalog release, a Hugging Face repo or a folder."""

    kind: SaeKind
    release: str  # as written in the steer file
    sae_id: str
    repo_id: str | None  # Hugging Face repo (release and hf_repo kinds)
    path: str  # folder inside the repo, or the local SAE folder
    catalog: Release | None = field(default=None, repr=False)


def sae_facts(ref: SaeRef, *, online: bool = False) -> SaeFacts:
    """Everything knowable about an SAE from the sources in the module docstring."""
    catalog = ref.catalog
    if catalog is not None and ref.sae_id in catalog.builtin:
        return catalog.builtin[ref.sae_id].facts
    if ref.kind == "local":
        return local_facts(Path(ref.path))
    info = (naming_info(catalog, ref.path) if catalog is not None else None) or cached_info(ref)
    if info is None and online:
        info = downloaded_info(ref)
    info = info or SaeFacts()
    neuronpedia_id = catalog.neuronpedia_ids.get(ref.sae_id) if catalog is not None else None
    return replace(info, neuronpedia_id=neuronpedia_id or info.neuronpedia_id)


def naming_info(release: Release, folder: str) -> SaeFacts | None:
    """d_sae/hook_name/d_in encoded in a Gemma Scope or Qwen Scope SAE folder name."""
    if release.conversion_func == "gemma_2":
        return _gemma_scope_1(release.repo_id, folder)
    if release.conversion_func == "gemma_3":
        return _gemma_scope_2(folder)
    if release.conversion_func == "qwen_scope":
        return _qwen_scope(release.repo_id, folder)
    return None


def _width(folder: str) -> int | None:
    """d_sae from a `width_16k` token, per sae_lens's table (16k is 16384, not 16000)."""
    match = re.search(r"width_([0-9]+[km])(?![0-9a-z])", folder)
    return WIDTHS.get(match.group(1)) if match else None


def _gemma_scope_1(repo_id: str, folder: str) -> SaeFacts | None:
    """Gemma Scope (Gemma 2): what sae_lens's gemma_2 config getter derives, offline."""
    size = next((key for key in _GEMMA_SCOPE_1 if key in repo_id), None)
    layer = re.search(r"layer_(\d+)", folder)
    if size is None or (layer is None and "embedding" not in folder):
        return None
    d_in, d_in_hook_z = _GEMMA_SCOPE_1[size]
    block = f"blocks.{layer.group(1) if layer else 0}"
    if "res" in repo_id:
        hook_name = "hook_embed" if "embedding" in folder else f"{block}.hook_resid_post"
    elif "mlp" in repo_id:
        hook_name = f"{block}.hook_mlp_out"
    elif "att" in repo_id:
        hook_name, d_in = f"{block}.attn.hook_z", d_in_hook_z
    else:
        return None
    return SaeFacts(
        d_sae=_width(folder),
        d_in=d_in,
        hook_name=hook_name,
        model_name=f"gemma-2-{size}",
        source="Gemma Scope SAE id",
    )


def _gemma_scope_2(folder: str) -> SaeFacts | None:
    """Gemma Scope 2 (Gemma 3): hook kind and layer from the folder, width from its token."""
    layer = re.search(r"layer_(\d+)", folder)
    kind = next((hook for key, hook in _GEMMA_SCOPE_2_HOOKS.items() if key in folder), None)
    if layer is None or kind is None:
        return None
    return SaeFacts(
        d_sae=_width(folder),
        hook_name=f"blocks.{layer.group(1)}.{kind}",
        source="Gemma Scope 2 SAE id",
    )


def _qwen_scope(repo_id: str, folder: str) -> SaeFacts | None:
    """Qwen Scope: width `W32K` (x1024, as sae_lens reads it) in the repo, layer in the file."""
    width = re.search(r"-W(\d+)K-", repo_id)
    layer = re.search(r"layer(\d+)\.sae\.pt", folder)
    if width is None or layer is None:
        return None
    return SaeFacts(
        d_sae=int(width.group(1)) * 1024,
        hook_name=f"blocks.{layer.group(1)}.hook_resid_post",
        source="Qwen Scope repo id",
    )


def read_sae_cfg(path: Path, *, source: str) -> SaeFacts:
    """SaeFacts from a sae_lens `cfg.json` file."""
    return info_from_cfg(_read_cfg(path, source), source=source)


def local_facts(folder: Path) -> SaeFacts:
    """SaeFacts of a local SAE folder, whose weights file must agree with its `cfg.json`."""
    source = f"{folder}/{SAE_CFG_FILE}"
    cfg = _read_cfg(folder / SAE_CFG_FILE, source)
    facts = info_from_cfg(cfg, source=source)
    check_local_folder(folder, cfg, source)
    return facts


def _read_cfg(path: Path, source: str) -> dict[str, Any]:
    """A `cfg.json` file's JSON object."""
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ResolutionError(f"cannot read SAE config {source}: {error}") from None
    if not isinstance(cfg, dict):
        raise ResolutionError(
            f"cannot read SAE config {source}: a {type(cfg).__name__}, not a JSON object",
            hint='sae_lens writes cfg.json as an object: {"d_in": ..., "d_sae": ..., ...}',
        )
    return cfg


def info_from_cfg(cfg: Mapping[str, Any], *, source: str) -> SaeFacts:
    """SaeFacts from a sae_lens config dict (6.x keeps hook and model names under `metadata`)."""
    check_cfg(cfg, source)
    nested = cfg.get("metadata")
    metadata = {**cfg, **(nested if isinstance(nested, dict) else {})}
    return SaeFacts(
        d_sae=int_or_none(cfg.get("d_sae")),
        d_in=int_or_none(cfg.get("d_in")),
        hook_name=_text(metadata, "hook_name", source),
        model_name=_text(metadata, "model_name", source),
        neuronpedia_id=_text(metadata, "neuronpedia_id", source),
        source=source,
    )


def _text(metadata: Mapping[str, Any], key: str, source: str) -> str | None:
    """A text field of a config (None when absent)."""
    value = metadata.get(key)
    if value is not None and not isinstance(value, str):
        raise ResolutionError(f"{source}: {key} must be text, got {value!r}")
    return value


def _cfg_filename(ref: SaeRef) -> str | None:
    """The cfg.json path inside the repo for sae_lens-format SAEs (None for converted ones)."""
    if ref.repo_id is None or (ref.catalog is not None and ref.catalog.conversion_func):
        return None
    return f"{ref.path}/{SAE_CFG_FILE}" if ref.path else SAE_CFG_FILE


def cached_info(ref: SaeRef) -> SaeFacts | None:
    """SaeFacts from the SAE's cfg.json when it is already in the Hugging Face cache."""
    filename = _cfg_filename(ref)
    if ref.repo_id is None or filename is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(ref.repo_id, filename)
    if not isinstance(cached, str):
        return None
    return read_sae_cfg(Path(cached), source=f"Hugging Face cache {ref.repo_id}/{filename}")


def downloaded_info(ref: SaeRef) -> SaeFacts | None:
    """SaeFacts from the SAE's config files on the Hugging Face hub (small files, never weights).

    None when the hub cannot be reached; ResolutionError when the repo or file does not exist.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
    )

    try:
        if ref.catalog is not None:
            # sae_lens's own getter knows where each converted release keeps its config.
            from sae_lens.loading.pretrained_sae_loaders import load_sae_config_from_huggingface

            cfg = load_sae_config_from_huggingface(ref.release, ref.sae_id)
            return info_from_cfg(cfg, source=f"downloaded config of {ref.release}")
        filename = _cfg_filename(ref) or SAE_CFG_FILE
        path = hf_hub_download(str(ref.repo_id), filename)
    except (LocalEntryNotFoundError, GatedRepoError, ConnectionError, TimeoutError):
        return None
    except (HfHubHTTPError, RemoteEntryNotFoundError, ValueError, KeyError) as error:
        raise ResolutionError(f"no SAE config for {ref.release} {ref.sae_id!r}: {error}") from None
    return read_sae_cfg(Path(path), source=f"downloaded {ref.repo_id}/{filename}")


@dataclass(frozen=True)
class ResolvedSae(SaeFacts):
    """One SAE as resolved offline: where it lives and what is known about it."""

    kind: str = "release"  # "release" | "hf_repo" | "local"
    release: str = ""
    sae_id: str = ""
    repo_id: str | None = None
    path: str = ""  # folder inside the repo, or the local SAE folder
    model: str | None = None  # Hugging Face id of the base model (None: unknown)

    def to_dict(self) -> dict[str, Any]:
        """The SAE as JSON-able data."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @property
    def label(self) -> str:
        """How messages name the SAE: `release 'sae_id'`, or the local folder."""
        return self.release if not self.sae_id else f"{self.release} {self.sae_id!r}"


def resolved_sae(ref: SaeRef, info: SaeFacts) -> ResolvedSae:
    """The ResolvedSae of a located SAE."""
    model = info.model_name or (ref.catalog.model if ref.catalog else None)
    return ResolvedSae(
        kind=ref.kind,
        release=ref.release,
        sae_id=ref.sae_id,
        repo_id=ref.repo_id,
        path=ref.path,
        model=hf_model_id(model) if model else None,
        **asdict(info),
    )
