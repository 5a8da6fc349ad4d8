"""saeval against lm-eval's own ``steered`` model (``lm_eval/models/hf_steered.py``, installed
with lm-eval), on the same tiny GPT-2 and the same steer files, through ``simple_evaluate``: the
per-choice log-likelihoods agree within 1e-5. lm-eval's one-head branch cannot run (its clamp
compares tensors of different shapes in an assert), so one-head steering is checked against the
arithmetic instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lm_eval import simple_evaluate
from lm_eval.models.hf_steered import SteeredModel
from lm_eval.tasks import TaskManager
from sae_builders import MC_TASK

from saeval.spec.steer_file import read_steer_file
from saeval.steering.lm_eval_model import SteeredHFLM
from saeval.steering.plan import build_plan

TOLERANCE = 1e-5
D_MODEL, N_HEADS, D_HEAD = 64, 4, 16


def _random(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def task_manager(tiny_bundle: Path) -> TaskManager:
    return TaskManager(include_path=[str(tiny_bundle / "tasks")], include_defaults=False)


def logliks(lm: Any, task_manager: TaskManager) -> list[float]:
    """Every (document, choice) log-likelihood of the multiple-choice task."""
    results = simple_evaluate(
        model=lm, tasks=[MC_TASK], task_manager=task_manager, log_samples=True, bootstrap_iters=0
    )
    assert results is not None
    return [resp[0][0] for doc in results["samples"][MC_TASK] for resp in doc["resps"]]


def both(model: Path, steer: Path, task_manager: TaskManager) -> tuple[list[float], ...]:
    """lm-eval's steered model, saeval's sae_steered, and the unsteered model, on one file."""
    kwargs: dict[str, Any] = {"pretrained": str(model), "device": "cpu", "batch_size": 4}
    theirs = logliks(SteeredModel(steer_path=str(steer), **kwargs), task_manager)
    ours_lm = SteeredHFLM(steer_path=str(steer), **kwargs)
    ours = logliks(ours_lm, task_manager)
    ours_lm.set_scale(None)
    return theirs, ours, logliks(ours_lm, task_manager)


def assert_same_and_steered(theirs: list[float], ours: list[float], base: list[float]) -> None:
    assert len(theirs) == len(ours) == 32
    assert max(abs(a - b) for a, b in zip(theirs, ours, strict=True)) < TOLERANCE
    assert max(abs(a - b) for a, b in zip(ours, base, strict=True)) > 1e-2  # it did steer


def test_pt_file_with_add_and_biased_clamp_matches_lm_eval(
    tiny_bundle: Path, tmp_path: Path, task_manager: TaskManager
) -> None:
    steer = tmp_path / "steer.pt"
    torch.save(
        {
            "h.0": {
                "steering_vector": _random(1, D_MODEL),
                "steering_coefficient": 3.0,
                "action": "add",
                "bias": None,
                "head_index": None,
            },
            "h.1": {
                "steering_vector": _random(2, D_MODEL),
                "steering_coefficient": 2.0,
                "action": "clamp",
                "bias": _random(3, D_MODEL),
                "head_index": None,
            },
        },
        steer,
    )
    assert_same_and_steered(*both(tiny_bundle / "model", steer, task_manager))


def test_sparsify_csv_with_clamp_rows_matches_lm_eval(
    tiny_bundle: Path, tmp_path: Path, task_manager: TaskManager
) -> None:
    from sparsify import SparseCoder, SparseCoderConfig

    coders = tmp_path / "coders"
    for seed, hookpoint in enumerate(("h.0", "h.1")):
        torch.manual_seed(seed)
        coder = SparseCoder(D_MODEL, SparseCoderConfig(num_latents=128, k=8))
        with torch.no_grad():
            coder.b_dec.copy_(_random(10 + seed, D_MODEL))  # the clamp's bias matters
        coder.save_to_disk(coders / hookpoint)
    steer = tmp_path / "sparsify.csv"
    steer.write_text(
        "loader,action,sparse_model,hookpoint,feature_index,steering_coefficient,head_index,"
        "sae_id,description\n"
        f"sparsify,clamp,{coders},h.0,5,4.0,,,\n"
        f"sparsify,clamp,{coders},h.1,77,-3.0,,,\n",
        encoding="utf-8",
    )
    assert_same_and_steered(*both(tiny_bundle / "model", steer, task_manager))


# ---- one attention head: lm-eval's branch cannot run, so the arithmetic is the reference ------


def test_lm_eval_head_branch_cannot_run() -> None:
    """Its clamp asserts ``proj == acts @ direction``: shapes (b, p, 1) and (b, p, heads)."""
    acts = _random(4, 1, 3, N_HEADS, D_HEAD)
    direction = _random(5, D_HEAD)
    with pytest.raises(RuntimeError):
        SteeredModel.clamp(acts, direction / direction.norm(), 1.0, head_index=2)


def _o_proj_input(model: torch.nn.Module, ids: torch.Tensor, edits: dict[str, Any]) -> Any:
    """The first attention's output-projection input (``blocks.0.attn.hook_z``), after edits."""
    from saeval.steering.hooks import attach, locate

    seen: list[torch.Tensor] = []
    module = locate(model, "blocks.0.attn.hook_z").module
    with torch.no_grad(), attach(model, edits):  # recorded after the steering pre-hook
        handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
        model(ids)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("action", ["add", "clamp"])
def test_head_index_edits_one_heads_slice_of_hook_z(action: str, tmp_path: Path) -> None:
    from builders import build_tiny_model

    vector, bias, head = _random(6, D_HEAD), _random(7, D_HEAD), 2
    steer = tmp_path / "head.pt"
    entry = {"steering_vector": vector, "steering_coefficient": 1.5, "action": action}
    entry |= {"bias": bias if action == "clamp" else None, "head_index": head}
    torch.save({"blocks.0.attn.hook_z": entry}, steer)
    plan = build_plan(read_steer_file(steer))
    model = build_tiny_model("gpt2")
    ids = torch.tensor([[5, 9, 33, 120, 7]])
    base, steered = _o_proj_input(model, ids, {}), _o_proj_input(model, ids, plan.edits())
    heads, steered_heads = base.unflatten(-1, (N_HEADS, D_HEAD)), steered.unflatten(-1, (4, 16))
    x = heads[..., head, :]
    if action == "add":
        expected = x + 1.5 * vector
    else:
        u = vector / vector.norm()
        expected = x + (1.5 - ((x - bias) @ u)).unsqueeze(-1) * u
    torch.testing.assert_close(steered_heads[..., head, :], expected, atol=1e-5, rtol=1e-5)
    others = [h for h in range(N_HEADS) if h != head]
    assert torch.equal(steered_heads[..., others, :], heads[..., others, :])
