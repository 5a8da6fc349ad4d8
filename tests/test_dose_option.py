"""``saeval run --dose``: each dose becomes the scale whose measured mean ||h' - h|| / ||h|| on
the first --kl-docs documents is that dose (within 1% for one add row at one hook point; the
scale is rounded to 4 significant digits), run.json records doses and scales, and a steer file
with a clamp row is a one-line usage error (exit 2) before any model is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sae_builders import HOOK_NAME, MC_TASK, ROLLING_TASK, write_steer_csv
from typer.testing import CliRunner, Result

from saeval.cli.main import app

DOSES = (0.05, 0.2)


def assert_usage_error(result: Result, *needles: str) -> None:
    """Exit 2 (options contradict the steer file) with one ``error:`` line naming every needle."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("hint:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def _invoke(tiny_bundle: Path, steer: Path, output: Path, *args: str) -> Result:
    command = ["run", str(steer), "--model", str(tiny_bundle / "model")]
    command += ["--include-path", str(tiny_bundle / "tasks"), "--tasks", MC_TASK]
    command += ["--limit", "6", "--kl-docs", "4", "--device", "cpu", "--output", str(output)]
    return CliRunner().invoke(app, [*command, *args])


def test_dose_gives_the_measured_mean_dose(tiny_bundle: Path, tmp_path: Path) -> None:
    steer = write_steer_csv(tmp_path / "one.csv", [(3, 8.0, tiny_bundle / "sae", "")])
    doses = ",".join(map(str, DOSES))
    result = _invoke(tiny_bundle, steer, tmp_path, "--dose", doses, "--name", "dosed")
    assert result.exit_code == 0, result.output
    run = tmp_path / "dosed"
    manifest = json.loads((run / "run.json").read_text())
    record = manifest["dose"]
    assert record["doses"] == list(DOSES)
    assert manifest["scales"] == record["scales"]
    assert list(record["hooks"]) == [HOOK_NAME]
    for dose, scale in zip(DOSES, record["scales"], strict=True):
        assert scale == pytest.approx(dose / record["per_unit_scale"], rel=5e-4)  # 4 digits
        (path,) = (run / f"steered@{scale:g}").glob("side_effects_*.json")
        measured = json.loads(path.read_text())["dose"]
        assert measured["mean"] == pytest.approx(dose, rel=0.01)
        assert list(measured["hooks"]) == [HOOK_NAME]
    comparison = json.loads((run / "comparison.json").read_text())
    points = comparison["series"][0]["points"]
    assert [p["dose"] for p in points] == pytest.approx(list(DOSES), rel=0.01)
    csv_header = (run / "comparison.csv").read_text().splitlines()[0].split(",")
    assert {"kl", "dose", "dose_p95"} <= set(csv_header)
    markdown = (run / "comparison.md").read_text()
    assert "| KL (nats/token) | dose |" in markdown and "(p95 " in markdown
    assert list(run.glob("sweep_*_acc_dose.png")), "a sweep plot against the dose"


def test_dose_with_a_clamp_row_is_one_line_error(tiny_bundle: Path, tmp_path: Path) -> None:
    rows = [(3, 8.0, tiny_bundle / "sae", "", "add"), (5, 2.0, tiny_bundle / "sae", "", "clamp")]
    steer = write_steer_csv(tmp_path / "clamp.csv", rows, extra=["action"])
    result = _invoke(tiny_bundle, steer, tmp_path, "--dose", "0.5")
    assert_usage_error(result, "clamp.csv:3 action", "--dose", "clamp")
    assert not list(tmp_path.glob("clamp-*")), "no run folder before the error"


def test_dose_and_scale_together_is_one_line_error(tiny_bundle: Path, tmp_path: Path) -> None:
    steer = tiny_bundle / "steer.csv"
    result = _invoke(tiny_bundle, steer, tmp_path, "--dose", "0.5", "--scale", "2")
    assert_usage_error(result, "--scale or --dose")


def test_dose_of_a_rolling_task_counts_its_text_as_generated(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    """A rolling text is all generated (the KL pass's layout): a row steering generated positions
    is calibrated on it, and its measured dose is the request."""
    rows = [(3, 8.0, tiny_bundle / "sae", "", "generated")]
    steer = write_steer_csv(tmp_path / "gen.csv", rows, extra=["positions"])
    command = ["run", str(steer), "--model", str(tiny_bundle / "model"), "--limit", "4"]
    command += ["--include-path", str(tiny_bundle / "tasks"), "--tasks", ROLLING_TASK]
    command += ["--kl-docs", "4", "--device", "cpu", "--output", str(tmp_path), "--name", "r"]
    result = CliRunner().invoke(app, [*command, "--dose", "0.1"])
    assert result.exit_code == 0, result.output
    (scale,) = json.loads((tmp_path / "r" / "run.json").read_text())["dose"]["scales"]
    (path,) = (tmp_path / "r" / f"steered@{scale:g}").glob("side_effects_*.json")
    assert json.loads(path.read_text())["dose"]["mean"] == pytest.approx(0.1, rel=0.01)
