"""The GPU check's pieces that run here: which wheels `make gpu-wheels` takes, how it strips
wandb's binaries, and how `benchmarks/gpu_check.py` compares two sweeps and reports.
(`make gpu-check-cpu-proof` runs the whole check end to end; it takes minutes.)"""

from __future__ import annotations

import importlib
import json
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
from conftest import invoke

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def benchmarks(monkeypatch: pytest.MonkeyPatch) -> dict[str, ModuleType]:
    """benchmarks.gpu_check and benchmarks.gpu_check_wheels (benchmarks/ is not installed)."""
    monkeypatch.syspath_prepend(str(REPO))
    names = ("gpu_check", "gpu_check_wheels")
    return {name: importlib.import_module(f"benchmarks.{name}") for name in names}


def test_the_wheels_are_what_the_image_lacks(benchmarks: dict[str, ModuleType]) -> None:
    missing, from_image = benchmarks["gpu_check_wheels"].closure("3.12")
    assert {"lm-eval", "sae-lens", "datasets", "transformer-lens", "wandb"} <= set(missing)
    assert not {"torch", "transformers", "numpy", "accelerate", "pandas"} & set(missing)
    assert {"transformers", "accelerate", "numpy"} <= from_image and "torch" not in from_image
    assert missing["lm-eval"] == "0.4.13"  # the version installed here


def test_strip_drops_the_files_and_their_record_lines(
    benchmarks: dict[str, ModuleType], tmp_path: Path
) -> None:
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    record = "pkg/__init__.py,sha256=a,1\npkg/bin/core,sha256=b,9\npkg-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("pkg/__init__.py", "x = 1\n")
        archive.writestr("pkg/bin/core", b"\0" * 9)
        archive.writestr("pkg-1.0.dist-info/RECORD", record)
    benchmarks["gpu_check_wheels"].strip(wheel, "pkg/bin/")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.namelist() == ["pkg/__init__.py", "pkg-1.0.dist-info/RECORD"]
        kept = archive.read("pkg-1.0.dist-info/RECORD").decode()
    assert kept == "pkg/__init__.py,sha256=a,1\npkg-1.0.dist-info/RECORD,,\n"


def _run_folder(root: Path, logliks: dict[str, list[list[float]]], acc: list[float]) -> Path:
    """A run folder whose configurations hold a samples file of the measured task."""
    for configuration, per_doc in logliks.items():
        folder = root / configuration
        folder.mkdir(parents=True)
        lines = [
            json.dumps({"doc_id": i, "filtered_resps": [[str(x), "False"] for x in values],
                        "acc": acc[i]})
            for i, values in enumerate(per_doc)
        ]  # fmt: skip
        (folder / "samples_gc_bench_2026-12-01T10-00-00.jsonl").write_text("\n".join(lines))
    return root


def test_agreement_is_the_largest_loglik_difference_and_same_acc(
    benchmarks: dict[str, ModuleType], tmp_path: Path
) -> None:
    shared = {"baseline": [[-1.0, -2.0]], "steered@2": [[-3.0, -4.0]]}
    separate = {"baseline": [[-1.0, -2.25]], "steered@2": [[-3.5, -4.0]]}
    a = _run_folder(tmp_path / "a", shared, [1.0])
    b = _run_folder(tmp_path / "b", separate, [1.0])
    found = benchmarks["gpu_check"].agreement(a, b)
    assert found == {"max_abs_loglik_diff": 0.5, "same_acc": True}
    c = _run_folder(tmp_path / "c", shared, [0.0])
    assert benchmarks["gpu_check"].agreement(a, c)["same_acc"] is False


def test_the_summary_names_each_step_and_its_error_line(
    benchmarks: dict[str, ModuleType],
) -> None:
    reason = "exit 1: python -m saeval run ...\nloading model\nerror: RuntimeError (baseline): x\n"
    results = {
        "environment": {"device_name": "NVIDIA H200"},
        "profile": {"note": "gemma-2-2b configuration"},
        "wall_s": 300.0,
        "steps": {
            "cuda_tests": {"status": "ok", "summary": "3 passed in 20.00s"},
            "throughput": {"status": "failed", "reason": reason},
            "shared_prefix": {"status": "not available",
                              "reason": "shared-prefix: not available in this tree"},
        },
    }  # fmt: skip
    lines = benchmarks["gpu_check"].summary(results).splitlines()
    assert lines == [
        "saeval GPU check on NVIDIA H200 (gemma-2-2b configuration): 300.0 s",
        "  CUDA tests: ok 3 passed in 20.00s",
        "  throughput: failed: error: RuntimeError (baseline): x",
        "  shared-prefix: not available in this tree",
    ]


