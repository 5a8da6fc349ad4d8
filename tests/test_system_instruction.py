"""`saeval run --system-instruction`: every configuration is asked with lm-eval's
``system_instruction``, the log-likelihoods equal a plain lm-eval run with it, and the baseline it
gives is recorded and cached apart from the one without it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import invoke
from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from sae_builders import MC_TASK
from typer.testing import Result

PROMPT = "Talk about dogs."
TOLERANCE = 1e-6


def saeval(bundle: Path, output: Path, *args: str) -> Result:
    base = ["run", str(bundle / "steer.csv"), "--model", str(bundle / "model"), "--device", "cpu"]
    base += ["--include-path", str(bundle / "tasks"), "--output", str(output), "--tasks", MC_TASK]
    return invoke(*base, "--limit", "4", *args)


def logliks_of(samples: list[dict[str, Any]]) -> list[float]:
    """Every (document, choice) log-likelihood, documents in order."""
    ordered = sorted(samples, key=lambda sample: int(sample["doc_id"]))
    return [float(resp[0][0]) for sample in ordered for resp in sample["resps"]]


def saved_logliks(folder: Path) -> list[float]:
    (samples,) = folder.glob(f"samples_{MC_TASK}_*.jsonl")
    return logliks_of([json.loads(line) for line in samples.read_text().splitlines()])


def lm_eval_logliks(lm: Any, bundle: Path, system_instruction: str | None) -> list[float]:
    """The task through lm-eval's own ``simple_evaluate`` on ``lm``, with ``system_instruction``."""
    manager = TaskManager(include_path=[str(bundle / "tasks")], include_defaults=False)
    results = simple_evaluate(
        model=lm,
        tasks=[MC_TASK],
        task_manager=manager,
        limit=4,
        log_samples=True,
        bootstrap_iters=0,
        system_instruction=system_instruction,
    )
    assert results is not None
    return logliks_of(results["samples"][MC_TASK])


def plain_lm(bundle: Path) -> HFLM:
    """lm-eval's own HFLM on the bundle's model."""
    return HFLM(pretrained=str(bundle / "model"), device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def prompted(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("results")
    result = saeval(tiny_bundle, output, "--name", "asked", "--system-instruction", PROMPT)
    assert result.exit_code == 0, result.output
    return output / "asked"


def test_every_configuration_is_asked_as_lm_eval_asks(tiny_bundle: Path, prompted: Path) -> None:
    theirs = lm_eval_logliks(plain_lm(tiny_bundle), tiny_bundle, PROMPT)
    plain = lm_eval_logliks(plain_lm(tiny_bundle), tiny_bundle, None)
    ours = saved_logliks(prompted / "baseline")
    assert len(ours) == len(theirs) == 16
    assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) < TOLERANCE
    assert max(abs(a - b) for a, b in zip(ours, plain, strict=True)) > 1e-2  # it was asked
    steered = saved_logliks(prompted / "steered")
    assert max(abs(a - b) for a, b in zip(steered, ours, strict=True)) > 1e-2  # and steered
    (samples,) = (prompted / "steered").glob(f"samples_{MC_TASK}_*.jsonl")
    first = json.loads(samples.read_text().splitlines()[0])
    assert first["arguments"]["gen_args_0"]["arg_0"].startswith(PROMPT)


def test_the_prompt_is_recorded_and_keeps_its_own_baseline(
    tiny_bundle: Path, prompted: Path
) -> None:
    spec = json.loads((prompted / "run.json").read_text())["spec"]
    assert spec["system_instruction"] == PROMPT
    output = prompted.parent
    plain = saeval(tiny_bundle, output, "--name", "plain")
    assert plain.exit_code == 0, plain.output
    assert "baseline reused" not in plain.output  # an unsteered run with a prompt is no baseline
    again = saeval(tiny_bundle, output, "--name", "again", "--system-instruction", PROMPT)
    assert again.exit_code == 0, again.output
    assert f"baseline reused from the cache for: {MC_TASK}" in again.output
    assert saved_logliks(output / "again" / "baseline") == saved_logliks(prompted / "baseline")


def test_an_empty_system_instruction_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    result = saeval(tiny_bundle, tmp_path, "--system-instruction", " ")
    assert result.exit_code == 2  # a usage error
    assert result.stderr.strip().splitlines() == [
        "error: --system-instruction is empty; give the text, or leave it out"
    ]
