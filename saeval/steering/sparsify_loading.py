"""Load EleutherAI's sparse coders (``eai-sparsify``, import name ``sparsify``) for lm-eval rows
with ``loader=sparsify``, as lm-eval does: ``SparseCoder.load_from_disk(sparse_model /
hookpoint)`` when ``sparse_model`` is a local folder, else ``SparseCoder.load_from_hub``.
``sparsify`` prints a line about Triton when imported; it is kept off the terminal.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from saeval.errors import ResolutionError

OFFLINE_HINT = (
    "the coder is not in the local Hugging Face cache: run once with network access "
    "(HF_HUB_OFFLINE unset), or give a local folder as sparse_model"
)


def sparse_coder_class() -> Any:
    """``sparsify.SparseCoder``, imported without its import-time print."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from sparsify import SparseCoder
    except ImportError:
        raise ResolutionError(
            "loader=sparsify needs EleutherAI's sparsify package", hint="pip install eai-sparsify"
        ) from None
    return SparseCoder


def load_sparse_coder(sparse_model: str, hookpoint: str) -> Any:
    """The SparseCoder of ``hookpoint`` in ``sparse_model`` (a folder or a hub repo), on the CPU."""
    from huggingface_hub.errors import HfHubHTTPError

    coder_class = sparse_coder_class()
    folder = Path(sparse_model).expanduser()
    try:
        if folder.exists():
            return coder_class.load_from_disk(folder / hookpoint, device="cpu")
        return coder_class.load_from_hub(sparse_model, hookpoint, device="cpu")
    except (OSError, ValueError, KeyError, HfHubHTTPError) as error:
        hint = None if folder.exists() else OFFLINE_HINT
        reason = " ".join(str(error).split())
        raise ResolutionError(
            f"cannot load sparsify coder {sparse_model} {hookpoint!r}: {reason}", hint=hint
        ) from None
