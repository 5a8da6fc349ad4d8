"""Offline lookups in sae_lens's pretrained-SAE catalog: releases, SAE ids, widths, hook
points, base models and Neuronpedia links, without importing sae_lens, transformer_lens or torch.

``import sae_lens`` costs 7-9 s, so this module reads the YAML sae_lens ships
(``pretrained_saes.yaml``, found with ``importlib.util.find_spec``, parsed once with libyaml in
~1.3 s) and TransformerLens's model-alias tables (``supported_models.py``, parsed with ``ast``
in ~3 ms). What an SAE's ``d_sae``/``hook_name`` are comes, in this order, from

1. saeval's built-in releases (the demo SAE);
2. the SAE id itself, where sae_lens's own loader derives them from it without a download
   (Gemma Scope 1 and 2, Qwen Scope: ``layer_20/width_16k/canonical`` is 16384 latents at
   ``blocks.20.hook_resid_post``);
3. a local SAE folder's ``cfg.json``;
4. a ``cfg.json`` already in the Hugging Face cache;
5. with ``online=True``, the SAE's config files downloaded (never its weights).

Anything else is unknown: callers report it as unchecked, never as valid.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

from saeval.errors import ResolutionError

CATALOG_FILE = "pretrained_saes.yaml"
SAE_CFG_FILE = "cfg.json"
NEURONPEDIA_URL = "https://www.neuronpedia.org/{neuronpedia_id}/{latent_idx}"

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

# Hugging Face model id -> config.model_type, for hook checks when no config.json is at hand.
# First match wins; ids matching none have an unknown architecture.
_MODEL_TYPES = (
    (r"gemma-2-", "gemma2"),
    (r"gemma-3-(270m|1b)", "gemma3_text"),
    (r"gemma-3-", "gemma3"),
    (r"gemma-\d", "gemma"),
    (r"gpt2", "gpt2"),
    (r"pythia", "gpt_neox"),
    (r"qwen3-[\d.]+b-a\d+b", "qwen3_moe"),
    (r"qwen3-", "qwen3"),
    (r"qwen2", "qwen2"),
    (r"mixtral", "mixtral"),
    (r"mistral", "mistral"),
    (r"llama", "llama"),
    (r"gpt-oss", "gpt_oss"),
)


class UnknownSaeId(ResolutionError):
    """A release that exists but has no SAE with the given id."""


@dataclass(frozen=True)
class SaeInfo:
    """What is known about one SAE without loading its weights (None: unknown)."""

    d_sae: int | None = None
    d_in: int | None = None
    hook_name: str | None = None
    model_name: str | None = None
    neuronpedia_id: str | None = None
    source: str = ""


@dataclass(frozen=True)
class Release:
    """One release of the catalog: a Hugging Face repo (or local release) and its SAEs."""

    name: str
    repo_id: str
    model: str
    conversion_func: str | None
    saes_map: Mapping[str, str] = field(repr=False)  # sae_id -> folder in the repo
    neuronpedia_ids: Mapping[str, str] = field(default_factory=dict, repr=False)
    builtin: Mapping[str, SaeInfo] = field(default_factory=dict, repr=False)  # saeval's own


@dataclass(frozen=True)
class SaeRef:
    """Where one steer row's SAE lives: a catalog release, a Hugging Face repo or a folder."""

    kind: SaeKind
    release: str  # as written in the steer file
    sae_id: str
    repo_id: str | None  # Hugging Face repo (release and hf_repo kinds)
    path: str  # folder inside the repo, or the local SAE folder
    catalog: Release | None = field(default=None, repr=False)


