"""Checks that need a GPU (marker ``cuda``): bfloat16 steering against float32, a clamp on the
device against the same clamp on the CPU, and two experiment workers sharing one device against
one worker.

They run on ``SAEVAL_TEST_DEVICE`` when it is set (``make gpu-check`` sets it to its device;
``cpu`` proves them without a GPU), else on cuda:0 when CUDA is available, else they are skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from builders import build_tiny_model, train_tiny_tokenizer
from conftest import invoke
from experiment_builders import write_experiment
from sae_builders import build_sae, save_sae, write_steer_csv
from test_experiment_run import assert_same_documents

from saeval.spec.steer_file import read_steer_file
from saeval.steering.hooks import attach
from saeval.steering.plan import SteerPlan, build_plan

pytestmark = pytest.mark.cuda

HOOK = "blocks.0.hook_resid_post"  # of the tiny 2-layer Gemma-2: one layer runs after it
TEXTS = ("The quick brown fox jumps over the lazy dog.", "A dog is a loyal animal.")
BF16_TOLERANCE = 0.05  # nats; bfloat16 (8 bits of mantissa) was 0.0044 off on the CPU
DEVICE_TOLERANCE = 1e-4  # nats: float32 on two devices, different kernels


@pytest.fixture(scope="module")
def device() -> str:
    """SAEVAL_TEST_DEVICE, else cuda:0 when CUDA is available; otherwise the tests skip."""
    chosen = os.environ.get("SAEVAL_TEST_DEVICE")
    if chosen:
        return chosen
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device; set SAEVAL_TEST_DEVICE=cpu to run these checks on the CPU")
    return "cuda:0"


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> SteerPlan:
    """Add latents 3 and 5 and clamp latent 7 to 6 at ``HOOK``, on a tiny standard SAE."""
    folder = tmp_path_factory.mktemp("cuda-plan")
    sae = save_sae(build_sae("standard", hook_name=HOOK, seed=2), folder / "sae")
    rows = [(3, 8.0, sae, "", "add"), (5, -4.0, sae, "", "add"), (7, 6.0, sae, "", "clamp")]
    steer = write_steer_csv(folder / "steer.csv", rows, extra=["action"])
    return build_plan(read_steer_file(steer))


def log_probs(device: str, dtype: torch.dtype, plan: SteerPlan | None) -> torch.Tensor:
    """Next-token log-probabilities (float32, on the CPU) of the tiny Gemma-2 on ``TEXTS``,
    right-padded, with ``plan`` steering it (or not)."""
    tokenizer = train_tiny_tokenizer()
    batch = tokenizer(list(TEXTS), padding=True, return_tensors="pt").to(device)
    model = build_tiny_model("gemma2").to(device=device, dtype=dtype)
    edits = {} if plan is None else plan.edits()
    with torch.no_grad(), attach(model, edits):
        logits = model(**batch).logits
    mask = batch["attention_mask"].bool().cpu()
    return torch.log_softmax(logits.float(), dim=-1).cpu()[mask]


def test_bfloat16_steering_matches_float32(device: str, plan: SteerPlan) -> None:
    base32 = log_probs(device, torch.float32, None)
    steered32 = log_probs(device, torch.float32, plan)
    steered16 = log_probs(device, torch.bfloat16, plan)
    effect = (steered32 - base32).abs().max().item()
    error = (steered16 - steered32).abs().max().item()
    assert effect > 10 * BF16_TOLERANCE  # the steering moves the answers, far beyond rounding
    assert error < BF16_TOLERANCE, (effect, error)


def test_a_clamp_on_the_device_equals_the_clamp_on_the_cpu(device: str, plan: SteerPlan) -> None:
    on_device = log_probs(device, torch.float32, plan)
    on_cpu = log_probs("cpu", torch.float32, plan)
    unsteered = log_probs("cpu", torch.float32, None)
    assert (on_cpu - unsteered).abs().max().item() > 0.5  # the steering changes the answers
    torch.testing.assert_close(on_device, on_cpu, atol=DEVICE_TOLERANCE, rtol=0)


def test_two_workers_on_one_device_give_the_numbers_of_one(
    device: str, tiny_bundle: Path, tmp_path: Path
) -> None:
    path = write_experiment(tmp_path, tiny_bundle, controls=None, scales=[1])
    runs = {}
    for name, devices in (("one", device), ("two", f"{device},{device}")):
        result = invoke("run", path, "--devices", devices, "--output", tmp_path, "--name", name)
        assert result.exit_code == 0, result.output
        runs[name] = tmp_path / name
    workers = sorted(p.name for p in (runs["two"] / "workers").glob("*.json"))
    assert workers == ["w0.json", "w1.json"]
    for configuration in ("baseline", "adds@1", "clamps@1"):
        assert_same_documents(runs["one"] / configuration, runs["two"] / configuration)