def test_the_summary_shows_the_hook_cost_per_variant(benchmarks: dict[str, ModuleType]) -> None:
    results = {
        "environment": {"device_name": "NVIDIA H100"},
        "profile": {"note": "gemma-2-2b configuration"},
        "wall_s": 200.0,
        "steps": {
            "cuda_tests": {"status": "skipped", "reason": "time budget: 10 s left"},
            "throughput": {"status": "skipped", "reason": "time budget: 10 s left"},
            "shared_prefix": {"status": "skipped", "reason": "time budget: 10 s left"},
            "hooks": {
                "status": "ok",
                "ms_per_pass": {"no hook": 10.0, "hook, finite check on the device": 10.5},
                "over_no_hook": {"no hook": 1.0, "hook, finite check on the device": 1.05},
            },
        },
    }
    lines = benchmarks["gpu_check"].summary(results).splitlines()
    assert lines[-2:] == [
        "  no hook: 10.00 ms/pass (1.000x)",
        "  hook, finite check on the device: 10.50 ms/pass (1.050x)",
    ]


def test_same_generations_counts_identical_texts_and_names_the_differing_configurations(
    benchmarks: dict[str, ModuleType],
) -> None:
    from benchmarks.gpu_check_generation import same_generations

    shared = {("baseline", 0): " Paris", ("baseline", 1): " Rome", ("steered@2", 0): " dog"}
    separate = {("baseline", 0): " Paris", ("baseline", 1): " Rome", ("steered@2", 0): " cat"}
    assert same_generations(shared, separate) == {
        "generations": 3,
        "identical": 2,
        "identical_share": 0.6667,
        "configurations_differing": ["steered@2"],
    }
    with pytest.raises(ValueError, match="different documents"):
        same_generations(shared, {("baseline", 0): " Paris"})


def test_the_summary_shows_the_generation_sweep(benchmarks: dict[str, ModuleType]) -> None:
    from benchmarks.gpu_check_generation import summary_lines

    step = {
        "status": "ok",
        "generated_tokens": 640,
        "tokens_per_s": {"shared": 1280.0, "separate": 640.0},
        "ratio": 0.5,
        "agreement": {"generations": 20, "identical": 19, "identical_share": 0.95},
    }
    assert summary_lines(step, "") == [
        "  generation sweep tokens/s (640 generated tokens): shared 1,280, separate 640",
        "    shared / separate: 0.500x; identical generations: 19/20 (95.0%)",
    ]
    skipped = {"status": "skipped", "reason": "time budget: 10 s left"}
    assert summary_lines(skipped, "time budget: 10 s left") == [
        "  generation sweep: skipped: time budget: 10 s left"
    ]


def test_the_generation_step_runs_on_the_cpu_and_both_ways_generate_the_same(
    benchmarks: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The step end to end on the CPU profile's fixtures (two prompts), each `saeval run`
    in this process: float32 greedy generations are identical both ways."""
    import dataclasses
    import time

    from benchmarks.gpu_check_fixtures import GEN_TASK, GEN_TOKENS, build, profile_for
    from benchmarks.gpu_check_generation import generation_sweep

    check = benchmarks["gpu_check"]

    def in_process(command: list[str], budget: object, env: object = None) -> object:
        started = time.perf_counter()
        result = invoke(*command[3:])  # python -m saeval run ...
        assert result.exit_code == 0, result.output
        return check.Done(result.output, time.perf_counter() - started)

    monkeypatch.setattr(check, "run", in_process)
    profile = dataclasses.replace(profile_for("cpu"), gen_docs=2, warm_docs=1)
    fixtures = build(tmp_path, profile)
    found = generation_sweep(fixtures, profile, tmp_path, check.Budget(3600))
    assert found["agreement"] == {
        "generations": 5 * 2,
        "identical": 5 * 2,
        "identical_share": 1.0,
        "configurations_differing": [],
    }
    assert 0 < found["generated_tokens"] <= 5 * 2 * GEN_TOKENS
    for way in ("shared", "separate"):
        manifest = json.loads((tmp_path / "runs" / f"generation-{way}" / "run.json").read_text())
        seconds = [r["seconds"] for r in manifest["completed"] if r["task"] == GEN_TASK]
        assert len(seconds) == 5 and found["seconds"][way] == pytest.approx(sum(seconds))
        rate = found["generated_tokens"] / sum(seconds)
        assert found["tokens_per_s"][way] == pytest.approx(rate, abs=0.05)
