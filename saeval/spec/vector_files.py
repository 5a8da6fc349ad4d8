"""What ``saeval validate`` shows of a steering vector without a model: its width and norm.

- ``.safetensors`` (exactly one tensor): the safetensors library checks the header and reads the
  data (``saeval.spec.safetensors_header``, ``safetensors.deserialize``); the norm is computed
  with numpy, without torch;
- ``.npy``: ``numpy.load(allow_pickle=False, mmap_mode="r")``, which checks the file's size
  against its header before allocating;
- ``.pt``/``.pth``: ``torch.load(weights_only=True)`` (``saeval.spec.pt_steer_file.load_pt``); a
  vector file holds one tensor, an lm-eval steer file one ``steering_vector`` per hookpoint.

The vector must be 1-D, floating and finite. torch and numpy are imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saeval.errors import ResolutionError, SteerFileError
from saeval.spec.pt_steer_file import PT_SUFFIXES, load_pt
from saeval.spec.safetensors_header import read_header

if TYPE_CHECKING:
    import numpy as np

_NUMPY_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2"}  # BF16: the top half of a float32
_DTYPE_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}


@dataclass(frozen=True)
class VectorFacts:
    """A steering vector as ``validate`` reports it."""

    width: int
    norm: float
    dtype: str

    def describe(self) -> str:
        """``64 wide, |v| = 3.21 (float32)``."""
        return f"{self.width} wide, |v| = {self.norm:.4g} ({self.dtype})"


def vector_facts(path: Path, entry: str | None = None) -> VectorFacts:
    """Width, norm and dtype of the vector a row names; ResolutionError saying why not."""
    values, dtype = read_vector(path, entry)
    return _facts(path, values, dtype)


def read_vector(path: Path, entry: str | None = None) -> tuple[np.ndarray, str]:
    """The vector of a vector file (or of a .pt steer file's ``entry``) as a float numpy array,
    and its dtype's name; ResolutionError naming the file when it cannot be read."""
    if not path.is_file():
        raise ResolutionError(f"{path}: vector file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            return _safetensors(path)
        if suffix == ".npy":
            return _npy(path)
        if suffix in PT_SUFFIXES:
            return _pt(path, entry)
    except SteerFileError as error:
        raise ResolutionError(error.message, hint=error.hint) from None
    raise ResolutionError(f"{path}: not a .safetensors, .npy or .pt vector file")


def _facts(path: Path, values: np.ndarray, dtype: str) -> VectorFacts:
    """VectorFacts of a numpy array, which must be a finite 1-D vector."""
    import numpy as np

    if values.ndim != 1 or values.size == 0:
        raise ResolutionError(f"{path}: shape {values.shape}; a steering vector is 1-D")
    if not bool(np.isfinite(values).all()):
        raise ResolutionError(f"{path}: holds NaN or infinite values")
    norm = float(np.linalg.norm(values.astype(np.float64)))
    return VectorFacts(width=int(values.size), norm=norm, dtype=dtype)


def _safetensors(path: Path) -> tuple[np.ndarray, str]:
    """The one tensor of a safetensors file, as float numbers, and its dtype name: the header is
    checked by ``read_header`` (the safetensors library's own rules), the data read by the
    library's ``deserialize``, which checks each tensor's offsets against its shape again."""
    import numpy as np
    from safetensors import SafetensorError, deserialize

    header = read_header(path)
    if len(header) != 1:
        names = ", ".join(sorted(header)) or "none"
        raise ResolutionError(
            f"{path}: holds {len(header)} tensors ({names}); a vector file holds one"
        )
    ((name, tensor),) = header.items()
    raw_dtype = "<u2" if tensor.dtype == "BF16" else _NUMPY_DTYPES.get(tensor.dtype)
    if raw_dtype is None:
        raise ResolutionError(f"{path}: tensor {name!r} is {tensor.dtype}; expected a float")
    if len(tensor.shape) != 1:
        raise ResolutionError(f"{path}: shape {tensor.shape}; a steering vector is 1-D")
    try:
        ((_, stored),) = deserialize(path.read_bytes())
    except (SafetensorError, OSError) as error:
        raise ResolutionError(
            f"{path}: not a safetensors file the library can read ({error})"
        ) from None
    data = np.frombuffer(stored["data"], dtype=raw_dtype)
    if tensor.dtype == "BF16":
        data = (data.astype("<u4") << 16).view("<f4")
    return data.reshape(tensor.shape), _DTYPE_NAMES[tensor.dtype]


def _npy(path: Path) -> tuple[np.ndarray, str]:
    """A .npy file's array (never unpickled) and its dtype name. The file is memory-mapped
    first, so numpy checks that it holds as many bytes as its header's shape says before any
    memory is allocated for them."""
    import numpy as np

    try:
        mapped = np.load(path, allow_pickle=False, mmap_mode="r")
        values = np.array(mapped)
    except (ValueError, OSError, EOFError, MemoryError) as error:
        reason = str(error).strip() or "it ends before its data does"
        if "mmap length is greater than file size" in reason:
            reason = "its header describes more values than the file holds"
        raise ResolutionError(
            f"{path}: not a numeric .npy file numpy can read ({reason})"
        ) from None
    if not np.issubdtype(values.dtype, np.floating):
        raise ResolutionError(f"{path}: holds {values.dtype} values; expected floats")
    return values, str(values.dtype)


def _pt(path: Path, entry: str | None) -> tuple[np.ndarray, str]:
    """The vector of a .pt vector file, or of one entry of an lm-eval .pt steer file."""
    import torch

    tensor: Any = load_pt(path, str(path))
    if entry is not None:
        tensor = tensor[entry]["steering_vector"]  # checked when the file was read
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
        raise ResolutionError(
            f"{path}: holds a {type(tensor).__name__}; a vector file holds one "
            "floating torch tensor"
        )
    dtype = str(tensor.dtype).removeprefix("torch.")
    return tensor.detach().to(torch.float64).numpy(), dtype
