"""Experiment files on the tiny bundle (tests/conftest.py): two interventions, one of add rows
and one of clamp/ablate rows, on a target and a capability task."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml
from sae_builders import GEN_TASK, MC_TASK, write_steer_csv


def write_steer_files(folder: Path, bundle: Path) -> dict[str, Path]:
    """``steers/adds.csv`` (the bundle's: add latents 3 and 5) and ``steers/clamps.csv`` (clamp
    latent 7 to 3, ablate latent 9) in ``folder``."""
    steers = folder / "steers"
    steers.mkdir(parents=True, exist_ok=True)
    adds = Path(shutil.copy(bundle / "steer.csv", steers / "adds.csv"))
    clamps = write_steer_csv(
        steers / "clamps.csv",
        [(7, 3.0, bundle / "sae", "", "clamp"), (9, "", bundle / "sae", "", "ablate")],
        extra=["action"],
    )
    return {"adds": adds, "clamps": clamps}


def experiment_data(bundle: Path, **changes: Any) -> dict[str, Any]:
    """The keys of the tiny experiment (``changes`` replace or, with value None, drop keys)."""
    data: dict[str, Any] = {
        "model": str(bundle / "model"),
        "include_path": str(bundle / "tasks"),
        "tasks": {"target": [MC_TASK], "capability": [GEN_TASK]},
        "metric": {"target": "acc", "capability": "exact_match"},
        "limit": 4,
        "scales": [1, 2],
        "margin": 0.5,
        "interventions": {"adds": "steers/adds.csv", "clamps": "steers/clamps.csv"},
        "controls": {"random": 1},
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def write_experiment(folder: Path, bundle: Path, name: str = "exp.yaml", **changes: Any) -> Path:
    """The tiny experiment file and its steer files in ``folder``."""
    write_steer_files(folder, bundle)
    path = folder / name
    path.write_text(yaml.safe_dump(experiment_data(bundle, **changes), sort_keys=False))
    return path
