"""The JSON reports saeval writes: ``comparison.json`` (one comparison or a sweep) and the
leaderboard's JSON, each one typed record with its schema (``saeval.records.schema``).

Each holds every number unrounded; the rows, series and entries inside are the analysis's own
dataclasses as ``dataclasses.asdict`` writes them. No saeval reads these files back: they are
for their users, so a new key within a version only adds.
"""

from __future__ import annotations

from typing import Any, TypedDict

from saeval.records.schema import schema_id

COMPARISON_SCHEMA = schema_id("comparison", 1)
SWEEP_SCHEMA = schema_id("sweep", 1)
LEADERBOARD_SCHEMA = schema_id("leaderboard", 1)


class ComparisonRecord(TypedDict):
    """``comparison.json`` of one comparison: side b against side a, row by row."""

    schema: str  # COMPARISON_SCHEMA
    a: dict[str, Any]
    b: dict[str, Any]
    alpha: float
    rows: list[dict[str, Any]]
    notes: list[str]


class SweepRecord(TypedDict):
    """``comparison.json`` of a sweep: every scale against the baseline, series by series."""

    schema: str  # SWEEP_SCHEMA
    baseline: dict[str, Any]
    margin: float
    relative_margin: float
    margin_test: str
    alpha: float
    series: list[dict[str, Any]]
    steerability: list[dict[str, Any]]
    notes: list[str]


class LeaderboardRecord(TypedDict):
    """``leaderboard.json``: every intervention and control at every strength."""

    schema: str  # LEADERBOARD_SCHEMA
    baseline: dict[str, Any]
    target_tasks: list[str]
    capability_tasks: list[str]
    target_metric: str
    capability_metric: str
    target_direction: str
    margin: float
    capability_margin: float
    alpha: float
    family_size: int
    sweet_spots: dict[str, float | None]
    rows: list[dict[str, Any]]
    notes: list[str]
