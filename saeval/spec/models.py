"""Base models known offline: Hugging Face ids for catalog aliases and what a config.json says.

TransformerLens's model-alias tables (``supported_models.py``) are parsed with ``ast`` in ~3 ms
instead of importing transformer_lens; a model's type and sizes come from its ``config.json`` in
a local folder or the Hugging Face cache, else from its name.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from saeval.errors import ResolutionError

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


def package_dir(package: str) -> Path | None:
    """The directory of an installed package, found without importing it."""
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def looks_like_path(text: str) -> bool:
    """Whether a release string is meant as a file system path rather than a repo id."""
    return text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1


def int_or_none(value: Any) -> int | None:
    """An int config value, or None when absent or not a number."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


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
    if looks_like_path(model):
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
        n_layers=int_or_none(sizes.get("num_hidden_layers", sizes.get("n_layer"))),
        d_model=int_or_none(sizes.get("hidden_size", sizes.get("n_embd"))),
        source=source,
    )
