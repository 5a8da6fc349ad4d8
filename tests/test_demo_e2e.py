"""`saeval demo`: option wiring and output with the runner patched (fast), then the real thing on
Gemma 3 270M through the CLI (slow: the model is converted once into the checkout's pytest
cache, ~1 minute on a fresh checkout, and reused by later runs; never the user's saeval cache)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import invoke, run_saeval

from saeval.analysis.compare import MCNEMAR
from saeval.analysis.report_files import write_comparison
from saeval.demo import run as demo_run
from saeval.demo.lm_tasks import DEMO_TASKS
from saeval.records.run_folder import configuration_name
from saeval.run.config import RunConfig, RunEvents, RunResult

REPO = Path(__file__).resolve().parents[1]
PREFERENCE, KNOWLEDGE = demo_run.PREFERENCE_TASK, demo_run.KNOWLEDGE_TASK
STAMP = "2026-01-01T00-00-00"


def test_the_packaged_steer_file_is_the_one_in_steers() -> None:
    assert demo_run.DEMO_STEER_FILE.read_bytes() == (REPO / "steers" / "demo.csv").read_bytes()


# --- runner patched ------------------------------------------------------------------------


def write_side(folder: Path, answers: dict[str, list[int]]) -> None:
    """An lm-eval results JSON + samples JSONL per task: per-document acc (0/1) as given."""
    folder.mkdir(parents=True)
    results: dict[str, Any] = {"results": {}, "configs": {}, "n-samples": {}, "model_name": "m"}
    for task, values in answers.items():
        mean = sum(values) / len(values)
        results["results"][task] = {"acc,none": mean, "acc_stderr,none": 0.1}
        results["configs"][task] = {"task": task}
        results["n-samples"][task] = {"original": len(values), "effective": len(values)}
        samples = [
            {"doc_id": i, "doc_hash": f"h{i}", "metrics": ["acc"], "filter": "none", "acc": v}
            for i, v in enumerate(values)
        ]
        lines = "".join(json.dumps(sample) + "\n" for sample in samples)
        (folder / f"samples_{task}_{STAMP}.jsonl").write_text(lines)
    (folder / f"results_{STAMP}.json").write_text(json.dumps(results))


# Per strength (None: baseline): the dog option chosen in 2/10 documents, then 5/10 at 1x and
# 8/10 at 4x (only moves towards it); knowledge right in 10/10, then 9/10 and 4/10.
ANSWERS = {
    None: {PREFERENCE: [1] * 2 + [0] * 8, KNOWLEDGE: [1] * 10},
    1.0: {PREFERENCE: [1] * 5 + [0] * 5, KNOWLEDGE: [1] * 9 + [0]},
    4.0: {PREFERENCE: [1] * 8 + [0] * 2, KNOWLEDGE: [1] * 4 + [0] * 6},
}
# The prompted run (saeval.demo.prompting): asked, 4/10 dog and 9/10 right; asked and steered
# at 1x, 7/10 and 8/10.
PROMPTED = {
    None: {PREFERENCE: [1] * 4 + [0] * 6, KNOWLEDGE: [1] * 9 + [0]},
    1.0: {PREFERENCE: [1] * 7 + [0] * 3, KNOWLEDGE: [1] * 8 + [0] * 2},
}


def fake_demo(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    answers: dict[float | None, dict[str, list[int]]],
    all_but_bos: dict[str, list[int]] | None = None,
) -> list[RunConfig]:
    """Demo assets faked; a runner that records each config it gets and writes a run of
    ``answers`` (per strength; None: the baseline), or of ``all_but_bos`` at each strength of a
    run with positions all_but_bos."""
    assets = demo_run.DemoAssets(tmp_path / "model", tmp_path / "sae", tmp_path / "tasks")
    monkeypatch.setattr(demo_run, "prepare_assets", lambda: assets)
    monkeypatch.setattr(demo_run, "latent_sentence", lambda assets, device: "dog latent 0: (fake)")
    configs: list[RunConfig] = []

    def fake_run(config: RunConfig, events: RunEvents | None = None) -> RunResult:
        configs.append(config)
        folder = config.output / (config.name or "demo-run")
        if config.positions == "all_but_bos" and all_but_bos is not None:
            for scale in config.scales:
                write_side(folder / configuration_name(scale, config.scales), all_but_bos)
            return RunResult(folder, folder / "run.json", {}, (), None, ())
        table = PROMPTED if config.system_instruction is not None else answers
        for scale in (None, *config.scales):
            write_side(folder / configuration_name(scale, config.scales), table[scale])
        report, files = write_comparison(folder, config.margin)
        return RunResult(folder, folder / "run.json", {}, (), report, tuple(files))

    monkeypatch.setattr("saeval.run.runner.run", fake_run)
    return configs


@pytest.fixture
def patched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[RunConfig]:
    """The demo with its runner faked to give ANSWERS."""
    return fake_demo(monkeypatch, tmp_path, ANSWERS)


def test_demo_passes_its_options_to_the_runner_and_reports_the_effect(
    patched: list[RunConfig], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = invoke("demo", "--output", str(out), "--scales", "1,4", "--limit", "10")
    assert result.exit_code == 0, result.output
    plain = RunConfig(
        steer_files=(demo_run.DEMO_STEER_FILE,),
        tasks=DEMO_TASKS,
        model=str(tmp_path / "model"),
        device=None,
        limit=10,
        include_path=(tmp_path / "tasks",),
        output=out,
        scales=(1.0, 4.0),
    )
    # the demo also asks the model "Talk about dogs." on two tasks, unsteered and at 1x
    prompted = replace(
        plain,
        tasks=(PREFERENCE, KNOWLEDGE),
        scales=(1.0,),
        system_instruction="Talk about dogs.",
        kl_docs=0,
        name="demo-run-prompt",
    )
    assert patched == [plain, prompted]
    stdout = result.stdout
    assert "demo.csv: 1 row valid" in stdout
    assert "steered@1 vs baseline" in stdout and "steering sweep vs baseline" in stdout
    assert "dog option chosen: 20% -> 50% at 1x; 3 answers moved to it, 0 away" in stdout
    assert "(McNemar p = 0.25)" in stdout
    assert "knowledge (acc) against strength: 1.00 (baseline), 0.90 (1x), 0.40 (4x)" in stdout
    assert f"results: {out / 'demo-run'}" in stdout
    assert "dog latent 0: (fake)" in stdout
    lines = " ".join(stdout.split())
    assert (
        'dog option chosen, asked "Talk about dogs." (system prompt, unsteered): 20% -> 40% '
        "(2 to it, 0 away, McNemar p = 0.5); steered at 1x: 50%; asked and steered at 1x: 70%"
    ) in lines
    assert (
        'knowledge acc, asked "Talk about dogs." (system prompt, unsteered): 1.00 -> 0.90 '
        "(0 right, 1 wrong, McNemar p = 1); steered at 1x: 0.90; asked and steered at 1x: 0.80"
    ) in lines
    assert "sweep_saeval_demo_knowledge_acc.png" in stdout
    assert "the first run converts Gemma 3 270M" in result.stderr
    assert f"demo model: {tmp_path / 'model'}" in result.stderr
    # the duration comes first: 10 + 10 + 10 + 8 documents (each task cut at --limit 10)
    assert result.stderr.startswith("the demo evaluates 38 documents x 3 configurations")


def test_demo_device_default_limit_and_one_strength(
    patched: list[RunConfig], tmp_path: Path
) -> None:
    result = invoke("demo", "--output", str(tmp_path), "--scale", "1", "--device", "cpu")
    assert result.exit_code == 0, result.output
    config, prompted = patched  # the demo's run, then its prompted run
    assert (config.device, config.limit, config.scales) == ("cpu", None, (1.0,))
    assert prompted.system_instruction == "Talk about dogs." and prompted.device == "cpu"
    assert "steering sweep" not in result.stdout
    assert "knowledge (acc): 1.00 -> 0.90 at 1x" in result.stdout


def test_bad_scales_and_a_bad_steer_file_stop_before_the_runner(
    patched: list[RunConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = invoke("demo", "--scales", "1,x")
    assert result.exit_code == 2 and "--scale: 'x' is not a number" in result.stderr
    bad = tmp_path / "demo.csv"
    bad.write_text("latent_idx,steering_coefficient,sae_release,sae_id\n99999,1,saeval-demo,x\n")
    monkeypatch.setattr(demo_run, "DEMO_STEER_FILE", bad)
    result = invoke("demo", "--output", str(tmp_path))
    assert result.exit_code == 1 and "does not validate" in result.stderr
    assert patched == []


# --- the real model ------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_on_gemma_3_270m_steers_towards_dogs_and_costs_capability(
    tmp_path: Path, demo_cache: Path
) -> None:
    args = ["demo", "--output", tmp_path, "--scales", "1,4", "--limit", "44", "--device", "cpu"]
    # from a folder outside any git checkout: lm-eval probes for one
    done = run_saeval(*args, cwd=tmp_path, env={"SAEVAL_CACHE": str(demo_cache)})
    assert done.returncode == 0, done.stderr[-3000:]
    shown = done.stdout + done.stderr  # saeval's own progress only: no tqdm bar, no git noise
    assert "it/s]" not in shown and "%|" not in shown and "fatal:" not in shown, shown[-3000:]
    assert "requests" in done.stderr
    runs = sorted(tmp_path.glob("demo-*/"))  # the sweep, then its prompted run
    assert [path.name.removeprefix(runs[0].name) for path in runs] == ["", "-prompt"]
    run = runs[0]
    report = json.loads((run / "comparison.json").read_text())
    series = {(s["task"], s["metric"]): s for s in report["series"]}
    dog = {p["scale"]: p for p in series[(PREFERENCE, "acc")]["points"]}
    assert dog[1.0]["test"] == MCNEMAR and dog[1.0]["delta"] > 0 and dog[1.0]["p"] < 0.05
    assert dog[4.0]["value"] > dog[1.0]["value"]
    points = {p["scale"]: p for p in series[(KNOWLEDGE, "acc")]["points"]}
    assert points[4.0]["value"] < points[1.0]["value"]
    assert points[4.0]["delta"] < 0 and points[4.0]["p"] < 0.05
    assert "dog option chosen:" in done.stdout and f"results: {run}" in done.stdout
    assert "KL(unsteered || steered) per token on its prompts:" in done.stdout
    assert 'dog option chosen, asked "Talk about dogs."' in done.stdout
    assert 0 < points[1.0]["kl"] < points[4.0]["kl"]  # KL rises with the strength


def test_demo_sentence_on_the_preference_probe_steerability() -> None:
    from saeval.analysis.compare import Side
    from saeval.analysis.steerability import DocSlope, Steerability
    from saeval.analysis.sweep import Sweep

    def entry(scales: tuple[float, ...]) -> Steerability:
        slopes = (DocSlope(0, 2, 0.5), DocSlope(1, 1, -0.25), DocSlope(2, 0, 1.0))
        return Steerability(PREFERENCE, scales, 3, 0.4167, 0.5, 0.1, 0.9, 1, 1 / 3, 0.06, 0.79,
                            0, slopes)  # fmt: skip

    other = replace(entry((0.0, 1.0, 2.0)), task=KNOWLEDGE)
    steer = (entry((0.0, 0.5, 1.0)), entry((0.0, -1.0, -2.0)), other)
    report = Sweep(Side("baseline", "b", "m"), (), 0.02, 0.05, (), steer)
    assert demo_run._steerability_lines(report) == [
        "dog preference, per-document slope of log P(dog option) over scales 0,0.5,1: median "
        "+0.5000 [+0.1000, +0.9000] per unit scale; anti-steerable 1 of 3 documents (33%, 95% CI "
        "6%-79%)"
    ]
