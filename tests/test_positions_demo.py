"""The demo's line comparing ``all`` and ``all_but_bos`` at 2x on the knowledge task, with the
runner patched (the real demo is the lead's: minutes on Gemma 3 270M)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import invoke
from test_demo_e2e import fake_demo

from saeval.demo import run as demo_run
from saeval.run.config import RunConfig

PREFERENCE, KNOWLEDGE = demo_run.PREFERENCE_TASK, demo_run.KNOWLEDGE_TASK
# Knowledge right in 10/10 unsteered, 8/10 at 1x, 5/10 at 2x; 7/10 at 2x without the first
# position steered. The dog option is chosen in 2/10, 4/10, 6/10.
ANSWERS = {
    None: {PREFERENCE: [1] * 2 + [0] * 8, KNOWLEDGE: [1] * 10},
    1.0: {PREFERENCE: [1] * 4 + [0] * 6, KNOWLEDGE: [1] * 8 + [0] * 2},
    2.0: {PREFERENCE: [1] * 6 + [0] * 4, KNOWLEDGE: [1] * 5 + [0] * 5},
}
SKIPPING_THE_FIRST = {KNOWLEDGE: [1] * 7 + [0] * 3}


@pytest.fixture
def configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[RunConfig]:
    return fake_demo(monkeypatch, tmp_path, ANSWERS, SKIPPING_THE_FIRST)


def test_the_demo_compares_every_position_with_the_first_left_alone_at_2x(
    configs: list[RunConfig], tmp_path: Path
) -> None:
    result = invoke("demo", "--output", str(tmp_path), "--scales", "1,2")
    assert result.exit_code == 0, result.output
    main, extra = [config for config in configs if config.system_instruction is None]
    assert (main.positions, extra.positions) == ("all", "all_but_bos")
    assert (extra.tasks, extra.scales, extra.no_baseline) == ((KNOWLEDGE,), (2.0,), True)
    assert extra.name == "demo-run-all_but_bos" and extra.output == main.output
    assert (
        "knowledge at 2x: 0.50 with every position steered, 0.70 leaving the first position "
        "alone (positions all_but_bos)"
    ) in result.stdout


def test_without_2x_the_demo_runs_no_extra_configuration(
    configs: list[RunConfig], tmp_path: Path
) -> None:
    result = invoke("demo", "--output", str(tmp_path), "--scales", "1")
    assert result.exit_code == 0, result.output
    unprompted = [config for config in configs if config.system_instruction is None]
    assert [config.positions for config in unprompted] == ["all"]
    assert "leaving the first position alone" not in result.stdout