@dataclass(frozen=True)
class CatalogEntry:
    """One SAE of the catalog as `saeval saes` lists it."""

    release: str
    sae_id: str
    repo_id: str
    path: str
    model: str  # Hugging Face model id
    hook_name: str | None
    d_sae: int | None
    neuronpedia_id: str | None

    def to_dict(self) -> dict[str, Any]:
        """The entry as JSON-able data."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


# ---- the catalog -------------------------------------------------------------------------


def package_dir(package: str) -> Path | None:
    """The directory of an installed package, found without importing it."""
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def releases() -> dict[str, Release]:
    """Every release: sae_lens's packaged catalog plus saeval's built-in ones (parsed once)."""
    import yaml

    sae_lens_dir = package_dir("sae_lens")
    if sae_lens_dir is None:
        raise ResolutionError("sae_lens is not installed", hint="pip install sae-lens")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with (sae_lens_dir / CATALOG_FILE).open(encoding="utf-8") as stream:
        data: dict[str, Any] = yaml.load(stream, Loader=loader)
    catalog = {name: _release(name, value) for name, value in data.items()}
    return {**catalog, **_builtin_releases()}


def _release(name: str, value: Mapping[str, Any]) -> Release:
    """One YAML release as a Release."""
    saes = value["saes"]
    return Release(
        name=name,
        repo_id=value["repo_id"],
        model=value["model"],
        conversion_func=value.get("conversion_func"),
        saes_map={str(sae["id"]): str(sae["path"]) for sae in saes},
        neuronpedia_ids={
            str(sae["id"]): sae["neuronpedia"] for sae in saes if sae.get("neuronpedia")
        },
    )


def _builtin_releases() -> dict[str, Release]:
    """saeval's own releases: the demo SAE (its folder is built on first load, not here)."""
    from saeval.demo import paths
    from saeval.demo.sae import D_SAE

    info = SaeInfo(
        d_sae=D_SAE,
        hook_name=paths.DEMO_HOOK_NAME,
        model_name=paths.DEMO_MODEL_ID,
        source="saeval built-in demo SAE",
    )
    release = Release(
        name=paths.DEMO_RELEASE,
        repo_id="",
        model=paths.DEMO_MODEL_ID,
        conversion_func=None,
        saes_map={paths.DEMO_SAE_ID: ""},
        builtin={paths.DEMO_SAE_ID: info},
    )
    return {release.name: release}


def unknown_release(name: str) -> ResolutionError:
    """The error for a release that is nowhere: names the closest release names."""
    close = difflib.get_close_matches(name, list(releases()), n=3, cutoff=0.6)
    suggestion = f"did you mean {_or(close)}?" if close else "`saeval saes QUERY` lists releases"
    return ResolutionError(
        f"unknown SAE release {name!r} (not in sae_lens's catalog, not a Hugging Face repo id "
        f"owner/name, not a local SAE folder); {suggestion}"
    )


def sae_path(release: Release, sae_id: str) -> str:
    """The folder of `sae_id` inside the release's repo, or ResolutionError naming close ids."""
    if sae_id in release.saes_map:
        return release.saes_map[sae_id]
    ids = list(release.saes_map)
    close = difflib.get_close_matches(sae_id, ids, n=3, cutoff=0.6)
    if close:
        suggestion = f"did you mean {_or(close)}?"
    else:
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        suggestion = f"its {len(ids)} ids include {shown}"
    raise UnknownSaeId(f"release {release.name!r} has no SAE {sae_id!r}; {suggestion}")


