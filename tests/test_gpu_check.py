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
