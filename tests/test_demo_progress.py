"""`saeval demo` makes three runs (the sweep, the first position left alone, the prompted run):
each run's progress counts its own units, so no count passes its total."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import invoke
from test_demo_e2e import ANSWERS, fake_demo

from saeval.records.run_record import TaskRecord
from saeval.run.config import RunConfig, RunEvents, RunResult


def test_every_demo_run_counts_its_own_units(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_demo(monkeypatch, tmp_path, {**ANSWERS, 2.0: ANSWERS[4.0]}, all_but_bos=ANSWERS[4.0])
    import saeval.run.runner as runner

    write = runner.run
    sizes: list[int] = []

    def counted(config: RunConfig, events: RunEvents | None = None) -> RunResult:
        """The fake run, reporting each of its (configuration, task) units as it would."""
        assert events is not None
        names = [] if config.no_baseline else ["baseline"]
        names += [f"steered@{scale:g}" for scale in config.scales]
        units = [(name, task) for name in names for task in config.tasks]
        sizes.append(len(units))
        for step, (name, task) in enumerate(units, start=1):
            events.task_started(name, task, step, len(units))
            events.task_finished(TaskRecord(name, task, 1.0, "now", "r.json", []))
        return write(config, events)

    monkeypatch.setattr(runner, "run", counted)
    result = invoke("demo", "--output", str(tmp_path / "out"), "--scales", "1,2", "--limit", "4")
    assert result.exit_code == 0, result.output
    counts = [(int(a), int(b)) for a, b in re.findall(r"; (\d+)/(\d+) done", result.stderr)]
    assert len(sizes) == 3 and len(counts) == sum(sizes)  # the sweep, all_but_bos, prompted
    # each run counts 1..n of its own n units, in order
    assert counts == [(i, n) for n in sizes for i in range(1, n + 1)]
    assert "extra run demo-run-all_but_bos: the first position unsteered" in result.stderr
    assert "extra run demo-run-prompt: asked 'Talk about dogs.'" in result.stderr
