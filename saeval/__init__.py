"""saeval: evaluate SAE-steered language models on lm-eval benchmarks, with paired statistics."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("saeval")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
