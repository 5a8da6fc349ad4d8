"""The results store: lm-eval's file format, atomic writes, completion records, baseline cache."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from saeval.analysis.results_io import load_side
from saeval.atomic import write_atomic
from saeval.errors import ResultsError
from saeval.records.run_folder import configuration_name
from saeval.records.run_record import Manifest, ModelRecord, RunStatus, spec_sha256
from saeval.run.baseline_cache import BaselineCache, baseline_key
from saeval.run.lm_eval_format import TaskOutput, merge_results, task_output
from saeval.run.store import RunStore


def _sample(doc_id: int, correct: bool) -> dict[str, Any]:
    """A per-document record shaped like lm-eval 0.4.13's (multiple choice, two choices)."""
    return {
        "doc_id": doc_id,
        "doc": {"question": f"q{doc_id}", "choices": ["a", "b"], "answer": 0},
        "target": 0,
        "arguments": [(f"q{doc_id} Answer:", " a"), (f"q{doc_id} Answer:", " b")],
        "resps": [[(-1.5, False)], [(-2.5 if correct else -0.5, False)]],
        "filtered_resps": [(-1.5, False), (-2.5 if correct else -0.5, False)],
        "filter": "none",
        "metrics": ["acc"],
        "doc_hash": f"d{doc_id}",
        "prompt_hash": f"p{doc_id}",
        "target_hash": f"t{doc_id}",
        "acc": 1.0 if correct else 0.0,
    }