def _or(names: list[str]) -> str:
    """'a', 'a' or 'b', 'a', 'b' or 'c'."""
    quoted = [repr(name) for name in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def locate(sae_release: str, sae_id: str) -> SaeRef:
    """Classify a steer row's SAE: catalog release, local folder (cwd-relative) or HF repo id."""
    if sae_release in releases():
        release = releases()[sae_release]
        folder = sae_path(release, sae_id)
        return SaeRef("release", sae_release, sae_id, release.repo_id or None, folder, release)
    local = local_sae_dir(sae_release, sae_id)
    if local is not None:
        return SaeRef("local", sae_release, sae_id, None, str(local))
    if _looks_like_path(sae_release):
        raise ResolutionError(f"local SAE folder {_folder_text(sae_release, sae_id)} not found")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", sae_release):
        return SaeRef("hf_repo", sae_release, sae_id, sae_release, sae_id)
    raise unknown_release(sae_release)


def local_sae_dir(sae_release: str, sae_id: str) -> Path | None:
    """The local SAE folder a row names (`sae_release/sae_id`, else `sae_release`), if any.

    A folder that exists but holds no cfg.json raises ResolutionError.
    """
    folder = Path(sae_release).expanduser()
    if not folder.is_dir():
        return None
    candidates = (folder / sae_id, folder) if sae_id else (folder,)
    for candidate in candidates:
        if (candidate / SAE_CFG_FILE).is_file():
            return candidate
    raise ResolutionError(
        f"local SAE folder {_folder_text(sae_release, sae_id)} has no {SAE_CFG_FILE} "
        "(a sae_lens SAE folder holds cfg.json and sae_weights.safetensors, as save_model writes)"
    )


def _looks_like_path(text: str) -> bool:
    """Whether a release string is meant as a file system path rather than a repo id."""
    return text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1


def _folder_text(sae_release: str, sae_id: str) -> str:
    """How messages name a local folder."""
    return repr(f"{sae_release}/{sae_id}" if sae_id else sae_release)


# ---- what is known about one SAE ---------------------------------------------------------


def sae_info(ref: SaeRef, *, online: bool = False) -> SaeInfo:
    """Everything knowable about an SAE from the sources in the module docstring."""
    catalog = ref.catalog
    if catalog is not None and ref.sae_id in catalog.builtin:
        return catalog.builtin[ref.sae_id]
    if ref.kind == "local":
        return read_sae_cfg(Path(ref.path) / SAE_CFG_FILE, source=f"{ref.path}/{SAE_CFG_FILE}")
    info = (naming_info(catalog, ref.path) if catalog is not None else None) or cached_info(ref)
    if info is None and online:
        info = downloaded_info(ref)
    info = info or SaeInfo()
    neuronpedia_id = catalog.neuronpedia_ids.get(ref.sae_id) if catalog is not None else None
    return replace(info, neuronpedia_id=neuronpedia_id or info.neuronpedia_id)


def naming_info(release: Release, folder: str) -> SaeInfo | None:
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


def _gemma_scope_1(repo_id: str, folder: str) -> SaeInfo | None:
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
    return SaeInfo(
        d_sae=_width(folder),
        d_in=d_in,
        hook_name=hook_name,
        model_name=f"gemma-2-{size}",
        source="Gemma Scope SAE id",
    )


def _gemma_scope_2(folder: str) -> SaeInfo | None:
    """Gemma Scope 2 (Gemma 3): hook kind and layer from the folder, width from its token."""
    layer = re.search(r"layer_(\d+)", folder)
    kind = next((hook for key, hook in _GEMMA_SCOPE_2_HOOKS.items() if key in folder), None)
    if layer is None or kind is None:
        return None
    return SaeInfo(
        d_sae=_width(folder),
        hook_name=f"blocks.{layer.group(1)}.{kind}",
        source="Gemma Scope 2 SAE id",
    )


def _qwen_scope(repo_id: str, folder: str) -> SaeInfo | None:
    """Qwen Scope: width `W32K` (x1024, as sae_lens reads it) in the repo, layer in the file."""
    width = re.search(r"-W(\d+)K-", repo_id)
    layer = re.search(r"layer(\d+)\.sae\.pt", folder)
    if width is None or layer is None:
        return None
    return SaeInfo(
        d_sae=int(width.group(1)) * 1024,
        hook_name=f"blocks.{layer.group(1)}.hook_resid_post",
        source="Qwen Scope repo id",
    )


def read_sae_cfg(path: Path, *, source: str) -> SaeInfo:
    """SaeInfo from a sae_lens `cfg.json` file."""
    try:
        cfg: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ResolutionError(f"cannot read SAE config {source}: {error}") from None
    return info_from_cfg(cfg, source=source)


def info_from_cfg(cfg: Mapping[str, Any], *, source: str) -> SaeInfo:
    """SaeInfo from a sae_lens config dict (6.x keeps hook and model names under `metadata`)."""
    metadata = {**cfg, **(cfg.get("metadata") or {})}
    return SaeInfo(
        d_sae=_int_or_none(cfg.get("d_sae")),
        d_in=_int_or_none(cfg.get("d_in")),
        hook_name=metadata.get("hook_name"),
        model_name=metadata.get("model_name"),
        neuronpedia_id=metadata.get("neuronpedia_id"),
        source=source,
    )


def _int_or_none(value: Any) -> int | None:
    """An int config value, or None when absent or not a number."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _cfg_filename(ref: SaeRef) -> str | None:
    """The cfg.json path inside the repo for sae_lens-format SAEs (None for converted ones)."""
    if ref.repo_id is None or (ref.catalog is not None and ref.catalog.conversion_func):
        return None
    return f"{ref.path}/{SAE_CFG_FILE}" if ref.path else SAE_CFG_FILE


def cached_info(ref: SaeRef) -> SaeInfo | None:
    """SaeInfo from the SAE's cfg.json when it is already in the Hugging Face cache."""
    filename = _cfg_filename(ref)
    if ref.repo_id is None or filename is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(ref.repo_id, filename)
    if not isinstance(cached, str):
        return None
    return read_sae_cfg(Path(cached), source=f"Hugging Face cache {ref.repo_id}/{filename}")


def downloaded_info(ref: SaeRef) -> SaeInfo | None:
    """SaeInfo from the SAE's config files on the Hugging Face hub (small files, never weights).

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


# ---- models and links --------------------------------------------------------------------


@cache
def model_aliases() -> dict[str, str]:
    """TransformerLens's alias -> Hugging Face id table (lower-case keys), read with `ast`."""
    tl_dir = package_dir("transformer_lens")
    if tl_dir is None:
        return {}
    names: dict[str, Any] = {}
    for module in ("supported_models.py", "loading_from_pretrained.py"):
        path = tl_dir / module
        if path.is_file():
            names = {**_literal_assignments(path), **names}
    aliases = names.get("MODEL_ALIASES", {})
    table: dict[str, str] = {}
    for official in names.get("OFFICIAL_MODEL_NAMES", []):
        table.update({alias.lower(): official for alias in aliases.get(official, [])})
        table[official.lower()] = official
    return table


def _literal_assignments(path: Path) -> dict[str, Any]:
    """Top-level OFFICIAL_MODEL_NAMES / MODEL_ALIASES literals of a Python file."""
    wanted = {"OFFICIAL_MODEL_NAMES", "MODEL_ALIASES"}
    found: dict[str, Any] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in wanted:
            found[target.id] = ast.literal_eval(value)
    return found


def hf_model_id(model: str) -> str:
    """The Hugging Face id of a catalog model name (`gemma-2-2b` -> `google/gemma-2-2b`)."""
    return model_aliases().get(model.lower(), model)


@dataclass(frozen=True)
class ModelInfo:
    """What is known offline about a base model: a Hugging Face id or a local folder."""

    model_id: str  # Hugging Face id (aliases mapped) or the local folder as given
    local: bool
    model_type: str | None = None
    n_layers: int | None = None
    d_model: int | None = None
    source: str = ""


def model_info(model: str) -> ModelInfo:
    """The model's id and, from its config.json (local folder or HF cache) or name, its type."""
    folder = Path(model).expanduser()
    if (folder / "config.json").is_file():
        return _model_from_config(model, True, folder / "config.json", f"{model}/config.json")
    if folder.is_dir():
        return ModelInfo(model, local=True)
    if _looks_like_path(model):
        raise ResolutionError(f"model folder {model!r} not found")
    model_id = hf_model_id(model)
    if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", model_id):
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model_id, "config.json")
        if isinstance(cached, str):
            source = f"Hugging Face cache {model_id}/config.json"
            return _model_from_config(model_id, False, Path(cached), source)
    lowered = model_id.lower()
    model_type = next((kind for key, kind in _MODEL_TYPES if re.search(key, lowered)), None)
    return ModelInfo(model_id, local=False, model_type=model_type)


