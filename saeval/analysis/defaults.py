"""Defaults every report shares (``saeval run``, ``saeval compare`` and the library agree)."""

DEFAULT_MARGIN = 0.02  # absolute non-inferiority margin of a sweep's safe strength
DEFAULT_ALPHA = 0.05  # family-wise error rate of Holm's correction; intervals are 1 - alpha