def _results(task: str, acc: float, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """A simple_evaluate return value for one task (with samples)."""
    return {
        "results": {task: {"alias": task, "acc,none": acc, "acc_stderr,none": 0.1}},
        "group_subtasks": {task: []},
        "configs": {task: {"task": task, "output_type": "multiple_choice"}},
        "versions": {task: 1.0},
        "n-shot": {task: 0},
        "higher_is_better": {task: {"acc": True}},
        "n-samples": {task: {"original": len(samples), "effective": len(samples)}},
        "samples": {task: samples},
        "config": {"model": "tiny", "batch_size": "8"},
        "date": 1.0,
    }


TRACKER_FIELDS = {
    "model_source": "sae_steered",
    "model_name": "tiny",
    "model_name_sanitized": "tiny",
}


def _manifest(name: str = "run") -> Manifest:
    return Manifest(
        name=name,
        spec={"tasks": ["a"]},
        spec_sha256=spec_sha256({"tasks": ["a"]}),
        command="saeval run x.csv",
        steer_files=[],
        saes=[],
        model=ModelRecord(id="tiny"),
        tasks=[],
        limit=None,
        num_fewshot=None,
        seeds={"random": 0},
        apply_chat_template=False,
        gen_kwargs=None,
        scales=[1.0],
        packages={},
        python="3.11",
        platform="linux",
        git_revision=None,
    )


def test_samples_and_results_match_evaluation_tracker(tmp_path: Path) -> None:
    """Our files hold exactly what lm-eval's EvaluationTracker writes for the same results."""
    from lm_eval.loggers import EvaluationTracker

    samples = [_sample(0, True), _sample(1, False)]
    ours = task_output(_results("t", 0.5, copy.deepcopy(samples)), TRACKER_FIELDS)

    tracker = EvaluationTracker(output_path=str(tmp_path))
    tracker.general_config_tracker.model_name_sanitized = "m"
    theirs = _results("t", 0.5, copy.deepcopy(samples))
    their_samples = theirs.pop("samples")
    tracker.save_results_aggregated(results=theirs, samples=their_samples)
    tracker.save_results_samples(task_name="t", samples=their_samples["t"])

    written = next((tmp_path / "m").glob("samples_t_*.jsonl")).read_text(encoding="utf-8")
    assert ours.samples["t"] == written
    aggregated = json.loads(next((tmp_path / "m").glob("results_*.json")).read_text())
    assert ours.results["task_hashes"] == aggregated["task_hashes"]
    assert ours.results["results"] == aggregated["results"]


def test_write_atomic_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "f.json"
    write_atomic(target, "one")
    write_atomic(target, b"two")
    assert target.read_text() == "two"
    assert os.listdir(target.parent) == ["f.json"]


def test_write_atomic_keeps_the_old_file_when_the_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f.json"
    write_atomic(target, "old")

    def broken(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.json"]


@pytest.mark.parametrize(
    ("scale", "scales", "name"),
    [
        (None, (1.0,), "baseline"),
        (1.0, (1.0,), "steered"),
        (2.0, (2.0,), "steered@2"),
        (0.5, (0.0, 0.5, 1.0), "steered@0.5"),
        (0.1234567, (0.1234567, 0.1234568), "steered@0.1234567"),
        (-1.0, (-1.0, 1.0), "steered@-1"),
        (1.0, (0.0, 0.5, 1.0), "steered@1"),
    ],
)
def test_configuration_names(scale: float | None, scales: tuple[float, ...], name: str) -> None:
    assert configuration_name(scale, scales) == name


def test_merge_results_joins_tasks_and_keeps_the_first_date() -> None:
    first = _results("a", 0.5, [])
    second = _results("b", 0.25, [])
    second["date"] = 2.0
    merged = merge_results(first, second)
    assert set(merged["results"]) == {"a", "b"}
    assert set(merged["configs"]) == {"a", "b"}
    assert merged["date"] == 1.0


def test_save_task_writes_an_lm_eval_folder_and_a_record(tmp_path: Path) -> None:
    """Two tasks saved one by one read back, with samples, like an lm_eval output folder."""
    run = RunStore.create(tmp_path / "run", _manifest())
    run.configuration_dir("baseline", None)
    for task, acc in (("a", 1.0), ("b", 0.0)):
        output = task_output(_results(task, acc, [_sample(0, acc == 1.0)]), TRACKER_FIELDS)
        run.save_task("baseline", task, output, 1.25)

    side = load_side(tmp_path / "run" / "baseline")
    assert side.tasks["a"].metrics["acc,none"].value == 1.0
    assert side.tasks["b"].metrics["acc,none"].value == 0.0
    assert side.tasks["b"].samples is not None
    assert side.tasks["b"].samples[0].values["acc,none"] == 0.0
    reopened = RunStore.open(tmp_path / "run")
    record = reopened.record("baseline", "b")
    assert record is not None and record.seconds == 1.25
    assert reopened.record("steered", "b") is None
    assert len(list((tmp_path / "run" / "baseline").glob("results_*.json"))) == 1


def test_manifest_round_trips_and_rejects_other_schemas(tmp_path: Path) -> None:
    run = RunStore.create(tmp_path / "run", _manifest())
    run.set_status(RunStatus.INTERRUPTED)
    assert RunStore.open(tmp_path / "run").manifest == run.manifest

    data = json.loads((tmp_path / "run" / "run.json").read_text())
    data["schema_version"] = 99
    (tmp_path / "run" / "run.json").write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="schema_version 99"):
        RunStore.open(tmp_path / "run")


def test_create_refuses_an_existing_folder(tmp_path: Path) -> None:
    RunStore.create(tmp_path / "run", _manifest())
    with pytest.raises(ResultsError, match="already exists") as caught:
        RunStore.create(tmp_path / "run", _manifest())
    assert caught.value.hint is not None and "--resume" in caught.value.hint


def test_baseline_cache_round_trip_and_damaged_entries(tmp_path: Path) -> None:
    cache = BaselineCache(tmp_path)
    output = task_output(_results("a", 0.5, [_sample(0, True)]), TRACKER_FIELDS)
    key = baseline_key({"task": "a"})
    assert cache.get(key) is None
    cache.put(key, output, {"task": "a"}, run="first")
    cache.put(key, TaskOutput(results={}, samples={}), {"task": "a"}, run="second")  # first wins
    hit = cache.get(key)
    assert hit is not None
    got, meta = hit
    assert meta["run"] == "first"
    assert got.samples == output.samples
    assert got.results["results"] == output.results["results"]
    assert [p.name for p in cache.root.iterdir()] == [key]  # no temporary folder left

    (cache.root / key / "results.json").write_text("{truncated")
    assert cache.get(key) is None


@given(
    st.dictionaries(st.sampled_from(["model", "dtype", "limit", "batch_size"]), st.integers()),
    st.sampled_from(["model", "dtype", "limit", "batch_size"]),
)
def test_baseline_key_changes_with_every_input(inputs: dict[str, int], changed: str) -> None:
    other = {**inputs, changed: inputs.get(changed, 0) + 1}
    assert baseline_key(inputs) != baseline_key(other)
    assert baseline_key(dict(reversed(list(inputs.items())))) == baseline_key(inputs)


def _two_tasks(folder: Path) -> RunStore:
    """A run folder whose baseline finished tasks a (two documents) and b."""
    run = RunStore.create(folder, _manifest())
    run.configuration_dir("baseline", None)
    for task in ("a", "b"):
        samples = [_sample(0, True), _sample(1, False)]
        run.save_task(
            "baseline", task, task_output(_results(task, 0.5, samples), TRACKER_FIELDS), 1
        )
    return run


def test_every_written_file_has_its_sha256_in_run_json(tmp_path: Path) -> None:
    run = _two_tasks(tmp_path / "run")
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["file_sha256"]
    on_disk = {
        f"baseline/{path.name}": hashlib.sha256(path.read_bytes()).hexdigest()
        for path in (tmp_path / "run" / "baseline").iterdir()
    }
    assert recorded == on_disk and len(on_disk) == 3  # results (rewritten by b) + 2 samples
    run.close()


def test_resume_forgets_a_cut_samples_file_and_a_damaged_results_file(tmp_path: Path) -> None:
    _two_tasks(tmp_path / "run").close()
    (samples,) = (tmp_path / "run" / "baseline").glob("samples_a_*.jsonl")
    samples.write_text(samples.read_text().splitlines(keepends=True)[0])  # 1 of 2 documents
    store = RunStore.open(tmp_path / "run", lock=True)
    notes = store.forget_damaged()
    assert notes == [
        f"files damaged, running again: baseline/a ({samples.name} does not match the sha256 "
        "run.json recorded when it was written)"
    ]
    assert [r.task for r in store.manifest.completed] == ["b"]
    assert [r.task for r in RunStore.open(tmp_path / "run").manifest.completed] == ["b"]

    (results,) = (tmp_path / "run" / "baseline").glob("results_*.json")
    results.write_text(results.read_text().replace("0.5", "0.9"))
    assert store.forget_damaged() == [
        f"files damaged, running again: baseline/b ({results.name} does not match the sha256 "
        "run.json recorded when it was written)"
    ]
    assert store.manifest.completed == [] and not results.exists()  # b starts it anew
    store.close()


def test_resume_says_which_files_are_missing(tmp_path: Path) -> None:
    _two_tasks(tmp_path / "run").close()
    next((tmp_path / "run" / "baseline").glob("samples_b_*.jsonl")).unlink()
    with RunStore.open(tmp_path / "run", lock=True) as store:
        assert store.forget_damaged() == ["files missing, running again: baseline/b"]


def test_a_run_json_without_checksums_still_reads_and_compare_says_unverified(
    tmp_path: Path,
) -> None:
    _two_tasks(tmp_path / "run").close()
    data = json.loads((tmp_path / "run" / "run.json").read_text())
    del data["file_sha256"]  # as an older saeval wrote it
    (tmp_path / "run" / "run.json").write_text(json.dumps(data))
    with RunStore.open(tmp_path / "run", lock=True) as store:
        assert store.manifest.file_sha256 == {} and store.forget_damaged() == []
    side = load_side(tmp_path / "run" / "baseline")
    assert side.tasks["a"].metrics["acc,none"].value == 0.5
    assert any("files unverified" in note and "older saeval" in note for note in side.notes)


def test_compare_refuses_a_run_file_that_fails_its_checksum(tmp_path: Path) -> None:
    _two_tasks(tmp_path / "run").close()
    assert load_side(tmp_path / "run" / "baseline").notes == ()  # every file verified
    (samples,) = (tmp_path / "run" / "baseline").glob("samples_b_*.jsonl")
    samples.write_text(samples.read_text().splitlines(keepends=True)[1])
    with pytest.raises(ResultsError, match=f"{samples.name} does not match the sha256") as caught:
        load_side(tmp_path / "run" / "baseline")
    assert caught.value.hint is not None and "--resume" in caught.value.hint
    samples.unlink()
    with pytest.raises(ResultsError, match=f"{samples.name} is missing"):
        load_side(tmp_path / "run" / "baseline")


@pytest.mark.parametrize("killed", ["before the results file", "before the record"])
def test_a_kill_while_a_task_is_saved_keeps_every_earlier_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killed: str
) -> None:
    """Task b's save dies between run.json and the results file (or after the results file,
    before its record): the results file holds a's or a's and b's numbers, both saeval's own,
    so a resume keeps a and reruns b only."""
    from saeval.run import store as store_module

    run = RunStore.create(tmp_path / "run", _manifest())
    run.configuration_dir("baseline", None)
    samples = [_sample(0, True), _sample(1, False)]
    run.save_task("baseline", "a", task_output(_results("a", 0.5, samples), TRACKER_FIELDS), 1)

    def die(*args: Any) -> None:
        raise KeyboardInterrupt  # the process is gone: nothing after this line runs

    if killed == "before the results file":
        real = store_module.write_atomic

        def write(path: Path, data: str | bytes) -> None:
            (die if path.name.startswith("results") else real)(path, data)

        monkeypatch.setattr(store_module, "write_atomic", write)
    else:
        monkeypatch.setattr(run.manifest, "completed", _Dying(run.manifest.completed, die))
    with pytest.raises(KeyboardInterrupt):
        run.save_task("baseline", "b", task_output(_results("b", 0.0, samples), TRACKER_FIELDS), 1)
    run.close()
    monkeypatch.undo()
    store = RunStore.open(tmp_path / "run", lock=True)
    assert store.forget_damaged() == []
    assert [(r.configuration, r.task) for r in store.manifest.completed] == [("baseline", "a")]
    assert store.manifest.file_sha256_replaced == {}
    (results,) = (tmp_path / "run" / "baseline").glob("results_*.json")
    key = f"baseline/{results.name}"
    assert store.manifest.file_sha256[key] == hashlib.sha256(results.read_bytes()).hexdigest()
    store.close()


class _Dying(list):  # type: ignore[type-arg]
    """A completed-records list whose append is the moment the process dies."""

    def __init__(self, records: list[Any], die: Any) -> None:
        super().__init__(records)
        self.die = die

    def append(self, record: Any) -> None:
        self.die()
