"""No command unpickles arbitrary objects: every command that accepts a ``.pt`` file is run on one
whose pickle would create a marker file, and must refuse it with one line, the marker absent."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from cli_checks import assert_one_line_error
from conftest import invoke
from sae_builders import MC_TASK


class _Payload:
    """Unpickling this runs ``touch marker`` (what a malicious file would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(autouse=True)
def fresh_lm_eval_logging() -> None:
    """lm-eval binds its log handler to the stderr of the first CliRunner that ran it; later runs
    would log "--- Logging error ---" tracebacks into their output: let each run make its own."""
    import lm_eval.utils

    logging.getLogger("lm_eval").handlers.clear()
    lm_eval.utils._LOGGING_CONFIGURED = False


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, Path]:
    """An lm-eval ``.pt`` steer file whose ``bias`` is a payload, and the marker it would make."""
    marker = tmp_path / "ran"
    steer = tmp_path / "evil.pt"
    entry = {"steering_vector": torch.zeros(64), "action": "clamp", "bias": _Payload(marker)}
    torch.save({"h.1": entry}, steer)
    return steer, marker


def _commands(bundle: Path, steer: Path, tmp_path: Path) -> dict[str, list[str]]:
    """Every command line of saeval that reads ``steer``."""
    model, tasks = str(bundle / "model"), str(bundle / "tasks")
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "the dog barks"}\n')
    experiment = tmp_path / "exp.yaml"
    data = {"model": model, "include_path": tasks, "tasks": {"target": [MC_TASK]}}
    data |= {"metric": {"target": "acc"}, "limit": 2, "interventions": {"evil": str(steer)}}
    experiment.write_text(yaml.safe_dump(data))
    vectors = tmp_path / "vectors.csv"
    vectors.write_text(f"vector,hook,steering_coefficient\n{steer},h.1,1\n")
    common = ["--model", model, "--device", "cpu", "--include-path", tasks, "--limit", "2"]
    out = ["--output", str(tmp_path / "out")]
    harness = ["--device", "cpu", "--include_path", tasks, "--tasks", MC_TASK, "--limit", "2"]
    return {
        "validate": ["validate", str(steer)],
        "validate vector row": ["validate", str(vectors)],
        "run": ["run", str(steer), *common, "--tasks", MC_TASK, *out],
        "run vector row": ["run", str(vectors), *common, "--tasks", MC_TASK, *out],
        "run experiment": ["run", str(experiment), *out],
        "kl": ["kl", str(steer), "--model", model, "--device", "cpu", "--texts", str(texts)],
        "harness steered": [
            "harness",
            "--model",
            "steered",
            "--model_args",
            f"pretrained={model},steer_path={steer}",
            *harness,
        ],
        "harness sae_steered": [
            "harness",
            "--model",
            "sae_steered",
            "--model_args",
            f"pretrained={model},steer_path={steer}",
            *harness,
        ],
    }


@pytest.mark.parametrize(
    "command",
    [
        "validate",
        "validate vector row",
        "run",
        "run vector row",
        "run experiment",
        "kl",
        "harness steered",
        "harness sae_steered",
    ],
)
def test_no_command_runs_a_pickle_payload(
    command: str, payload: tuple[Path, Path], tiny_bundle: Path, tmp_path: Path
) -> None:
    steer, marker = payload
    args = _commands(tiny_bundle, steer, tmp_path)[command]
    result = invoke(*args)
    assert not marker.exists(), f"{command} ran the payload"
    if command.startswith("validate") or command == "run experiment":
        assert result.exit_code == 1, result.output  # validate tables; experiment problem lists
        assert "posix.system" in result.stderr and "Traceback" not in result.output
    else:
        assert_one_line_error(result, str(steer), "refused", "posix.system")


def test_harness_steered_still_runs_a_safe_pt_file(tiny_bundle: Path, tmp_path: Path) -> None:
    steer = tmp_path / "steer.pt"
    vector = torch.randn(64, generator=torch.Generator().manual_seed(3))
    torch.save(
        {"h.1": {"steering_vector": vector, "steering_coefficient": 2.0, "action": "add"}}, steer
    )
    args = ["harness", "--model", "steered", "--model_args"]
    args += [f"pretrained={tiny_bundle / 'model'},steer_path={steer}", "--device", "cpu"]
    args += ["--include_path", str(tiny_bundle / "tasks"), "--tasks", MC_TASK, "--limit", "2"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD") is None  # restored afterwards
