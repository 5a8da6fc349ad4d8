"""Numbers formatted for reading, in every table and message: 4 significant digits, p-values
like 0.0021 or <1e-4, intervals as [-0.0403, +0.4040], a dash where a value is missing."""

from __future__ import annotations

import math

MISSING = "—"


def ci_header(confidence: float) -> str:
    """The header of a delta's interval: every one is per row, not adjusted like Holm's p."""
    return f"unadjusted {confidence:.0%} CI"


def fmt_number(value: float | None, *, signed: bool = False) -> str:
    """4 decimals below 1 (like lm-eval's tables), else 4 significant digits; a dash if missing."""
    if value is None or math.isnan(value):
        return MISSING
    sign = "+" if signed else ""
    if math.isinf(value) or abs(value) >= 1e4:
        return f"{value:{sign}.0f}"
    if abs(value) >= 1:
        return f"{value:{sign}#.4g}".rstrip(".")
    if value != 0 and abs(value) < 1e-3:
        return f"{value:{sign}.3g}"
    return f"{value:{sign}.4f}"


def fmt_p(p: float | None) -> str:
    """A p-value with two significant digits; below 1e-4 as "<1e-4"."""
    if p is None or math.isnan(p):
        return MISSING
    if p < 1e-4:
        return "<1e-4"
    return f"{p:.2g}"


def fmt_estimate(value: float, stderr: float | None) -> str:
    """ "0.2500 ± 0.0903", or the value alone where no standard error was reported."""
    if stderr is None:
        return fmt_number(value)
    return f"{fmt_number(value)} ± {fmt_number(stderr)}"


def fmt_ci(low: float | None, high: float | None) -> str:
    """A confidence interval of a delta: "[-0.0403, +0.4040]"."""
    if low is None or high is None:
        return MISSING
    return f"[{fmt_number(low, signed=True)}, {fmt_number(high, signed=True)}]"
