"""``<output>/.cache/baselines/<key>/``: baselines reused by later runs with the same key.

The baseline cache key (`baseline_key`) is the sha256 of everything that determines one baseline
task's numbers: model id + revision (or a local folder's fingerprint) + loaded dtype, device kind
(and GPU name), batch size, the task's name, version and config fingerprint (resolved YAML,
local data files and the Python files of its `!function` tags), num_fewshot, limit, the four
seeds, apply_chat_template, gen_kwargs, bootstrap_iters and the lm_eval, transformers and torch
versions. Batch size is in the key:
padding and batched kernels change log-likelihoods in the last bits and can flip near-tied
answers, so a baseline is reused only when computed exactly as the steered runs beside it are.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from saeval.run.config import BOOTSTRAP_ITERS, RunConfig
from saeval.run.layout import CACHE_DIR
from saeval.run.lm_eval_format import TaskOutput, dump_json
from saeval.run.manifest import Manifest, now, spec_sha256
from saeval.spec.tasks import TaskSpec

_TMP = ".tmp"


class BaselineCache:
    """``<output>/.cache/baselines/<key>/``: one baseline task's results, samples and key inputs."""

    def __init__(self, output: Path) -> None:
        self.root = output / CACHE_DIR

    def get(self, key: str) -> tuple[TaskOutput, dict[str, Any]] | None:
        """The cached output and its key record, or None (a damaged entry counts as absent)."""
        folder = self.root / key
        try:
            meta = json.loads((folder / "key.json").read_text(encoding="utf-8"))
            results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
            samples = {
                task: (folder / f"samples_{task}.jsonl").read_text(encoding="utf-8")
                for task in meta["samples"]
            }
        except (OSError, ValueError, KeyError):
            return None
        return TaskOutput(results=results, samples=samples), meta

    def put(self, key: str, output: TaskOutput, inputs: Mapping[str, Any], run: str) -> None:
        """Store a baseline task under ``key`` (first writer wins; the folder appears whole)."""
        final = self.root / key
        if final.exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(dir=self.root, prefix=f"{_TMP}-{key[:12]}-"))
        meta = {"key": key, "inputs": dict(inputs), "run": run, "created": now()}
        meta["samples"] = sorted(output.samples)
        try:
            (building / "results.json").write_text(dump_json(output.results), encoding="utf-8")
            for task, text in output.samples.items():
                (building / f"samples_{task}.jsonl").write_text(text, encoding="utf-8")
            (building / "key.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
            os.rename(building, final)
        except OSError:
            if not final.exists():
                raise
        finally:
            shutil.rmtree(building, ignore_errors=True)


def baseline_key(inputs: Mapping[str, Any]) -> str:
    """The cache key (sha256) of a baseline task's key inputs."""
    return spec_sha256({"cache_schema": 1, **inputs})


def baseline_inputs(manifest: Manifest, config: RunConfig, spec: TaskSpec) -> dict[str, Any]:
    """Everything that determines one baseline task's numbers (the cache key's inputs)."""
    model = manifest.model
    packages = manifest.packages
    return {
        "model": model.id,
        "revision": model.revision,
        "dtype": model.dtype,
        "device": model.device_name,  # cpu, mps or the GPU's name
        "batch_size": config.batch_size,
        "task": {"name": spec.name, "version": spec.version, "config": spec.config_sha256},
        "num_fewshot": config.num_fewshot,
        "limit": config.limit,
        "seeds": config.seeds,
        "apply_chat_template": config.apply_chat_template,
        "gen_kwargs": config.gen_kwargs,
        "bootstrap_iters": BOOTSTRAP_ITERS,
        "packages": {name: packages.get(name) for name in ("lm_eval", "transformers", "torch")},
    }
