"""The progress display draws the configurations of a task that share passes as one line."""

from __future__ import annotations

from saeval.cli.progress import ProgressEvents
from saeval.records.run_record import TaskRecord

NAMES = ["baseline", "steered@0.5", "steered@2"]


def _record(configuration: str, task: str, reused: str | None = None) -> TaskRecord:
    return TaskRecord(configuration, task, 1.0, "now", "r.json", [], reused_from=reused)


def test_a_group_is_one_line_counting_every_configurations_requests() -> None:
    with ProgressEvents() as events:
        events.group_started("gen", NAMES)
        events.task_started("baseline", "gen", 1, 7)
        events.requests_done(4, 10)  # the shared pass: 4 prompts for each of 3 configurations
        (line,) = events.progress.tasks
        assert (line.completed, line.total, line.fields["requests"]) == (12, 30, "12/30 requests")
        events.requests_done(10, 10)
        events.task_finished(_record("baseline", "gen"))
        assert "baseline [green]✓[/], steered@0.5, steered@2" in line.description
        assert line.completed == 30  # every request answered; two configurations to write
        events.task_started("other", "mc", 2, 7)  # a task alone keeps its own line
        events.requests_done(3, 8)
        events.task_finished(_record("other", "mc"))
        for name in NAMES[1:]:
            events.task_started(name, "gen", 3, 7)
            events.requests_done(10, 10)  # answers taken from the shared pass
            events.task_finished(_record(name, "gen"))
        assert len(events.progress.tasks) == 2 and line.finished
        assert (line.completed, line.total) == (30, 30)
        assert line.description.count("✓") == 3


def test_a_cached_baseline_is_ticked_and_the_pass_counts_the_others() -> None:
    with ProgressEvents() as events:
        events.group_started("gen", NAMES)
        events.task_started("baseline", "gen", 1, 3)
        events.task_finished(_record("baseline", "gen", reused="r0"))
        events.task_started("steered@0.5", "gen", 2, 3)
        events.requests_done(5, 10)  # one pass for the two strengths; the baseline counts whole
        (line,) = events.progress.tasks
        assert (line.completed, line.total) == (10 + 2 * 5, 30)
        assert "baseline [green]✓ (cached)[/]" in line.description
