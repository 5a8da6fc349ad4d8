"""saeval: evaluate SAE-steered language models on lm-eval benchmarks, with paired statistics.

The public API, imported lazily so that ``import saeval`` stays light (no torch, lm-eval or
sae_lens until a name that needs them is used)::

    saeval.validate(["steers/dog.csv"])                    # offline checks of steer files
    saeval.evaluate(saeval.RunConfig(steer_files=(...,), tasks=("mmlu",)))  # `saeval run`
    saeval.compare(saeval.load_side(a), saeval.load_side(b))

This module is also where the built-in demo release is plugged into the SAE catalog, so no
lower layer needs to know the demo.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from saeval.demo.release import register as _register_demo_release

try:
    __version__ = version("saeval")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

_register_demo_release()

_PUBLIC = {  # public name -> (module, attribute)
    "SaevalError": ("saeval.errors", "SaevalError"),
    "read_steer_file": ("saeval.spec.steer_file", "read_steer_file"),
    "validate": ("saeval.spec.resolve", "validate"),
    "resolve": ("saeval.spec.resolve", "resolve"),
    "build_plan": ("saeval.steering.plan", "build_plan"),
    "RunConfig": ("saeval.run.config", "RunConfig"),
    "RunResult": ("saeval.run.config", "RunResult"),
    "evaluate": ("saeval.run.runner", "run"),  # `saeval.run` is the package of that layer
    "load_run": ("saeval.analysis.results_io", "load_run"),
    "load_side": ("saeval.analysis.results_io", "load_side"),
    "compare": ("saeval.analysis.compare", "compare"),
    "sweep": ("saeval.analysis.sweep", "sweep"),
    "render": ("saeval.analysis.render", "render"),
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'saeval' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    return getattr(import_module(module), attribute)
