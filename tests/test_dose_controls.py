"""Random controls matched on the dose (``controls: {random: N, match: dose}``), end to end on
the tiny bundle (one CPU worker): each control's recorded dose, and the intervention's, equal the
dose its evaluation measured on the same documents (another path: the side-effects files the KL
pass wrote), and the two are within 10% of each other; ``saeval validate`` reads the key offline.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import invoke
from experiment_builders import write_experiment
from test_prompt_experiment import measured

from saeval.errors import ResultsError
from saeval.records.matched_control import Matched, matched_path, matched_text, read_matched
from saeval.run.control_match import TOLERANCE
from saeval.spec.experiment import read_experiment

CONTROLS = {"random": 1, "match": "dose"}


@pytest.fixture(scope="module")
def run(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dose-controls")
    path = write_experiment(folder, tiny_bundle, scales=[2], controls=CONTROLS)
    args = ["run", str(path), "--device", "cpu", "--output", str(folder / "out")]
    result = invoke(*args, "--name", "d")
    assert result.exit_code == 0, result.output
    return folder / "out" / "d"


@pytest.mark.parametrize("intervention", ["adds", "clamps"])
def test_dose_matched_controls_dose_as_much_as_their_intervention(
    run: Path, intervention: str
) -> None:
    definition = json.loads((run / "experiment.json").read_text())["definition"]
    assert definition["control_match"] == "dose"
    record = read_matched(run / "controls" / f"{intervention}~random1@2.json")
    assert record is not None and record.match == "dose" and record.within_tolerance
    assert abs(record.control - record.intervention) <= TOLERANCE * record.intervention
    assert record.steps[0][0] == 2.0 and record.steps[-1][1] == record.control
    target = measured(run / f"{intervention}@2", "dose")
    assert record.intervention == pytest.approx(target, rel=1e-4)
    evaluated = measured(run / f"{intervention}~random1@2", "dose")
    assert record.control == pytest.approx(evaluated, rel=1e-4)
    assert abs(evaluated - target) <= TOLERANCE * target


def test_an_add_control_of_the_same_norm_has_the_same_dose(run: Path) -> None:
    """||scale * v|| / ||h|| depends on v's norm alone: the first try matches exactly."""
    record = read_matched(run / "controls" / "adds~random1@2.json")
    assert record is not None and len(record.steps) == 1
    assert record.control == pytest.approx(record.intervention, rel=1e-5)


def test_validate_reads_match_dose_offline(tiny_bundle: Path, tmp_path: Path) -> None:
    path = write_experiment(tmp_path, tiny_bundle, controls=CONTROLS)
    assert read_experiment(path).control_match == "dose"
    result = invoke("validate", str(path))
    assert result.exit_code == 0, result.output
    assert "valid" in result.stdout


def test_a_clamp_control_s_strength_is_searched(run: Path) -> None:
    """A random latent clamped to the same target doses otherwise: the first try misses by more
    than 10%, and the strength found is not the intervention's."""
    record = read_matched(run / "controls" / "clamps~random1@2.json")
    assert record is not None and len(record.steps) > 1
    first = record.steps[0][1]
    assert abs(first - record.intervention) > TOLERANCE * record.intervention
    assert record.control_scale != record.scale


def test_a_matched_control_record_reads_back_and_refuses_others(tmp_path: Path) -> None:
    found = Matched("dose", 2.0, 0.5, 1.5, 0.48, True, ((2.0, 0.6), (1.5, 0.48)), TOLERANCE)
    path = matched_path(tmp_path, "adds~random1@2")
    path.parent.mkdir()
    path.write_text(matched_text(found))
    assert read_matched(path) == found
    assert read_matched(matched_path(tmp_path, "adds~random2@2")) is None
    data = json.loads(path.read_text())
    for change, problem in [
        ({"schema": "saeval.control/1"}, "schema 'saeval.control/1' is not one this saeval reads"),
        ({"control_scale": None}, "control_scale, control, tolerance must be numbers"),
    ]:
        path.write_text(json.dumps(data | change))
        with pytest.raises(ResultsError, match=problem) as raised:
            read_matched(path)
        assert str(path) in str(raised.value)
    del data["steps"]
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="no 'steps'"):
        read_matched(path)
