"""steer.csv reader: golden files per dialect, every rejected input, and a round trip."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bad_steer_cases import BAD_CASES, BadCase
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saeval.errors import SteerFileError
from saeval.spec.catalog import locate
from saeval.spec.steer_file import Action, SteerRow, read_steer_file

GOLDEN = Path(__file__).parent / "golden" / "steer"
ROOT = Path(__file__).parent.parent
STEERS = ROOT / "steers"


def _row_dict(row: SteerRow) -> dict[str, Any]:
    """A row as the golden JSON stores it (no file path: that depends on the caller)."""
    fields = dataclasses.asdict(row)
    del fields["file"]
    fields["action"] = str(fields["action"])
    return fields


@pytest.mark.parametrize("name", ["seed", "fork", "lm_eval", "tolerant"])
def test_golden(name: str) -> None:
    path = GOLDEN / f"{name}.csv"
    expected = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))

    steer = read_steer_file(path)

    assert steer.dialect == expected["dialect"]
    assert [_row_dict(row) for row in steer.rows] == expected["rows"]
    assert {row.file for row in steer.rows} == {str(path)}
    assert steer.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_tolerant_golden_keeps_its_bom_and_crlf() -> None:
    data = (GOLDEN / "tolerant.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    assert data.count(b"\r\n") == data.count(b"\n")
    steer = read_steer_file(GOLDEN / "tolerant.csv")
    assert steer.text == data.decode("utf-8-sig")


def test_row_where_names_file_line_and_column() -> None:
    row = read_steer_file(STEERS / "dog.csv").rows[0]
    assert row.where() == f"{STEERS / 'dog.csv'}:2"
    assert row.where("latent_idx") == f"{STEERS / 'dog.csv'}:2 latent_idx"


@pytest.mark.parametrize(
    ("name", "columns"),
    [
        ("seed", {"latent_idx": "latent_idx", "sae_release": "sae_release", "hook": "hook"}),
        ("fork", {"latent_idx": "latent_idx", "action": "hook_action", "sae_id": "sae_id"}),
        (
            "lm_eval",
            {"latent_idx": "feature_index", "sae_release": "sparse_model", "hook": "hookpoint"},
        ),
    ],
)
def test_row_column_names_the_field_in_the_row_dialect(name: str, columns: dict[str, str]) -> None:
    row = read_steer_file(GOLDEN / f"{name}.csv").rows[0]
    header = (GOLDEN / f"{name}.csv").read_text().splitlines()[0].split(",")
    for field, column in {**columns, "coefficient": "steering_coefficient"}.items():
        assert row.column(field) == column
        assert column in header


def test_published_dog_example(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    (row,) = read_steer_file("steers/dog.csv").rows
    assert row == SteerRow(
        file="steers/dog.csv",
        line=2,
        latent_idx=12082,
        coefficient=240.0,
        sae_release="gemma-scope-2b-pt-res-canonical",
        sae_id="layer_20/width_16k/canonical",
        description="dogs and obedience",
    )
    assert b", 240.0," in (STEERS / "dog.csv").read_bytes()


def test_examples_cover_every_dialect_and_name_real_saes() -> None:
    dialects = set()
    actions = set()
    for path in sorted(STEERS.glob("*.csv")):
        steer = read_steer_file(path)
        dialects.add(steer.dialect)
        for row in steer.rows:
            actions.add(row.action)
            assert locate(row.sae_release, row.sae_id).kind == "release", row.where("sae_id")
    assert dialects == {"seed", "fork", "lm-eval"}
    assert Action.CLAMP in actions


@pytest.mark.parametrize("case", BAD_CASES, ids=[case.name for case in BAD_CASES])
def test_bad_input_is_rejected_with_its_location(case: BadCase, tmp_path: Path) -> None:
    path = tmp_path / "steer.csv"
    path.write_bytes(case.content)

    with pytest.raises(SteerFileError) as raised:
        read_steer_file(path)

    first = raised.value.problems[0]
    where = f"{path}:{case.line}" + (f" {case.column}" if case.column else "")
    assert first.startswith(f"{where}: "), first
    assert case.fragment in first
    assert str(raised.value).startswith(first)


def test_bad_cases_are_distinct_and_many() -> None:
    assert len(BAD_CASES) >= 16
    assert len({case.name for case in BAD_CASES}) == len(BAD_CASES)
    assert len({case.content for case in BAD_CASES}) == len(BAD_CASES)


def test_every_problem_is_collected(tmp_path: Path) -> None:
    path = tmp_path / "steer.csv"
    path.write_text(
        "latent_idx,steering_coefficient,sae_release,sae_id,action\n"
        "x,1,r,i,add\n"
        "1,nan,,i,add\n"
        "2,1,r,i,print\n"
        "3,1,r,i,add\n"
        "3,2,r,i,add\n"
    )
    with pytest.raises(SteerFileError) as raised:
        read_steer_file(path)
    located = [problem.split(": ")[0] for problem in raised.value.problems]
    assert located == [
        f"{path}:2 latent_idx",
        f"{path}:3 steering_coefficient",
        f"{path}:3 sae_release",
        f"{path}:4 action",
        f"{path}:6 latent_idx",
    ]
    assert str(raised.value).endswith("(and 4 more problems)")
    assert "line 5" in raised.value.problems[-1]


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(SteerFileError, match="file not found"):
        read_steer_file(tmp_path / "nope.csv")
    with pytest.raises(SteerFileError, match="is a directory"):
        read_steer_file(tmp_path)


def test_same_latent_may_be_added_and_clamped_or_used_in_two_saes(tmp_path: Path) -> None:
    path = tmp_path / "steer.csv"
    path.write_text(
        "latent_idx,steering_coefficient,sae_release,sae_id,action\n"
        "5,10,r,a,add\n"
        "5,3,r,a,clamp\n"
        "5,10,r,b,add\n"
        "5,10,other,a,add\n"
    )
    assert len(read_steer_file(path).rows) == 4


def test_reading_imports_nothing_heavy() -> None:
    code = (
        "import sys, saeval.spec.steer_file as m; m.read_steer_file('steers/dog.csv');"
        "heavy = {'pandas', 'torch', 'numpy', 'sae_lens', 'lm_eval', 'transformers'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]"


# Round trip: rows written with the csv module read back equal, in each dialect.

_TEXT = st.text(
    alphabet=st.characters(exclude_categories=("Cs", "Cc")) | st.sampled_from(',"\n#; '),
    max_size=30,
).map(str.strip)
_NAME = _TEXT.filter(bool)
_ACTIONS = {
    "seed": list(Action),
    "fork": [Action.ADD],
    "lm-eval": [Action.ADD],
}


@st.composite
def _rows(draw: st.DrawFn, dialect: str) -> SteerRow:
    action = draw(st.sampled_from(_ACTIONS[dialect]))
    coefficient = draw(st.floats(allow_nan=False, allow_infinity=False))
    hook = draw(
        st.none() | _NAME.filter(lambda h: not h.startswith("blocks.") and "hook_" not in h)
    )
    return SteerRow(
        file="",
        line=0,
        latent_idx=draw(st.integers(min_value=0, max_value=2**40)),
        coefficient=0.0 if action is Action.ABLATE else coefficient,
        sae_release=draw(_NAME),
        sae_id=draw(_TEXT),
        action=action,
        hook=None if dialect == "fork" else hook,
        description=draw(_TEXT),
        dialect=dialect,
    )


# Each dialect's columns; the first is never free text, since a line starting with `#` is a
# comment (a file whose first column may start with `#` must quote it).
_COLUMNS = {
    "seed": "latent_idx steering_coefficient sae_release sae_id action hook description",
    "fork": "hook_action latent_idx steering_coefficient sae_release sae_id clamp_value "
    "description",
    "lm-eval": "loader description sae_id hookpoint feature_index steering_coefficient action "
    "sparse_model",
}


def _write(rows: list[SteerRow], columns: list[str]) -> bytes:
    """Rows written in these columns by the csv module."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        coefficient = "" if row.action is Action.ABLATE else repr(row.coefficient)
        cells = {
            "latent_idx": row.latent_idx,
            "feature_index": row.latent_idx,
            "steering_coefficient": coefficient,
            "sae_release": row.sae_release,
            "sparse_model": row.sae_release,
            "sae_id": row.sae_id,
            "action": row.action,
            "hook_action": row.action,
            "hook": row.hook or "",
            "hookpoint": row.hook or "",
            "description": row.description,
            "loader": "sae_lens",
            "clamp_value": "",
        }
        writer.writerow([cells[column] for column in columns])
    return out.getvalue().encode("utf-8")


def _key(row: SteerRow) -> tuple[str, str, int, bool]:
    """What the reader refuses to see twice: one SAE latent added, or clamped, twice."""
    return (row.sae_release, row.sae_id, row.latent_idx, row.action is Action.ADD)


@pytest.mark.parametrize("dialect", ["seed", "fork", "lm-eval"])
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_round_trip(dialect: str, data: st.DataObject, tmp_path: Path) -> None:
    rows = data.draw(st.lists(_rows(dialect), min_size=1, max_size=6, unique_by=_key))
    first, *others = _COLUMNS[dialect].split()
    columns = [first, *data.draw(st.permutations(others))]
    path = tmp_path / "steer.csv"
    path.write_bytes(_write(rows, columns))

    steer = read_steer_file(path)

    assert steer.dialect == dialect
    got = [dataclasses.replace(row, file="", line=0) for row in steer.rows]
    assert got == rows
    lines = [row.line for row in steer.rows]
    assert lines[0] == 2 and lines == sorted(set(lines))
