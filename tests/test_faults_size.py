"""An experiment's size is known before any work: ``validate`` counts its evaluations, and
``saeval run`` refuses more than ``MAX_EVALUATIONS`` without ``--allow-large``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_checks import assert_one_line_error
from conftest import invoke
from experiment_builders import write_experiment

from saeval.errors import SaevalError
from saeval.spec.experiment import read_experiment
from saeval.spec.experiment_check import MAX_EVALUATIONS, counts


def _large(folder: Path, bundle: Path) -> Path:
    """5000 strengths x (1 + 1 random control) + the baseline, on one task: 10,001 evaluations."""
    scales = [round(0.001 * (i + 1), 3) for i in range(5000)]
    return write_experiment(
        folder,
        bundle,
        scales=scales,
        interventions={"adds": "steers/adds.csv"},
        tasks={"target": ["tiny_mc"]},
        metric={"target": "acc"},
    )


def test_the_count_is_configurations_plus_baseline_times_tasks(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    experiment = read_experiment(write_experiment(tmp_path, tiny_bundle))
    # 2 interventions x 2 strengths x (1 + 1 random control) = 8; (8 + 1) x 2 tasks = 18
    assert counts(experiment) == (8, 18)
    large = read_experiment(_large(tmp_path / "large", tiny_bundle))
    assert counts(large) == (10_000, 10_001) and MAX_EVALUATIONS == 10_000


def test_run_refuses_a_grid_above_the_limit_before_writing_anything(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    path = _large(tmp_path, tiny_bundle)
    output = tmp_path / "out"
    result = invoke("run", str(path), "--output", str(output))
    assert result.exit_code == 2, result.output
    assert "10,001 evaluations, above the limit of 10,000" in result.stderr
    assert "--allow-large" in result.stderr and "Traceback" not in result.output
    assert not output.exists()


def test_allow_large_starts_it(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from saeval.run import experiment

    def started(*args: Any, **kwargs: Any) -> Any:
        raise SaevalError("started")

    monkeypatch.setattr(experiment, "run_experiment", started)
    path = _large(tmp_path, tiny_bundle)
    args = ["run", str(path), "--output", str(tmp_path / "out"), "--allow-large"]
    assert_one_line_error(invoke(*args), "started")


def test_validate_says_the_count_and_the_limit(tiny_bundle: Path, tmp_path: Path) -> None:
    result = invoke("validate", str(_large(tmp_path, tiny_bundle)))
    text = " ".join(result.output.split())
    assert "1 baseline + 10000 configurations, 10001 evaluations" in text
    assert "(10,001 evaluations, above the limit of 10,000: saeval run needs --allow-large)" in text


def test_allow_large_is_refused_with_steer_files(tiny_bundle: Path) -> None:
    args = ["run", str(tiny_bundle / "steer.csv"), "--tasks", "tiny_mc", "--allow-large"]
    result = invoke(*args)
    assert (
        result.exit_code == 2 and "--allow-large is an option of experiment files" in result.stderr
    )
