"""`saeval validate` reports every problem of a row in one round: a row whose cells are bad
still has its SAE, hook and latent range checked, and the file's good rows are resolved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import invoke

from saeval.errors import SteerFileError
from saeval.spec.steer_file import read_steer_file

RELEASE = "gemma-scope-2b-pt-res-canonical"
HEADER = "latent_idx,steering_coefficient,sae_release,sae_id,action\n"


def validate(*args: str) -> tuple[int, str, str]:
    result = invoke("validate", *args)
    return result.exit_code, result.stdout, result.stderr


def test_a_row_with_three_problems_shows_all_three_at_once(tmp_path: Path) -> None:
    path = tmp_path / "three.csv"
    path.write_text(
        HEADER + f"abc,1,{RELEASE},layer_20/width_99k/canonical,bogus\n"
        f"12082,240,{RELEASE},layer_20/width_16k/canonical,add\n"
    )
    code, out, err = validate(str(path))
    assert code == 1
    problems = [line for line in err.splitlines() if line.startswith(str(path))]
    assert [p.split(": ")[0] for p in problems] == [
        f"{path}:2 action",
        f"{path}:2 latent_idx",
        f"{path}:2 sae_id",  # the SAE is looked up though the row's other cells are bad
    ]
    assert "has no SAE 'layer_20/width_99k/canonical'" in problems[2]
    assert "error: 3 problems in the steer files" in err
    assert "12082" in out and f"{path}: 3 problems in rows not shown; 1 row valid" in out


def test_a_bad_coefficient_does_not_hide_a_latent_out_of_range(tmp_path: Path) -> None:
    path = tmp_path / "range.csv"
    path.write_text(HEADER + f"99999,xyz,{RELEASE},layer_20/width_16k/canonical,add\n")
    code, out, _ = validate(str(path), "--format", "json")
    assert code == 1
    problems = json.loads(out)["problems"]
    assert [p.split(": ")[0] for p in problems] == [
        f"{path}:2 steering_coefficient",
        f"{path}:2 latent_idx",
    ]
    assert "d_sae=16384" in problems[1] and "valid: 0-16383" in problems[1]


def test_a_run_still_refuses_the_file_on_its_reading_problems(tmp_path: Path) -> None:
    path = tmp_path / "range.csv"
    path.write_text(HEADER + f"99999,xyz,{RELEASE},layer_20/width_16k/canonical,add\n")
    with pytest.raises(SteerFileError) as raised:
        read_steer_file(path)
    assert raised.value.problems == [
        f"{path}:2 steering_coefficient: 'xyz' is not a number; expected a plain decimal "
        "number (digits 0-9, an optional sign, point and exponent) such as 240.0 or 2.5e-3"
    ]


def test_a_latent_added_twice_is_one_problem_and_the_first_row_shows(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    sae = f"{RELEASE},layer_20/width_16k/canonical,add"
    path.write_text(HEADER + f"12082,1,{sae}\n12082,2,{sae}\n")
    code, out, err = validate(str(path))
    assert code == 1
    problems = [line for line in err.splitlines() if line.startswith(str(path))]
    assert len(problems) == 1 and problems[0].startswith(f"{path}:3 latent_idx: latent 12082")
    assert "already added on line 2" in problems[0]
    assert f"{path}: 1 problem in rows not shown; 1 row valid" in out
