"""A damaged baseline cache entry is found before it is reused, dropped, recomputed and stored
again, and the run says so; its numbers equal those of a run that never had a cache."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import invoke
from sae_builders import MC_TASK

from saeval.records.run_folder import CACHE_DIR, CACHE_KEY_FILE
from saeval.run.baseline_cache import BaselineCache, baseline_key
from saeval.run.lm_eval_format import TaskOutput


def run_mc(bundle: Path, output: Path, name: str) -> tuple[int, str]:
    """`saeval run` of the multiple-choice task (baseline + steered); exit code and stderr."""
    args = ["run", str(bundle / "steer.csv"), "--model", str(bundle / "model")]
    args += ["--include-path", str(bundle / "tasks"), "--output", str(output), "--device", "cpu"]
    result = invoke(*args, "--tasks", MC_TASK, "--name", name)
    return result.exit_code, result.stderr


def per_document(run: Path) -> dict[int, tuple[Any, ...]]:
    """The baseline's per-document values: doc_id -> (doc_hash, acc, acc_norm, responses)."""
    (samples,) = (run / "baseline").glob(f"samples_{MC_TASK}_*.jsonl")
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    return {
        r["doc_id"]: (r["doc_hash"], r["acc"], r["acc_norm"], json.dumps(r["filtered_resps"]))
        for r in records
    }


@pytest.fixture(scope="module")
def uncached(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A first run (no cache yet): its baseline is computed and put in the cache."""
    output = tmp_path_factory.mktemp("uncached")
    code, stderr = run_mc(tiny_bundle, output, "first")
    assert code == 0, stderr
    assert "reused" not in stderr
    return output


def _entry(output: Path) -> Path:
    (entry,) = (output / CACHE_DIR).iterdir()
    return entry


def _truncate_samples(entry: Path) -> str:
    (samples,) = entry.glob("samples_*.jsonl")
    samples.write_text(samples.read_text()[:500])
    return f"{samples.name} does not match its checksum"


def _edit_results(entry: Path) -> str:
    results = entry / "results.json"
    data = json.loads(results.read_text())
    data["results"][MC_TASK]["acc,none"] = 0.99  # still valid JSON, wrong numbers
    results.write_text(json.dumps(data))
    return "results.json does not match its checksum"


def _remove_samples(entry: Path) -> str:
    (samples,) = entry.glob("samples_*.jsonl")
    samples.unlink()
    return f"{samples.name}: No such file or directory"


def _garble_key_file(entry: Path) -> str:
    (entry / CACHE_KEY_FILE).write_text("{not json")
    return f"{CACHE_KEY_FILE} unreadable"


@pytest.mark.parametrize(
    "damage", [_truncate_samples, _edit_results, _remove_samples, _garble_key_file]
)
def test_a_damaged_cached_baseline_is_recomputed_and_says_so(
    tiny_bundle: Path, uncached: Path, tmp_path: Path, damage: Callable[[Path], str]
) -> None:
    shutil.copytree(uncached / ".cache", tmp_path / ".cache")
    entry = _entry(tmp_path)
    why = damage(entry)

    code, stderr = run_mc(tiny_bundle, tmp_path, "second")
    assert code == 0, stderr
    assert "Traceback" not in stderr
    note = f"cached baseline {entry.name[:12]} of {MC_TASK} was damaged ({why}"
    assert note in stderr.replace("\n", " "), stderr
    assert "computing it again" in stderr and "reused from the cache" not in stderr
    second = tmp_path / "second"
    (record,) = [
        r
        for r in json.loads((second / "run.json").read_text())["completed"]
        if r["configuration"] == "baseline"
    ]
    assert record["reused_from"] is None
    assert per_document(second) == per_document(uncached / "first")

    hit = BaselineCache(tmp_path).get(entry.name)  # stored again, whole, by the second run
    assert hit is not None and hit[1]["run"] == "second"
    assert [p.name for p in (tmp_path / CACHE_DIR).iterdir()] == [entry.name]

    code, stderr = run_mc(tiny_bundle, tmp_path, "third")  # and reused from then on
    assert code == 0 and "reused from the cache" in stderr and "was damaged" not in stderr
    assert per_document(tmp_path / "third") == per_document(uncached / "first")


def _output() -> TaskOutput:
    results = {"results": {"t": {"acc,none": 0.5}}, "configs": {"t": {}}}
    samples = {"t": json.dumps({"doc_id": 0, "acc": 1.0}) + "\n"}
    return TaskOutput(results=results, samples=samples)


def test_put_writes_a_checksum_of_every_file(tmp_path: Path) -> None:
    cache = BaselineCache(tmp_path)
    key = baseline_key({"task": "t"})
    cache.put(key, _output(), {"task": "t"}, run="r")
    meta = json.loads((cache.root / key / CACHE_KEY_FILE).read_text())
    assert set(meta["sha256"]) == {"results.json", "samples_t.jsonl"}
    for name, digest in meta["sha256"].items():
        assert hashlib.sha256((cache.root / key / name).read_bytes()).hexdigest() == digest


def _wrong_key(cache: BaselineCache, key: str) -> tuple[str, str]:
    other = baseline_key({"task": "other"})
    (cache.root / key).rename(cache.root / other)
    return other, f"{CACHE_KEY_FILE} is for key {key[:12]}"


def _no_checksums(cache: BaselineCache, key: str) -> tuple[str, str]:
    path = cache.root / key / CACHE_KEY_FILE
    meta = json.loads(path.read_text())
    del meta["sha256"]
    path.write_text(json.dumps(meta))
    return key, f"{CACHE_KEY_FILE} unreadable: 'sha256'"


def _samples_that_do_not_parse(cache: BaselineCache, key: str) -> tuple[str, str]:
    folder = cache.root / key
    data = b"{half a line\n"
    (folder / "samples_t.jsonl").write_bytes(data)
    meta = json.loads((folder / CACHE_KEY_FILE).read_text())
    meta["sha256"]["samples_t.jsonl"] = hashlib.sha256(data).hexdigest()  # checksum agrees
    (folder / CACHE_KEY_FILE).write_text(json.dumps(meta))
    return key, "samples_t.jsonl does not parse"


@pytest.mark.parametrize("damage", [_wrong_key, _no_checksums, _samples_that_do_not_parse])
def test_get_drops_an_entry_it_cannot_trust_and_says_why(
    tmp_path: Path, damage: Callable[[BaselineCache, str], tuple[str, str]]
) -> None:
    cache = BaselineCache(tmp_path)
    key = baseline_key({"task": "t"})
    cache.put(key, _output(), {"task": "t"}, run="r")
    looked_up, why = damage(cache, key)
    reasons: list[str] = []
    assert cache.get(looked_up, on_damaged=reasons.append) is None
    assert len(reasons) == 1 and reasons[0].startswith(why), reasons
    assert list(cache.root.iterdir()) == []  # removed, no temporary folder left
    assert cache.get(looked_up, on_damaged=reasons.append) is None and len(reasons) == 1
