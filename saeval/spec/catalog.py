"""Offline lookups in sae_lens's pretrained-SAE catalog: releases, SAE ids, local folders and
Hugging Face repos, Neuronpedia links and search, without importing sae_lens or torch.

``import sae_lens`` costs 7-9 s, so this module reads the YAML sae_lens ships
(``pretrained_saes.yaml``, found with ``importlib.util.find_spec``, parsed once with libyaml in
~1.3 s). Packages add releases of their own with ``register_release`` (the demo does, from
``saeval/__init__.py``); no module here knows them by name. What an SAE's width and hook point
are is ``saeval.spec.sae_facts``'s job.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from saeval.errors import ResolutionError
from saeval.spec.models import hf_model_id, looks_like_path, package_dir
from saeval.spec.sae_facts import SAE_CFG_FILE, Release, SaeFacts, SaeRef, naming_info

CATALOG_FILE = "pretrained_saes.yaml"
NEURONPEDIA_URL = "https://www.neuronpedia.org/{neuronpedia_id}/{latent_idx}"
_REGISTERED: dict[str, Release] = {}


class UnknownSaeId(ResolutionError):
    """A release that exists but has no SAE with the given id."""


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


def register_release(release: Release) -> None:
    """Add a release of a package's own (built-in SAEs) to every later catalog lookup."""
    _REGISTERED[release.name] = release
    releases.cache_clear()
    entries.cache_clear()


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
    return {**catalog, **_REGISTERED}


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
    if looks_like_path(sae_release):
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


def _folder_text(sae_release: str, sae_id: str) -> str:
    """How messages name a local folder."""
    return repr(f"{sae_release}/{sae_id}" if sae_id else sae_release)


def neuronpedia_url(neuronpedia_id: str, latent_idx: int) -> str:
    """The Neuronpedia page of one latent."""
    return NEURONPEDIA_URL.format(neuronpedia_id=neuronpedia_id, latent_idx=latent_idx)


@cache
def entries() -> tuple[CatalogEntry, ...]:
    """Every SAE of every release, with what its id tells about width and hook."""
    found: list[CatalogEntry] = []
    for release in releases().values():
        for sae_id, folder in release.saes_map.items():
            builtin = release.builtin.get(sae_id)
            info = builtin.facts if builtin else naming_info(release, folder) or SaeFacts()
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
