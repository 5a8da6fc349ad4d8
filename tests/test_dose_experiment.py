"""The experiment key ``dose:``: an intervention's strengths in activation units become scales
calibrated on the experiment's tasks (the measured dose of each within 1%, as ``saeval run
--dose``), recorded in experiment.json; ``saeval validate`` checks the key offline (scales and
dose together, a clamp row under dose at run time)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from experiment_builders import experiment_data, write_steer_files
from sae_builders import MC_TASK
from typer.testing import CliRunner

from saeval.cli.main import app
from saeval.spec.experiment import read_experiment

DOSES = [0.05, 0.2]


def _write(folder: Path, bundle: Path, **changes: object) -> Path:
    write_steer_files(folder, bundle)
    path = folder / "exp.yaml"
    data = experiment_data(bundle, controls=None, **changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_dose_in_an_experiment_gives_the_measured_dose(tiny_bundle: Path, tmp_path: Path) -> None:
    interventions = {"adds": {"steer": "steers/adds.csv", "dose": DOSES}}
    path = _write(tmp_path, tiny_bundle, interventions=interventions)
    output = tmp_path / "results"
    args = ["run", str(path), "--kl-docs", "3", "--output", str(output), "--name", "exp"]
    result = CliRunner().invoke(app, [*args, "--devices", "cpu"])
    assert result.exit_code == 0, result.output
    definition = json.loads((output / "exp" / "experiment.json").read_text())["definition"]
    entry = definition["interventions"]["adds"]
    assert entry["doses"] == DOSES
    for dose, scale in zip(DOSES, entry["scales"], strict=True):
        (found,) = (output / "exp" / f"adds@{scale:g}").glob(f"side_effects_{MC_TASK}_*.json")
        assert json.loads(found.read_text())["dose"]["mean"] == pytest.approx(dose, rel=0.01)


def test_validate_reads_dose_and_rejects_it_beside_scales(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    path = _write(tmp_path, tiny_bundle, scales=None, dose=[0.5, 1])
    experiment = read_experiment(path)
    assert all(i.doses == (0.5, 1.0) and i.scales == () for i in experiment.interventions)
    both = {"adds": {"steer": "steers/adds.csv", "dose": [1], "scales": [1]}}
    path = _write(tmp_path, tiny_bundle, interventions=both)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code != 0
    assert "interventions.adds" in result.stderr and "scales or dose" in result.stderr


def test_dose_with_clamp_rows_is_an_error(tiny_bundle: Path, tmp_path: Path) -> None:
    interventions = {"clamps": {"steer": "steers/clamps.csv", "dose": [0.5]}}
    path = _write(tmp_path, tiny_bundle, interventions=interventions)
    result = CliRunner().invoke(app, ["run", str(path), "--output", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert "clamps.csv:2 action" in result.stderr and "--dose" in result.stderr
