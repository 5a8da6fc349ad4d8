"""``<output>/.cache/baselines/<key>/``: baselines reused by later runs with the same key.

The baseline cache key (`baseline_key`) is the sha256 of everything that determines one baseline
task's numbers: model id + revision (or a local folder's fingerprint) + loaded dtype, device kind
(and GPU name), the task's name, version and config fingerprint (resolved YAML, local data
files and the Python files of its `!function` tags), every evaluation option declared with
``cache_key`` (``saeval.spec.options``: batch size, num_fewshot, limit, the four seeds,
apply_chat_template, system_instruction when set, gen_kwargs), bootstrap_iters and the lm_eval,
transformers and torch versions, and the number of data parallel ranks when there are several.
Batch size and ranks are in the key: padding and batched kernels change log-likelihoods in the
last bits and can flip near-tied answers, so a baseline is reused only when computed exactly as
the steered runs beside it are.

An entry is verified before it is reused: ``key.json`` parses and names the key looked up, every
file has the sha256 that ``put`` wrote into ``key.json``, and every file parses. A damaged entry
is removed (and reported through ``on_damaged``), so the run computes that baseline again and
stores it anew instead of copying broken files into every later run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from saeval.records.run_folder import CACHE_DIR, CACHE_KEY_FILE, CACHE_RESULTS_FILE, samples_file
from saeval.records.run_record import Manifest, now, spec_sha256
from saeval.run.config import BOOTSTRAP_ITERS, RunConfig
from saeval.run.lm_eval_format import TaskOutput, dump_json
from saeval.spec.options import recorded
from saeval.spec.tasks import TaskSpec

_TMP = ".tmp"


class BaselineCache:
    """``<output>/.cache/baselines/<key>/``: one baseline task's results, samples and key inputs."""

    def __init__(self, output: Path) -> None:
        self.root = output / CACHE_DIR

    def get(
        self, key: str, on_damaged: Callable[[str], None] | None = None
    ) -> tuple[TaskOutput, dict[str, Any]] | None:
        """The cached output and its key record, or None; a damaged entry is removed (and
        ``on_damaged`` told what is wrong with it) and counts as absent."""
        folder = self.root / key
        if not folder.is_dir():
            return None
        try:
            meta, files = _verified(folder, key)
            results = json.loads(files[CACHE_RESULTS_FILE])
            samples = {task: files[samples_file(task, "")] for task in meta["samples"]}
        except _Damaged as damage:
            self._drop(folder)
            if on_damaged is not None:
                on_damaged(str(damage))
            return None
        return TaskOutput(results=results, samples=samples), meta

    def _drop(self, folder: Path) -> None:
        """Move a damaged entry out of the way (atomically), then delete it."""
        doomed = folder.with_name(f"{_TMP}-damaged-{folder.name[:12]}-{os.getpid()}")
        with contextlib.suppress(OSError):
            os.rename(folder, doomed)
            folder = doomed
        shutil.rmtree(folder, ignore_errors=True)

    def put(
        self,
        key: str,
        output: TaskOutput,
        inputs: Mapping[str, Any],
        run: str,
        on_unusable: Callable[[str], None] | None = None,
    ) -> None:
        """Store a baseline task under ``key`` (first writer wins; the folder appears whole).
        When the cache folder cannot be made (``<output>/.cache`` is a file, say), nothing is
        stored and ``on_unusable`` is told why: the run goes on without the cache."""
        final = self.root / key
        if final.exists():
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            building = Path(tempfile.mkdtemp(dir=self.root, prefix=f"{_TMP}-{key[:12]}-"))
        except OSError as error:
            if on_unusable is not None:
                on_unusable(f"{self.root}: {error.strerror or error}")
            return
        files = {CACHE_RESULTS_FILE: dump_json(output.results).encode()}
        files |= {samples_file(task, ""): text.encode() for task, text in output.samples.items()}
        meta = {"key": key, "inputs": dict(inputs), "run": run, "created": now()}
        meta["samples"] = sorted(output.samples)
        meta["sha256"] = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        try:
            for name, data in files.items():
                (building / name).write_bytes(data)
            (building / CACHE_KEY_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
            os.rename(building, final)
        except OSError:
            if not final.exists():
                raise
        finally:
            shutil.rmtree(building, ignore_errors=True)


class _Damaged(Exception):
    """A cache entry that cannot be trusted; the message says why."""


def _verified(folder: Path, key: str) -> tuple[dict[str, Any], dict[str, str]]:
    """An entry's key record and its files' text, checked against the key and the checksums."""
    try:
        meta = json.loads((folder / CACHE_KEY_FILE).read_text(encoding="utf-8"))
        names = [CACHE_RESULTS_FILE, *(samples_file(task, "") for task in meta["samples"])]
        expected = meta["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise _Damaged(f"{CACHE_KEY_FILE} unreadable: {error}") from None
    if meta.get("key") != key:
        raise _Damaged(f"{CACHE_KEY_FILE} is for key {str(meta.get('key'))[:12]}")
    files = {}
    for name in names:
        try:
            data = (folder / name).read_bytes()
        except OSError as error:
            raise _Damaged(f"{name}: {error.strerror or error}") from None
        if not isinstance(expected, dict) or hashlib.sha256(data).hexdigest() != expected.get(name):
            raise _Damaged(f"{name} does not match its checksum")
        try:
            files[name] = data.decode("utf-8")
            lines = files[name].splitlines() if name != CACHE_RESULTS_FILE else [files[name]]
            for line in lines:
                json.loads(line)
        except ValueError as error:
            raise _Damaged(f"{name} does not parse: {error}") from None
    return meta, files


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
        "task": {"name": spec.name, "version": spec.version, "config": spec.config_sha256},
        **recorded(config, cache_key=True),  # the declared options that decide the numbers
        "bootstrap_iters": BOOTSTRAP_ITERS,
        "packages": {name: packages.get(name) for name in ("lm_eval", "transformers", "torch")},
        **{key: manifest.spec[key] for key in ("data_parallel",) if key in manifest.spec},
    }
