"""An experiment with a prompt intervention (alone, and with steer files) and KL-matched random
controls, end to end on the tiny bundle (one CPU worker).

- a prompt alone gives the log-likelihoods of lm-eval's own ``HFLM`` with ``system_instruction``
  set, and a prompt with steer files those of the steered model asked the same way (1e-6);
- the leaderboard pairs the prompt with the steering configuration ``compare_to`` names: its
  delta is the difference of the two configurations' per-document accuracies, in the Holm family;
- each matched control's recorded KL and the intervention's equal the KL the evaluation measured
  on the same documents (another path: lm-eval's logged samples), within 10% of each other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import invoke
from experiment_builders import write_experiment
from sae_builders import MC_TASK
from test_system_instruction import PROMPT, lm_eval_logliks, logliks_of, plain_lm

from saeval.run.control_match import TOLERANCE
from saeval.steering.lm_eval_model import SteeredHFLM

TOLERANCE_LL = 1e-6


def samples(folder: Path, task: str = MC_TASK) -> list[dict[str, Any]]:
    (path,) = folder.glob(f"samples_{task}_*.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return sorted(records, key=lambda record: int(record["doc_id"]))


@pytest.fixture(scope="module")
def run(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("prompt-experiment")
    path = write_experiment(
        folder,
        tiny_bundle,
        scales=[1],
        interventions={
            "adds": "steers/adds.csv",
            "asked": {"prompt": PROMPT, "compare_to": "adds"},
            "both": {"steer": "steers/adds.csv", "prompt": PROMPT},
        },
        controls={"random": 1, "match": "kl"},
    )
    args = ["run", str(path), "--device", "cpu", "--output", str(folder / "out"), "--name", "p"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    lines = " ".join(result.stdout.split())
    assert f"asked asks with the system prompt '{PROMPT}'; its vs intervention is" in lines
    assert f"both asks with the system prompt '{PROMPT}' -" in lines
    return folder / "out" / "p"


def test_a_prompt_is_lm_eval_s_system_instruction(run: Path, tiny_bundle: Path) -> None:
    plain = plain_lm(tiny_bundle)
    theirs = lm_eval_logliks(plain, tiny_bundle, PROMPT)
    ours = logliks_of(samples(run / "asked"))
    assert len(ours) == len(theirs) == 16
    assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) < TOLERANCE_LL
    baseline = logliks_of(samples(run / "baseline"))
    assert max(abs(a - b) for a, b in zip(ours, baseline, strict=True)) > 1e-2
    steered = SteeredHFLM(
        pretrained=str(tiny_bundle / "model"),
        steer_path=str(run.parents[1] / "steers" / "adds.csv"),
        device="cpu",
        batch_size=8,
    )
    both = logliks_of(samples(run / "both@1"))
    theirs_both = lm_eval_logliks(steered, tiny_bundle, PROMPT)
    assert max(abs(a - b) for a, b in zip(both, theirs_both, strict=True)) < TOLERANCE_LL
    assert max(abs(a - b) for a, b in zip(both, ours, strict=True)) > 1e-2


def test_the_leaderboard_pairs_the_prompt_with_the_steering(run: Path) -> None:
    board = json.loads((run / "leaderboard.json").read_text())
    rows = {row["label"] + f"@{row['scale']:g}": row for row in board["rows"]}
    assert set(rows) == {"adds@1", "adds~random1@1", "asked@0", "both@1", "both~random1@1"}
    asked = rows["asked@0"]
    assert asked["prompt"] == PROMPT and asked["steers"] is False and asked["kl"] is None
    assert rows["both@1"]["prompt"] == PROMPT and rows["adds@1"]["prompt"] is None
    accuracy = {
        name: [record["acc"] for record in samples(run / name)] for name in ("asked", "adds@1")
    }
    differences = [s - p for s, p in zip(accuracy["adds@1"], accuracy["asked"], strict=True)]
    assert asked["versus"]["delta"] == pytest.approx(sum(differences) / len(differences))
    assert asked["versus"]["p_holm"] is not None
    # target + non-inferiority for adds, asked and both; versus for asked and both controls
    assert board["family_size"] == 3 * 2 + 1 + 2
    assert "asked" not in board["sweet_spots"]
    table = (run / "leaderboard.md").read_text()
    assert "| asked | prompt |" in table and "| both | 1+prompt |" in table
    definition = json.loads((run / "experiment.json").read_text())["definition"]
    assert definition["interventions"]["asked"]["compare_to"] == ["adds", 1.0]
    assert definition["control_match"] == "kl"


def measured(folder: Path, entry: str = "kl") -> float:
    """The token-weighted mean of a side-effects entry (``kl`` or ``dose``) the evaluation
    measured on each task's first kl_docs documents, from its per-document sums."""
    total = tokens = 0.0
    for path in folder.glob("side_effects_*.json"):
        documents = json.loads(path.read_text())[entry]["documents"]
        total += sum(document["sum"] for document in documents)
        tokens += sum(document["tokens"] for document in documents)
    return total / tokens


@pytest.mark.parametrize("intervention", ["adds", "both"])
def test_matched_controls_perturb_as_much_as_their_intervention(
    run: Path, intervention: str
) -> None:
    record = json.loads((run / "controls" / f"{intervention}~random1@1.json").read_text())
    assert record["match"] == "kl" and record["scale"] == 1.0 and record["within_tolerance"]
    assert abs(record["control"] - record["intervention"]) <= TOLERANCE * record["intervention"]
    assert record["steps"][0][0] == 1.0 and record["steps"][-1][1] == record["control"]
    assert record["intervention"] == pytest.approx(measured(run / f"{intervention}@1"), 1e-4)
    control = run / f"{intervention}~random1@1"
    assert record["control"] == pytest.approx(measured(control), rel=1e-4)
    configurations = json.loads((run / "run.json").read_text())["configurations"]
    assert f"{intervention}~random1@1" in configurations
