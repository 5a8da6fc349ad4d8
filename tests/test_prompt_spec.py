"""Prompt interventions, ``compare_to`` and ``controls: {match: ...}`` in experiment files: read
and checked offline, every problem one ``file:line key: message`` naming what is valid; and the
strength search of matched controls on measures whose answer is known."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import invoke
from experiment_builders import write_experiment

from saeval.errors import SteerFileError
from saeval.records.experiment_folder import configurations
from saeval.run.control_match import MAX_STEPS, search_strength
from saeval.spec.experiment import read_experiment
from saeval.spec.experiment_check import counts

DOG = "  dogs: steers/dog.csv\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "steers").mkdir()
    (tmp_path / "steers" / "dog.csv").write_text("latent_idx,steering_coefficient\n")
    return tmp_path


def test_prompt_interventions_alone_and_with_steer_files(folder: Path) -> None:
    (folder / "exp.yaml").write_text(
        "tasks: [a]\nscales: [1, 2]\ncontrols: {random: 2, match: kl}\ninterventions:\n"
        + DOG
        + "  asked: {prompt: ' Talk about dogs. ', compare_to: dogs@2}\n"
        + "  both: {steer: steers/dog.csv, prompt: Talk about dogs., scales: [1]}\n"
    )
    experiment = read_experiment(folder / "exp.yaml")
    dogs, asked, both = experiment.interventions
    assert (asked.steer, asked.scales, asked.prompt) == ((), (), "Talk about dogs.")
    assert asked.compare_to == "dogs@2" and not asked.steers
    assert both.steers and both.prompt == "Talk about dogs." and both.scales == (1.0,)
    assert dogs.prompt is None and experiment.control_match == "kl"
    assert experiment.steer_files == (folder / "steers" / "dog.csv",)
    # dogs: 2 strengths x (1 + 2 controls); asked: 1; both: 1 x (1 + 2)
    assert counts(experiment) == (6 + 1 + 3, 11)
    scales = {i.name: i.scales for i in experiment.interventions}
    prompts = {i.name: i.prompt for i in experiment.interventions if i.prompt}
    found = {c.name: c for c in configurations(scales, 2, 0, prompts)}
    assert found["asked"].scale is None and found["asked"].prompt == "Talk about dogs."
    assert found["both~random2@1"].prompt == "Talk about dogs." and found["dogs@1"].prompt is None
    assert "prompt" not in found["dogs@1"].to_dict()  # older definitions stay the same


@pytest.mark.parametrize(
    ("interventions", "problem"),
    [
        ("  asked: {prompt: ''}\n", ":6 interventions.asked: prompt: expected text"),
        ("  asked: {scales: [1]}\n", "needs steer: (its steer files) or prompt:"),
        ("  asked: {prompt: hi, scales: [1]}\n", "scales: applies to steer files"),
        ("  asked: {prompt: hi, positions: prompt}\n", "positions: applies to steer files"),
        (
            "  asked: {prompt: hi, ask: 2}\n",
            "valid: scales, dose, steer, positions, prompt, compare_to",
        ),
        ("  asked: {steer: steers/dog.csv, compare_to: dogs}\n", "add prompt:"),
        ("  asked: {prompt: hi, compare_to: cats}\n", "'cats' is not a steering intervention"),
        ("  asked: {prompt: hi, compare_to: dogs}\n", "name one of dogs@1, dogs@2"),
        ("  asked: {prompt: hi, compare_to: dogs@3}\n", "does not run at strength '3'"),
        ("  asked: {prompt: hi, compare_to: asked}\n", "valid: dogs"),
    ],
)
def test_each_prompt_problem_names_the_file_line_and_key(
    folder: Path, interventions: str, problem: str
) -> None:
    text = "tasks: [a]\nscales: [1, 2]\ncontrols: {random: 1}\ninterventions:\n" + DOG
    (folder / "exp.yaml").write_text(text + interventions)
    with pytest.raises(SteerFileError) as raised:
        read_experiment(folder / "exp.yaml")
    assert any(problem in found for found in raised.value.problems), raised.value.problems
    assert all(found.startswith(f"{folder / 'exp.yaml'}:") for found in raised.value.problems)


@pytest.mark.parametrize(
    ("controls", "problem"),
    [
        (
            "controls: {random: 1, match: size}\n",
            ":2 controls.match: expected one of norm, kl, dose",
        ),
        ("controls: {random: 1, match: kl}\nkl_docs: 0\n", ":2 controls.match: kl matches on"),
        ("controls: {random: 1, match: dose}\nkl_docs: 0\n", ":2 controls.match: dose matches on"),
        ("controls: {random: 1, how: kl}\n", ":2 controls.how: unknown key; valid: random, match"),
    ],
)
def test_each_controls_problem_names_the_key(folder: Path, controls: str, problem: str) -> None:
    (folder / "exp.yaml").write_text("tasks: [a]\n" + controls + "interventions:\n" + DOG)
    with pytest.raises(SteerFileError) as raised:
        read_experiment(folder / "exp.yaml")
    assert any(problem in found for found in raised.value.problems), raised.value.problems


def test_validate_checks_prompt_interventions_offline(tiny_bundle: Path, tmp_path: Path) -> None:
    interventions = {"adds": "steers/adds.csv", "asked": {"prompt": "hi", "compare_to": "adds@1"}}
    path = write_experiment(tmp_path, tiny_bundle, interventions=interventions)
    result = invoke("validate", str(path))
    assert result.exit_code == 0, result.output
    assert (
        "1 intervention x 2 strengths + 1 random control each + 1 prompt; 1 target + 1 "
        "capability tasks: 1 baseline + 5 configurations, 12 evaluations; valid"
    ) in " ".join(result.stdout.split())
    bad = write_experiment(tmp_path, tiny_bundle, interventions={"asked": {"prompt": "hi"}})
    bad.write_text(bad.read_text().replace(f"model: {tiny_bundle / 'model'}\n", ""))
    result = invoke("validate", str(bad))
    assert result.exit_code == 1
    assert f"{bad} model: missing; with prompt interventions alone, name the model" in (
        result.stderr
    )


def test_the_search_matches_a_known_measure_within_the_tolerance() -> None:
    calls: list[float] = []

    def quadratic(scale: float) -> float:  # a KL grows like the square of a small strength
        calls.append(scale)
        return 0.3 * scale**2

    target = 0.3 * 0.37**2
    found, value, steps = search_strength(quadratic, target, 1.0)
    assert found == pytest.approx(0.37) and value == pytest.approx(target)
    assert [step[0] for step in steps] == calls and len(steps) == 2  # a square law: one guess
    linear, _, tried = search_strength(lambda s: abs(s), 5.0, -1.0)  # sign kept
    assert [step[0] for step in tried] == pytest.approx([-1.0, -(5.0**0.5), -5.0])
    assert linear == pytest.approx(-5.0)
    assert search_strength(lambda s: s * s, 0.0, 0.0)[:2] == (0.0, 0.0)


def test_the_search_bisects_where_the_power_law_guess_leaves_the_bracket() -> None:
    def step(scale: float) -> float:  # jumps at 0.6: a power law overshoots both ways
        return 0.01 if scale < 0.6 else 1.0

    found, value, tried = search_strength(step, 1.0, 0.1)
    magnitudes = [s for s, _ in tried]
    assert value == 1.0 and found >= 0.6 and magnitudes[0] == 0.1
    assert all(0 < m < 100 for m in magnitudes)


def test_the_search_gives_the_closest_strength_when_it_cannot_match() -> None:
    found, value, steps = search_strength(lambda s: s / (1 + s), 2.0, 1.0)  # never reaches 2
    assert len(steps) == MAX_STEPS and value == max(step[1] for step in steps)
    assert found == max(step[0] for step in steps)
