"""A local sae_lens SAE folder checked without loading it, so ``validate`` finds what would
otherwise fail (or silently mislead) only when ``SAE.load_from_disk`` runs.

- ``cfg.json`` names an ``architecture`` sae_lens registers, whole numbers ``d_sae`` and
  ``d_in`` (and ``d_out`` for transcoders), a ``dtype`` sae_lens knows, and its ``metadata`` is
  an object;
- ``sae_weights.safetensors`` is a complete safetensors file (its header, not its weights, is
  read: ``saeval.spec.safetensors_header``) whose ``W_dec`` is ``[d_sae, d_out or d_in]`` and
  whose ``W_enc``, where it has one, is ``[d_in, d_sae]``; every tensor is floating.

NaN or infinite weights need the weights: ``saeval.steering.finite`` checks them when the plan is
built, before the first evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from saeval.errors import ResolutionError
from saeval.spec.safetensors_header import read_header

SAE_WEIGHTS_FILE = "sae_weights.safetensors"
# sae_lens 6.54's register_sae_class names (what SAE.load_from_disk can build); a test compares
# this with sae_lens.registry.SAE_CLASS_REGISTRY, which takes seconds to import.
ARCHITECTURES = (
    "standard",
    "gated",
    "topk",
    "abstopk",
    "jumprelu",
    "transcoder",
    "skip_transcoder",
    "jumprelu_transcoder",
    "jumprelu_skip_transcoder",
    "temporal",
    "matching_pursuit",
)
# sae_lens 6.54's DTYPE_MAP keys (what a cfg.json's dtype may say); a test compares them.
SAE_DTYPES = (
    "float32",
    "float64",
    "float16",
    "bfloat16",
    "torch.float32",
    "torch.float64",
    "torch.float16",
    "torch.bfloat16",
)
FLOAT_TENSORS = ("F64", "F32", "F16", "BF16")  # safetensors dtypes of floating tensors
_SIZES = ("d_sae", "d_in", "d_out")
_FIRST_V6 = 6  # sae_lens 6 configs must name their architecture; older ones default to standard


def check_cfg(cfg: Mapping[str, Any], source: str) -> None:
    """The fields of a sae_lens config that its loader needs: ResolutionError naming ``source``."""
    architecture = cfg.get("architecture")
    if architecture is None and _major_version(cfg) >= _FIRST_V6:
        raise ResolutionError(
            f"{source}: no 'architecture' (sae_lens 6 configs name one: {', '.join(ARCHITECTURES)})"
        )
    if architecture is not None and architecture not in ARCHITECTURES:
        raise ResolutionError(
            f"{source}: unknown architecture {architecture!r}; sae_lens loads "
            f"{', '.join(ARCHITECTURES)}"
        )
    for name in _SIZES:
        value = cfg.get(name)
        if value is not None and not _positive_int(value):
            raise ResolutionError(f"{source}: {name} must be a whole number above 0, got {value!r}")
    metadata = cfg.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ResolutionError(
            f"{source}: metadata must be a JSON object such as "
            f'{{"hook_name": "blocks.6.hook_resid_post"}}, got {metadata!r}'
        )
    dtype = cfg.get("dtype")
    if dtype is not None and dtype not in SAE_DTYPES:
        raise ResolutionError(
            f"{source}: dtype {dtype!r} is not one sae_lens loads; valid: {', '.join(SAE_DTYPES)}"
        )


def check_local_folder(folder: Path, cfg: Mapping[str, Any], source: str) -> None:
    """A local SAE folder's sizes are given and match the tensor shapes of its weights file."""
    for name in ("d_sae", "d_in"):
        if cfg.get(name) is None:
            raise ResolutionError(f"{source}: no {name!r} (sae_lens needs d_sae and d_in)")
    d_sae, d_in = int(cfg["d_sae"]), int(cfg["d_in"])
    expected = {"W_dec": (d_sae, int(cfg.get("d_out") or d_in)), "W_enc": (d_in, d_sae)}
    weights = folder / SAE_WEIGHTS_FILE
    header = read_header(weights)
    if "W_dec" not in header:
        raise ResolutionError(f"{weights}: no W_dec tensor (it holds {', '.join(header)})")
    for name, tensor in header.items():
        if tensor.dtype not in FLOAT_TENSORS:
            raise ResolutionError(
                f"{weights}: {name} holds {tensor.dtype} values; SAE weights are floating "
                f"({', '.join(FLOAT_TENSORS)})",
                hint="the file was not written by sae_lens; save the SAE again",
            )
    for name, shape in expected.items():
        entry = header.get(name)
        if entry is not None and entry.shape != shape:
            raise ResolutionError(
                f"{weights}: {name} has shape {list(entry.shape)}, but {source} says "
                f"{list(shape)} (d_sae={d_sae}, d_in={d_in})",
                hint="the weights and cfg.json come from different SAEs; save the SAE again",
            )


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _major_version(cfg: Mapping[str, Any]) -> int:
    """The major sae_lens version that wrote a config (0 when it does not say)."""
    metadata = cfg.get("metadata")
    version = cfg.get("sae_lens_version") or (
        metadata.get("sae_lens_version") if isinstance(metadata, dict) else None
    )
    head = str(version or "0").split(".", 1)[0]
    return int(head) if head.isdigit() else 0