def _model_from_config(model_id: str, local: bool, path: Path, source: str) -> ModelInfo:
    """ModelInfo from a transformers config.json (multimodal ones keep sizes in text_config)."""
    try:
        cfg: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ResolutionError(f"cannot read model config {source}: {error}") from None
    sizes = cfg.get("text_config") or cfg
    return ModelInfo(
        model_id=model_id,
        local=local,
        model_type=cfg.get("model_type"),
        n_layers=_int_or_none(sizes.get("num_hidden_layers", sizes.get("n_layer"))),
        d_model=_int_or_none(sizes.get("hidden_size", sizes.get("n_embd"))),
        source=source,
    )


def neuronpedia_url(neuronpedia_id: str, latent_idx: int) -> str:
    """The Neuronpedia page of one latent."""
    return NEURONPEDIA_URL.format(neuronpedia_id=neuronpedia_id, latent_idx=latent_idx)


# ---- search ------------------------------------------------------------------------------


@cache
def entries() -> tuple[CatalogEntry, ...]:
    """Every SAE of every release, with what its id tells about width and hook."""
    found: list[CatalogEntry] = []
    for release in releases().values():
        for sae_id, folder in release.saes_map.items():
            info = release.builtin.get(sae_id) or naming_info(release, folder) or SaeInfo()
            found.append(
                CatalogEntry(
                    release=release.name,
                    sae_id=sae_id,
                    repo_id=release.repo_id,
                    path=folder,
                    model=hf_model_id(info.model_name or release.model),
                    hook_name=info.hook_name,
                    d_sae=info.d_sae,
                    neuronpedia_id=release.neuronpedia_ids.get(sae_id),
                )
            )
    return tuple(found)


def search(query: str = "", model: str | None = None) -> list[CatalogEntry]:
    """SAEs whose release, id, model, hook, width or Neuronpedia id contain every query word."""
    words = query.lower().split()
    wanted_model = hf_model_id(model).lower() if model else None
    return [
        entry
        for entry in entries()
        if (wanted_model is None or entry.model.lower() == wanted_model)
        and all(word in _haystack(entry) for word in words)
    ]


def _haystack(entry: CatalogEntry) -> str:
    """The searchable text of one entry."""
    fields = (entry.release, entry.sae_id, entry.model, entry.hook_name, entry.d_sae)
    return " ".join(str(value) for value in (*fields, entry.neuronpedia_id) if value).lower()
