"""One progress line for the configurations of a task that share passes.

With shared passes the first configuration of a task that runs answers the requests of every
configuration still to run, and the others then take their answers at once. ``GroupLines``
draws such a group as one line: requests done/total over all its configurations (a request of
the running configuration counts once for each configuration still to run, which its pass
answers too; where no requests are counted, as in an experiment's parent, its configurations
done/total) and each configuration's name ticked when its files are written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.markup import escape
from rich.progress import Progress, TaskID


@dataclass
class _Group:
    handle: TaskID
    names: list[str]
    done: dict[str, str] = field(default_factory=dict)  # name -> its mark
    completed: int = 0
    total: int = 0  # requests over all its configurations; 0 until counted


class GroupLines:
    """The group lines of a Rich ``Progress``: one per group of configurations of a task
    (several groups of one task may run side by side, on different workers)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.expected: dict[tuple[str, str], tuple[str, ...]] = {}  # (task, name) -> its group
        self.groups: dict[tuple[str, tuple[str, ...]], _Group] = {}
        self.running: _Group | None = None

    def expect(self, task: str, configurations: Sequence[str]) -> None:
        """``configurations`` of ``task`` will share passes: draw them as one line."""
        names = tuple(configurations)
        for name in names:
            self.expected[(task, name)] = names

    def started(self, configuration: str, task: str) -> bool:
        """Show (or continue) the line of the group ``configuration`` belongs to; False when it
        belongs to none."""
        names = self.expected.get((task, configuration))
        if names is None:
            return False
        group = self.groups.get((task, names))
        if group is None:
            handle = self.progress.add_task(
                _label(task, names, {}), total=len(names), requests=_units(0, len(names))
            )
            group = self.groups[(task, names)] = _Group(handle, list(names))
        self.running = group
        return True

    def requests_done(self, done: int, total: int) -> bool:
        """Advance the running group's line; False when no group runs."""
        group = self.running
        if group is None:
            return False
        left = len(group.names) - len(group.done)  # the configurations the running pass answers
        group.total = max(group.total, total * len(group.names))
        group.completed = max(group.completed, total * len(group.done) + done * left)
        self.progress.update(
            group.handle,
            completed=group.completed,
            total=group.total,
            requests=f"{group.completed}/{group.total} requests",
        )
        return True

    def finished(self, configuration: str, task: str, cached: bool = False) -> bool:
        """Tick ``configuration`` (its files are written; ``cached``: a reused baseline); the
        line completes with the last one. False when it belongs to no group."""
        names = self.expected.get((task, configuration))
        group = None if names is None else self.groups.get((task, names))
        if names is None or group is None:
            return False
        group.done[configuration] = "[green]✓ (cached)[/]" if cached else "[green]✓[/]"
        if self.running is group:
            self.running = None
        description = _label(task, group.names, group.done)
        if not group.total:  # no request counts (an experiment's parent): the units done
            count = len(group.done), len(group.names)
            self.progress.update(group.handle, completed=count[0], requests=_units(*count))
        if len(group.done) < len(group.names):
            self.progress.update(group.handle, description=description)
            return True
        total = group.total or len(group.names)
        self.progress.update(group.handle, description=description, total=total, completed=total)
        del self.groups[(task, names)]
        for name in names:
            del self.expected[(task, name)]
        return True


def _units(done: int, total: int) -> str:
    """``1/3 done``: the group's configurations whose files are written."""
    return f"{done}/{total} done"


def _label(task: str, names: Sequence[str], done: dict[str, str]) -> str:
    """``task: baseline ✓, steered@0.5, steered@2`` (names ticked once written)."""
    marked = [f"{escape(name)} {done[name]}" if name in done else escape(name) for name in names]
    return f"{escape(task)}: {', '.join(marked)}"
