"""Defaults every report shares (``saeval run``, ``saeval compare`` and the library agree), and
the checks of the options that override them."""

from __future__ import annotations

import math

from saeval.errors import UsageError

DEFAULT_MARGIN = 0.02  # absolute margin of a sweep's safe strength (metrics in [0, 1])
DEFAULT_RELATIVE_MARGIN = 0.05  # margin of unbounded metrics: a fraction of the baseline
NONINFERIORITY = "noninferiority"  # the margin tests of a sweep (saeval.analysis.margins)
EQUIVALENCE = "equivalence"
MARGIN_TESTS = (NONINFERIORITY, EQUIVALENCE)
DEFAULT_ALPHA = 0.05  # family-wise error rate of Holm's correction; intervals are 1 - alpha


def check_margin(margin: float) -> None:
    """UsageError unless the non-inferiority margin is a finite number >= 0."""
    if not (math.isfinite(margin) and margin >= 0):
        raise UsageError(f"--margin must be a finite number >= 0 (absolute), got {margin}")


def check_relative_margin(fraction: float) -> None:
    """UsageError unless the relative margin is a finite fraction >= 0."""
    if not (math.isfinite(fraction) and fraction >= 0):
        raise UsageError(
            f"--relative-margin must be a finite fraction >= 0 (0.05 is 5% of the baseline), "
            f"got {fraction}"
        )


def check_margin_test(test: str) -> None:
    """UsageError unless ``test`` names a margin test."""
    if test not in MARGIN_TESTS:
        raise UsageError(f"--margin-test must be {' or '.join(MARGIN_TESTS)}, got {test!r}")


def check_alpha(alpha: float) -> None:
    """UsageError unless the error rate is strictly between 0 and 1."""
    if not 0.0 < alpha < 1.0:
        raise UsageError(f"--alpha must be between 0 and 1 (exclusive), got {alpha}")
