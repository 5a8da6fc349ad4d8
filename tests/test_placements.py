"""The same units through each placement of the one unit evaluator (``saeval.run.units``): one
process (``saeval run STEER.csv``), an experiment's worker (``saeval run EXPERIMENT.yaml``) and
two data parallel ranks (``accelerate launch``) give the same files, the same run.json entries
and the same messages.

Each placement runs three times into its own output folder: once to fill the baseline cache
(of the multiple-choice task; an experiment's of both),
once more after the cache entries were damaged (the damaged-cache note, then the baseline is
computed again; the positions note of rows steering only generated positions), and that run
resumed (the resume line). Each message is named once, here.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from experiment_builders import experiment_data
from sae_builders import GEN_TASK, MC_TASK, write_steer_csv
from test_data_parallel import _launch
from test_experiment_run import documents
from typer.testing import CliRunner

from saeval.cli.main import app

TASKS = (MC_TASK, GEN_TASK)
HEX = r"[0-9a-f]{12}"
DAMAGED = rf"cached baseline {HEX} of {MC_TASK} was damaged \([^)]*\); computing it again"
MESSAGES = {  # each message every placement must print, as a pattern of the whitespace-joined text
    "damaged cache": DAMAGED,
    "positions": rf"positions generated steers nothing on {MC_TASK}: each answer is one token",
    "resume": r"resuming \S+ \(4 results kept\)",
}
STEERED = {"run": "steered", "experiment": "gen@1", "ranks": "steered"}


def _steer(folder: Path, bundle: Path) -> Path:
    """Rows that steer generated positions only: MC scores stay, generations change."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_steer_csv(folder / "gen.csv", [(3, 8.0, bundle / "sae", "", "generated")],
                           extra=["positions"])  # fmt: skip


def _run_args(bundle: Path, steer: Path, output: Path, name: str) -> list[str]:
    tasks = TASKS if name == "second" else (MC_TASK,)  # the first run fills the cache for MC
    return [
        "run", str(steer), "--model", str(bundle / "model"), "--include-path",
        str(bundle / "tasks"), "--tasks", ",".join(tasks), "--limit", "2", "--scale", "1",
        "--kl-docs", "2", "--output", str(output), "--name", name,
    ]  # fmt: skip


def _experiment(folder: Path, bundle: Path) -> Path:
    _steer(folder / "steers", bundle)
    data = experiment_data(
        bundle,
        interventions={"gen": "steers/gen.csv"},
        scales=[1],
        limit=2,
        controls=None,
        kl_docs=2,
    )
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def _three_runs(placement: str, bundle: Path, folder: Path) -> tuple[Path, str]:
    """(the second run's folder, the text of the second run and its resume)."""
    output = folder / "results"
    texts = []
    for name, extra in (("first", []), ("second", []), ("second", ["--resume"])):
        if name == "second" and not extra:
            _damage_cache(output)
        if placement == "experiment":
            path = _experiment(folder, bundle)
            args = ["run", str(path), "--devices", "cpu", "--output", str(output), "--name", name]
            texts.append(_invoke([*args, *extra]))
            continue
        args = [*_run_args(bundle, _steer(folder, bundle), output, name), *extra]
        if placement == "run":
            texts.append(_invoke([*args, "--device", "cpu"]))
        else:
            done = _launch(args, folder / f"ranks-{name}")
            assert done.returncode == 0, done.stdout + done.stderr
            texts.append(done.stdout + done.stderr)
    return output / "second", " ".join(" ".join(texts[1:]).split())


def _damage_cache(output: Path) -> None:
    entries = sorted((output / ".cache").glob("baselines/*/results.json"))
    assert entries
    for results in entries:
        results.write_text(results.read_text() + " ")


def _entries(run: Path, steered: str) -> list[tuple[Any, ...]]:
    """run.json's records, the steered configuration under one name."""
    data = json.loads((run / "run.json").read_text())
    return sorted(
        (
            "steered" if record["configuration"] == steered else record["configuration"],
            record["task"],
            record["baseline_key"] is not None,
            record["reused_from"],
            len(record["samples"]),
            len(record["side_effects"]),
        )
        for record in data["completed"]
    )


@pytest.fixture(scope="module")
def placements(
    tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, str]]:
    """Per placement: its second run and what the second run and its resume printed."""
    return {
        placement: _three_runs(placement, tiny_bundle, tmp_path_factory.mktemp(placement))
        for placement in STEERED
    }


@pytest.mark.skipif(sys.platform != "linux", reason="gloo data parallel on Linux")
def test_every_placement_gives_the_same_files_entries_and_messages(
    placements: dict[str, tuple[Path, str]],
) -> None:
    run, _ = placements["run"]
    for placement, (folder, text) in placements.items():
        for what, pattern in MESSAGES.items():
            assert len(re.findall(pattern, text)) == 1, (placement, what, text)
        steered = STEERED[placement]
        assert _entries(folder, steered) == _entries(run, "steered"), placement
        for mine, theirs in (("baseline", "baseline"), (steered, "steered")):
            found, expected = documents(folder / mine), documents(run / theirs)
            assert set(found) == set(expected) == set(TASKS)
            for task, rows in found.items():
                for (id_a, resps_a, metrics_a), (id_b, resps_b, metrics_b) in zip(
                    rows, expected[task], strict=True
                ):
                    assert (id_a, metrics_a) == (id_b, metrics_b), (placement, mine, task)
                    assert resps_a == pytest.approx(resps_b, abs=1e-5), (placement, mine, task)
    assert documents(run / "steered")[MC_TASK] == documents(run / "baseline")[MC_TASK]  # as noted
