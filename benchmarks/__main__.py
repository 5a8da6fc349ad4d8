"""Run every benchmark module's ``main()`` in turn, or only those named on the command line:
``python -m benchmarks`` / ``python -m benchmarks steering``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

MODULES = (
    "steering",
    "run_vs_lmeval",
    "kl_cost",
    "experiment_workers",
    "experiment_pass",
    "shared_prefix",
    "shared_generation",
    "positions",
)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the named benchmarks (default: all), each with its default options."""
    names = list(sys.argv[1:] if argv is None else argv) or list(MODULES)
    unknown = [name for name in names if name not in MODULES]
    if unknown:
        raise SystemExit(f"unknown benchmark {unknown[0]!r}; known: {', '.join(MODULES)}")
    for name in names:
        print(f"== benchmarks.{name} ==", flush=True)
        importlib.import_module(f"benchmarks.{name}").main([])


if __name__ == "__main__":
    main()
