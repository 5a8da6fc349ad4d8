"""An experiment's parent follows its workers through the run folder: each worker's units are
reported one at a time (a worker claims a group of units of one task at once), its group as
one progress line with the configurations done/total, each ticked when its files are written."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from saeval.cli.progress import ProgressEvents
from saeval.records.run_record import TaskRecord
from saeval.run import experiment

UNITS = [(name, task) for task in ("mc", "gen") for name in ("baseline", "s@1", "s@2")]


class Recorder(ProgressEvents):
    """The live display's state, and every event in order."""

    def __init__(self) -> None:
        super().__init__(live=True)
        self.seen: list[tuple[Any, ...]] = []

    def group_started(self, task: str, configurations: Any) -> None:
        self.seen.append(("group", task, tuple(configurations)))
        super().group_started(task, configurations)

    def task_started(self, configuration: str, task: str, step: int, steps: int) -> None:
        self.seen.append(("start", configuration, task, step, steps))
        super().task_started(configuration, task, step, steps)

    def task_finished(self, record: TaskRecord) -> None:
        self.seen.append(("done", record.configuration, record.task))
        super().task_finished(record)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A run folder faked: the claims and the records the test sets."""
    state: dict[str, Any] = {"claims": {}, "completed": []}
    manifest = lambda: SimpleNamespace(completed=list(state["completed"]), errors=[])  # noqa: E731
    monkeypatch.setattr(experiment, "claims", lambda _: dict(state["claims"]))
    monkeypatch.setattr(experiment.RunStore, "open", lambda _: SimpleNamespace(manifest=manifest()))
    state["store"] = SimpleNamespace(folder=tmp_path, manifest=manifest())
    return state


def finish(state: dict[str, Any], configuration: str, task: str) -> None:
    state["completed"].append(TaskRecord(configuration, task, 1.0, "now", "r.json", []))


def test_each_worker_runs_one_unit_at_a_time_and_its_group_is_one_line(
    folder: dict[str, Any],
) -> None:
    with Recorder() as events:
        watch = experiment._Watch(folder["store"], [list(u) for u in UNITS], events)  # type: ignore[arg-type]
        folder["claims"] = {0: "w0", 1: "w0", 2: "w0", 3: "w1", 4: "w1", 5: "w1"}
        watch.update()
        assert events.seen == [
            ("group", "mc", ("baseline", "s@1", "s@2")),
            ("start", "baseline", "mc", 1, 6),
            ("group", "gen", ("baseline", "s@1", "s@2")),
            ("start", "baseline", "gen", 4, 6),
        ]
        lines = {t.description.split(":")[0]: t for t in events.progress.tasks}
        assert set(lines) == {"mc", "gen"}  # one line per group, not one per claimed unit
        assert [lines["mc"].fields["requests"], lines["mc"].completed] == ["0/3 done", 0]
        del events.seen[:]
        finish(folder, "baseline", "mc")
        watch.update()
        assert events.seen == [("done", "baseline", "mc"), ("start", "s@1", "mc", 2, 6)]
        assert lines["mc"].fields["requests"] == "1/3 done" and lines["mc"].completed == 1
        assert "baseline [green]✓[/], s@1, s@2" in lines["mc"].description
        del events.seen[:]
        for name in ("s@1", "s@2"):  # the last one finished before the parent saw it start
            finish(folder, name, "mc")
        watch.update()
        assert events.seen == [
            ("done", "s@1", "mc"),
            ("start", "s@2", "mc", 3, 6),
            ("done", "s@2", "mc"),
        ]
        assert lines["mc"].fields["requests"] == "3/3 done" and lines["mc"].finished
        assert lines["gen"].fields["requests"] == "0/3 done" and not lines["gen"].finished


def test_two_groups_of_one_task_on_two_workers_are_two_lines(folder: dict[str, Any]) -> None:
    units = [(f"s@{i}", "mc") for i in range(4)]
    with Recorder() as events:
        watch = experiment._Watch(folder["store"], [list(u) for u in units], events)  # type: ignore[arg-type]
        folder["claims"] = {0: "w0", 1: "w0", 2: "w1", 3: "w1"}
        watch.update()
        assert [t.description for t in events.progress.tasks] == ["mc: s@0, s@1", "mc: s@2, s@3"]
        finish(folder, "s@2", "mc")
        watch.update()
        first, second = events.progress.tasks
        assert first.fields["requests"] == "0/2 done" and second.fields["requests"] == "1/2 done"


def test_a_long_group_line_wraps_and_keeps_its_names_and_count_whole() -> None:
    import io

    from rich.console import Console

    names = [f"{kind}@{scale}" for kind in ("adds", "adds~random1", "clamps") for scale in (1, 2)]
    with Recorder() as events:
        events.group_started("tiny_mc", names)
        events.task_started(names[0], "tiny_mc", 1, len(names))
        for name in names[:4]:
            events.task_finished(TaskRecord(name, "tiny_mc", 1.0, "now", "r.json", []))
        buffer = io.StringIO()
        Console(file=buffer, width=80, color_system=None).print(
            events.progress.make_tasks_table(events.progress.tasks)
        )
    text = buffer.getvalue()
    assert "…" not in text and max(len(line.rstrip()) for line in text.splitlines()) <= 80
    assert " 4/6 done " in text
    words = text.replace(",", " ").split()
    assert all(name in words for name in names), text
