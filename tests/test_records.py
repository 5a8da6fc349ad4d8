"""The records of saeval's files: one versioning convention, and a run folder written before it
(``tests/golden/run-schema1``, run.json with ``"schema_version": 1``) still reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_checks import assert_one_line_error
from conftest import invoke

from saeval.analysis.report_files import write_comparison
from saeval.errors import ResultsError
from saeval.records.experiment_record import ExperimentRecord, read_definition
from saeval.records.run_record import SCHEMA, Manifest, read_manifest
from saeval.records.schema import schema_of
from saeval.records.side_effects import kl_columns, read_side_effects

SCHEMA1_RUN = Path(__file__).parent / "golden" / "run-schema1"


def _acc(samples: Path) -> dict[int, float]:
    """Per document, its acc as lm-eval logged it in a samples file."""
    rows = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()]
    return {int(row["doc_id"]): float(row["acc"]) for row in rows}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_schema_1_run_json_reads_as_the_current_record() -> None:
    raw = json.loads((SCHEMA1_RUN / "run.json").read_text())
    assert raw["schema_version"] == 1 and "schema" not in raw
    manifest = read_manifest(SCHEMA1_RUN)
    assert manifest.schema == SCHEMA == "saeval.run/2" and manifest.status == "complete"
    assert [(r.configuration, r.task) for r in manifest.completed] == [
        ("baseline", "tiny_mc"),
        ("steered", "tiny_mc"),
    ]
    assert manifest.tasks[0]["name"] == "tiny_mc" and manifest.saes[0]["d_sae"] > 0
    assert manifest.file_sha256 == raw["file_sha256"] and len(manifest.file_sha256) == 6
    rewritten = manifest.to_dict()
    assert rewritten["schema"] == SCHEMA and "schema_version" not in rewritten
    assert Manifest.from_dict(rewritten, SCHEMA1_RUN / "run.json") == manifest


def test_saeval_compare_reads_a_schema_1_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _snapshot(SCHEMA1_RUN)
    monkeypatch.chdir(tmp_path)
    result = invoke("compare", str(SCHEMA1_RUN), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema"] == "saeval.comparison/1" and "unverified" not in result.output
    row = next(r for r in data["rows"] if r["metric"] == "acc")
    (base,) = (SCHEMA1_RUN / "baseline").glob("samples_*.jsonl")
    (steered,) = (SCHEMA1_RUN / "steered").glob("samples_*.jsonl")
    a, b = _acc(base), _acc(steered)
    assert (row["n_paired"], row["a"], row["b"]) == (3, sum(a.values()) / 3, sum(b.values()) / 3)
    assert row["delta"] == pytest.approx(sum(b[d] - a[d] for d in a) / 3)
    (effects,) = (SCHEMA1_RUN / "steered").glob("side_effects_*.json")
    documents = json.loads(effects.read_text())["kl"]["documents"]
    by_hand = sum(d["sum"] for d in documents) / sum(d["tokens"] for d in documents)
    assert row["kl"] == pytest.approx(by_hand, rel=1e-12)
    assert _snapshot(SCHEMA1_RUN) == before  # compare never writes into what it reads


def test_the_report_files_of_a_schema_1_run_folder(tmp_path: Path) -> None:
    run = Path(shutil.copytree(SCHEMA1_RUN, tmp_path / "run"))
    _, files = write_comparison(run, margin=0.02)
    assert [f.name for f in files] == ["comparison.md", "comparison.csv", "comparison.json"]
    assert json.loads((run / "comparison.json").read_text())["schema"] == "saeval.comparison/1"
    (effects,) = (run / "steered").glob("side_effects_*.json")
    summary = read_side_effects(effects).kl
    assert summary is not None and summary.documents == 2 and summary.tokens == 27 + 30


def test_a_newer_schema_is_one_line_naming_the_file_and_the_versions_read(tmp_path: Path) -> None:
    run = Path(shutil.copytree(SCHEMA1_RUN, tmp_path / "run"))
    data = json.loads((run / "run.json").read_text())
    del data["schema_version"]
    (run / "run.json").write_text(json.dumps({"schema": "saeval.run/3", **data}))
    result = invoke("compare", str(run))
    assert_one_line_error(
        result, f"{run / 'run.json'}: schema 'saeval.run/3'", "saeval.run/1, saeval.run/2"
    )
    with pytest.raises(ResultsError, match="schema None is not one"):
        schema_of({}, "run", (1, 2), run / "run.json")


def test_one_kl_summary_shape_in_the_side_effects_file_and_the_comparison_row() -> None:
    (path,) = (SCHEMA1_RUN / "steered").glob("side_effects_*.json")
    written = json.loads(path.read_text())["kl"]
    summary = read_side_effects(path).kl
    assert summary is not None
    assert summary.to_dict() == {key: written[key] for key in summary.to_dict()}
    assert set(summary.to_dict()) == {"mean", "ci_low", "ci_high", "p95", "tokens"}
    columns = kl_columns(summary)
    assert columns == {
        "kl": written["mean"],
        "kl_ci_low": written["ci_low"],
        "kl_ci_high": written["ci_high"],
        "kl_p95": written["p95"],
    }
    assert set(kl_columns(None).values()) == {None}


def test_side_effects_and_experiment_records_of_another_version_are_refused(
    tmp_path: Path,
) -> None:
    (source,) = (SCHEMA1_RUN / "steered").glob("side_effects_*.json")
    data = json.loads(source.read_text())
    path = tmp_path / source.name
    path.write_text(json.dumps(data | {"schema": "saeval.side_effects/9"}))
    with pytest.raises(ResultsError, match=r"schema 'saeval\.side_effects/9' is not one"):
        read_side_effects(path)
    record = ExperimentRecord("e.yaml", "0" * 64, "tasks: [a]\n", {"model": "m"})
    (tmp_path / "experiment.json").write_text(json.dumps(record.to_dict()))
    assert read_definition(tmp_path) == {"model": "m"}
    (tmp_path / "experiment.json").write_text(json.dumps(record.to_dict() | {"schema": "x"}))
    with pytest.raises(ResultsError, match=r"experiment\.json: schema 'x' is not one"):
        read_definition(tmp_path)
