"""The lm-eval model end to end: tiny local tasks of all three request types through
``simple_evaluate`` on a tiny GPT-2 steered by a tiny SAE, and ``saeval harness``.

The SAE's latent 5 decodes to the unembedding direction of the token `` dog``, so adding it at
the last layer must raise the log-likelihood of ``dog`` answers and make greedy generation say
``dog``, and lower the perplexity of dog-heavy text (steering away raises it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from builders import train_tiny_tokenizer
from conftest import invoke
from lm_eval import simple_evaluate
from lm_eval.api.registry import get_model
from lm_eval.tasks import TaskManager
from sae_builders import (
    GEN_TASK,
    MC_TASK,
    ROLLING_TASK,
    build_sae,
    save_sae,
    write_steer_csv,
)

from saeval.errors import SteerFileError, SteeringError, UsageError
from saeval.steering.lm_eval_model import SteeredHFLM

DOG_LATENT = 5


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> dict[str, Path]:
    """The shared tiny GPT-2 and tasks, an SAE whose latent 5 writes `` dog``, its steer file."""
    root = tmp_path_factory.mktemp("harness")
    model_dir = tiny_bundle / "model"
    from transformers import AutoModelForCausalLM

    unembed = AutoModelForCausalLM.from_pretrained(model_dir).get_output_embeddings().weight
    (dog,) = train_tiny_tokenizer().encode(" dog")
    sae = build_sae(d_sae=16)
    with torch.no_grad():
        sae.W_dec[DOG_LATENT] = unembed[dog] / unembed[dog].norm()
    sae_dir = save_sae(sae, root / "sae")
    return {
        "model": model_dir,
        "sae": sae_dir,
        "dog": write_steer_csv(root / "dog.csv", [(DOG_LATENT, 20.0, sae_dir, "")]),
        "tasks": tiny_bundle / "tasks",
    }


@pytest.fixture(scope="module")
def task_manager(assets: dict[str, Path]) -> TaskManager:
    return TaskManager(include_path=[str(assets["tasks"])], include_defaults=False)


@pytest.fixture(scope="module")
def dog_lm(assets: dict[str, Path]) -> SteeredHFLM:
    return SteeredHFLM(
        pretrained=str(assets["model"]), steer_path=str(assets["dog"]), device="cpu", batch_size=4
    )


def evaluate(lm: SteeredHFLM, task: str, task_manager: TaskManager, scale: float | None) -> Any:
    lm.set_scale(scale)
    return simple_evaluate(
        model=lm, tasks=[task], task_manager=task_manager, log_samples=True, bootstrap_iters=0
    )


def test_steering_raises_the_answer_it_writes(
    dog_lm: SteeredHFLM, task_manager: TaskManager
) -> None:
    baseline = evaluate(dog_lm, MC_TASK, task_manager, None)
    steered = evaluate(dog_lm, MC_TASK, task_manager, 1.0)
    assert baseline["results"][MC_TASK]["acc,none"] < 0.5
    assert steered["results"][MC_TASK]["acc,none"] == 1.0
    for before, after in zip(
        baseline["samples"][MC_TASK], steered["samples"][MC_TASK], strict=True
    ):
        gold = before["doc"]["answer"]
        assert after["resps"][gold][0][0] > before["resps"][gold][0][0]


def test_switching_steering_off_restores_the_baseline(
    dog_lm: SteeredHFLM, task_manager: TaskManager
) -> None:
    first = evaluate(dog_lm, MC_TASK, task_manager, None)
    evaluate(dog_lm, MC_TASK, task_manager, 2.0)
    again = evaluate(dog_lm, MC_TASK, task_manager, None)
    assert _logliks(again) == _logliks(first)


def test_scale_strengthens_the_shift(dog_lm: SteeredHFLM, task_manager: TaskManager) -> None:
    baseline = evaluate(dog_lm, MC_TASK, task_manager, None)
    quarter, full = (_logliks(evaluate(dog_lm, MC_TASK, task_manager, s)) for s in (0.25, 1.0))
    for doc, sample in enumerate(baseline["samples"][MC_TASK]):
        gold = sample["doc"]["answer"]
        assert _logliks(baseline)[doc][gold] < quarter[doc][gold] < full[doc][gold]


def test_generation_follows_the_steering(dog_lm: SteeredHFLM, task_manager: TaskManager) -> None:
    baseline = evaluate(dog_lm, GEN_TASK, task_manager, None)
    steered = evaluate(dog_lm, GEN_TASK, task_manager, 1.0)
    assert not any("dog" in s["filtered_resps"][0] for s in baseline["samples"][GEN_TASK])
    assert all(s["filtered_resps"][0] == " dog" for s in steered["samples"][GEN_TASK])
    assert steered["results"][GEN_TASK]["exact_match,none"] == 1.0
    assert baseline["results"][GEN_TASK]["exact_match,none"] == 0.0


def test_rolling_likelihood_follows_the_steering_sign(
    dog_lm: SteeredHFLM, task_manager: TaskManager
) -> None:
    """Dog-heavy texts: steering towards `` dog`` lowers their perplexity, away raises it."""
    bits = {
        scale: evaluate(dog_lm, ROLLING_TASK, task_manager, scale)["results"][ROLLING_TASK]
        for scale in (None, 1.0, -1.0)
    }
    assert bits[1.0]["bits_per_byte,none"] < bits[None]["bits_per_byte,none"] - 0.05
    assert bits[-1.0]["bits_per_byte,none"] > bits[None]["bits_per_byte,none"] + 0.05
    assert bits[1.0]["word_perplexity,none"] < bits[None]["word_perplexity,none"]


def _logliks(results: dict[str, Any]) -> list[list[float]]:
    return [[resp[0][0] for resp in s["resps"]] for s in results["samples"][MC_TASK]]


# ---- construction --------------------------------------------------------------------------


def test_registered_under_both_names_with_the_seed_aliases(assets: dict[str, Path]) -> None:
    assert get_model("sae_steered") is SteeredHFLM
    assert get_model("sae_steered_beta") is SteeredHFLM
    args = f"base_name={assets['model']},csv_path={assets['dog']},scale=0.5"
    lm = get_model("sae_steered_beta").create_from_arg_string(args, {"device": "cpu"})
    assert lm.scale == 0.5 and list(lm.plan.points) == ["blocks.1.hook_resid_post"]
    assert lm.model.config.model_type == "gpt2"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steer_path": "x.csv"}, "needs pretrained="),
        ({"pretrained": "m"}, "needs steer_path="),
        ({"pretrained": "m", "base_name": "m", "steer_path": "x.csv"}, "not both"),
        ({"pretrained": "m", "steer_path": "x.csv", "csv_path": "y.csv"}, "not both"),
        ({"pretrained": torch.nn.Linear(1, 1), "steer_path": "x.csv"}, "name or path"),
    ],
)
def test_argument_mistakes_are_usage_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        SteeredHFLM(**kwargs)


def test_torch_vector_files_are_read_and_their_hookpoints_checked(
    tmp_path: Path, assets: dict[str, Path]
) -> None:
    """lm-eval's .pt files are steer files now (issue 10); a hookpoint the model lacks (GPT-2
    has h.1, not layers.1) fails at construction, and a file missing its action when read."""
    vectors = tmp_path / "steer.pt"
    torch.save({"layers.1": {"steering_vector": torch.ones(64), "action": "add"}}, vectors)
    with pytest.raises(SteeringError, match=r"module 'layers\.1' not found"):
        SteeredHFLM(pretrained=str(assets["model"]), steer_path=str(vectors), device="cpu")
    torch.save({"h.1": {"steering_vector": torch.zeros(64)}}, vectors)
    with pytest.raises(SteerFileError, match=r"steer\.pt\[h\.1\] action"):
        SteeredHFLM(pretrained=str(assets["model"]), steer_path=str(vectors), device="cpu")


def test_d_in_mismatch_fails_at_construction(tmp_path: Path, assets: dict[str, Path]) -> None:
    sae_dir = save_sae(build_sae(d_in=32), tmp_path / "narrow")
    steer = write_steer_csv(tmp_path / "narrow.csv", [(1, 1.0, sae_dir, "")])
    with pytest.raises(SteeringError, match=r"narrow\.csv:2: .*d_in=32.*width 64"):
        SteeredHFLM(pretrained=str(assets["model"]), steer_path=str(steer), device="cpu")


# ---- saeval harness ------------------------------------------------------------------------


def test_saeval_harness_passes_the_seed_arguments_to_lm_eval(
    assets: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = [
        "harness",
        "--model",
        "sae_steered_beta",
        "--model_args",
        f"base_name={assets['model']},csv_path={assets['dog']}",
        "--device",
        "cpu",
        "--tasks",
        MC_TASK,
        "--include_path",
        str(assets["tasks"]),
        "--limit",
        "4",
        "--output_path",
        str(out),
    ]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    (results_file,) = out.rglob("results_*.json")
    results = json.loads(results_file.read_text())
    assert results["config"]["model"] == "sae_steered_beta"
    assert results["results"][MC_TASK]["acc,none"] == 1.0
