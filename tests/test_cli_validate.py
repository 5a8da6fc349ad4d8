"""`saeval validate`: the shipped examples pass, every bad input fails with `file:line column`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from bad_steer_cases import BAD_CASES, BadCase
from conftest import invoke, run_saeval

ROOT = Path(__file__).resolve().parent.parent
DOG_LINK = "https://www.neuronpedia.org/gemma-2-2b/20-gemmascope-res-16k/12082"
HEADER = "latent_idx,steering_coefficient,sae_release,sae_id,description,action,hook\n"
RELEASE = "gemma-scope-2b-pt-res-canonical,layer_20/width_16k/canonical"
DOG = f"12082,240.0,{RELEASE},dogs,,\n"
HEAVY = ("torch", "lm_eval", "sae_lens", "transformers", "transformer_lens")


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty folder with an empty Hugging Face cache, so paths in messages are short."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)


def outcome(*args: str) -> tuple[int, str, str]:
    """`saeval ARGS` in-process: (exit code, stdout, stderr)."""
    result = invoke(*args)
    return result.exit_code, result.stdout, result.stderr


def write(name: str, text: str) -> str:
    """Write a file in the current folder and return its name."""
    Path(name).write_text(text, encoding="utf-8")
    return name


def test_dog_csv_validates_in_a_fresh_process() -> None:
    start = time.perf_counter()
    done = run_saeval("validate", "steers/dog.csv", cwd=ROOT, columns=250)
    print(f"\n`python -m saeval validate steers/dog.csv`: {time.perf_counter() - start:.2f} s")
    assert done.returncode == 0, done.stderr
    for expected in (
        "google/gemma-2-2b",
        "blocks.20.hook_resid_post",
        "16384",
        DOG_LINK,
        "steers/dog.csv: 1 row valid",
    ):
        assert expected in done.stdout
    assert done.stderr == ""


@pytest.mark.parametrize("name", ["dog.csv", "dog_clamp.csv", "dog_fork.csv", "dog_lm_eval.csv"])
def test_every_shipped_steer_file_is_valid(name: str) -> None:
    code, out, err = outcome("validate", str(ROOT / "steers" / name), "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out)["rows"]
    assert (row["latent_idx"], row["sae"]["d_sae"], row["neuronpedia_url"]) == (
        12082,
        16384,
        DOG_LINK,
    )


def test_validate_imports_no_heavy_package() -> None:
    code = (
        "import sys\n"
        "from saeval.cli.main import app\n"
        "try:\n"
        "    app(['validate', 'steers/dog.csv'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_cli_module_imports_no_heavy_package() -> None:
    code = f"import saeval.cli.main, sys; print([m for m in {HEAVY!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_json_output_has_the_documented_schema() -> None:
    code, out, _ = outcome("validate", write("dog.csv", HEADER + DOG), "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["ok"] and data["schema"] == "saeval.resolution/1"
    assert data["files"] == [{"path": "dog.csv", "summary": "dog.csv: 1 row valid"}]
    (row,) = data["rows"]
    assert row["sae"]["model"] == "google/gemma-2-2b"
    assert row["hook_name"] == "blocks.20.hook_resid_post"


def test_several_files_form_one_steer_set() -> None:
    first = write("a.csv", HEADER + DOG)
    second = write("b.csv", HEADER + f"100,-3.5,{RELEASE},other,,\n")
    code, out, _ = outcome("validate", first, second)
    assert code == 0
    assert "a.csv: 1 row valid" in out and "b.csv: 1 row valid" in out


def test_model_option_accepts_alias_and_rejects_another_model() -> None:
    dog = write("dog.csv", HEADER + DOG)
    assert outcome("validate", dog, "--model", "gemma-2-2b")[0] == 0
    code, _, err = outcome("validate", dog, "--model", "gpt2")
    assert code == 1
    assert "dog.csv:2 sae_release: the SAE is for google/gemma-2-2b, not --model gpt2" in err


@pytest.mark.parametrize("case", BAD_CASES, ids=[case.name for case in BAD_CASES])
def test_bad_steer_file_fails_with_its_location(case: BadCase) -> None:
    Path("bad.csv").write_bytes(case.content)
    code, out, err = outcome("validate", "bad.csv")
    assert code == 1
    place = f"bad.csv:{case.line}" + (f" {case.column}:" if case.column else ":")
    assert place in err and case.fragment in err, err
    assert "Traceback" not in out + err


@dataclass(frozen=True)
class CatalogCase:
    """Steer files that read fine but do not resolve, and the problem `validate` reports."""

    name: str
    files: dict[str, str]  # file name -> rows under HEADER
    where: str  # "file:line column"
    fragment: str
    args: tuple[str, ...] = ()


CATALOG_CASES = [
    CatalogCase(
        "unknown release",
        {"s.csv": "1,1.0,no-such-release,layer_20/width_16k/canonical,,,\n"},
        "s.csv:2 sae_release",
        "unknown SAE release 'no-such-release'",
    ),
    CatalogCase(
        "misspelt release",
        {"s.csv": "1,1.0,gemma-scope-2b-pt-res-canonicl,layer_20/width_16k/canonical,,,\n"},
        "s.csv:2 sae_release",
        "did you mean 'gemma-scope-2b-pt-res-canonical'",
    ),
    CatalogCase(
        "misspelt sae_id",
        {"s.csv": "1,1.0,gemma-scope-2b-pt-res-canonical,layer_20/width_16k/canonicl,,,\n"},
        "s.csv:2 sae_id",
        "did you mean 'layer_20/width_16k/canonical'",
    ),
    CatalogCase(
        "latent beyond width 16384",
        {"s.csv": f"16384,1.0,{RELEASE},,,\n"},
        "s.csv:2 latent_idx",
        "d_sae=16384 latents (valid: 0-16383)",
    ),
    CatalogCase(
        "mixed base models across rows",
        {"s.csv": DOG + "3,1.0,gpt2-small-res-jb,blocks.8.hook_resid_pre,,,\n"},
        "s.csv:3 sae_release",
        "the SAE is for gpt2, but s.csv:2 steers google/gemma-2-2b",
    ),
    CatalogCase(
        "--model mismatch",
        {"s.csv": DOG},
        "s.csv:2 sae_release",
        "not --model meta-llama/Llama-3.1-8B",
        ("--model", "meta-llama/Llama-3.1-8B"),
    ),
    CatalogCase(
        "hook unsupported for the architecture",
        {"s.csv": f"1,1.0,{RELEASE},,,blocks.20.hook_q\n"},
        "s.csv:2 hook",
        "cannot be mapped onto architecture 'gemma2'",
    ),
    CatalogCase(
        "duplicate rows across two files",
        {"a.csv": DOG, "b.csv": DOG.replace("240.0", "10.0")},
        "b.csv:2 latent_idx",
        "already added at a.csv:2",
    ),
    CatalogCase(
        "local folder without cfg.json",
        {"s.csv": "1,1.0,./empty_sae,,,,\n"},
        "s.csv:2 sae_release",
        "has no cfg.json",
    ),
    CatalogCase(
        "missing local folder",
        {"s.csv": "1,1.0,./nowhere/sae,,,,\n"},
        "s.csv:2 sae_release",
        "local SAE folder './nowhere/sae' not found",
    ),
    CatalogCase(
        "clamped twice across files",
        {"a.csv": DOG.replace(",,\n", ",clamp,\n"), "b.csv": f"12082,,{RELEASE},dogs,ablate,\n"},
        "b.csv:2 latent_idx",
        "already clamped at a.csv:2",
    ),
    CatalogCase(
        "Gemma Scope 2 transcoder hook",
        {
            "s.csv": "1,1.0,gemma-scope-2-270m-pt-transcoders,"
            "transcoder/layer_15_width_262k_l0_big_affine,,,\n"
        },
        "s.csv:2 sae_id",
        "hook 'blocks.15.hook_mlp_in' cannot be mapped",
    ),
]


@pytest.mark.parametrize("case", CATALOG_CASES, ids=[case.name for case in CATALOG_CASES])
def test_catalog_problem_fails_with_its_location(case: CatalogCase) -> None:
    Path("empty_sae").mkdir()
    names = [write(name, HEADER + rows) for name, rows in case.files.items()]
    code, out, err = outcome("validate", *names, *case.args)
    assert code == 1
    assert f"{case.where}: " in err and case.fragment in err, err
    assert "Traceback" not in out + err


def test_every_problem_of_every_file_is_printed() -> None:
    bad_rows = write("rows.csv", HEADER + "x,1.0,a,b,,,\n-1,1.0,a,b,,,\n")
    bad_catalog = write("cat.csv", HEADER + f"99999,1.0,{RELEASE},,,\n1,1.0,nope,x,,,\n")
    code, _, err = outcome("validate", bad_rows, bad_catalog)
    assert code == 1
    for where in ("rows.csv:2 latent_idx", "rows.csv:3 latent_idx", "cat.csv:2 latent_idx"):
        assert where in err
    assert "cat.csv:3 sae_release" in err
    # a row whose cells are bad still has its SAE looked up, in the same round
    assert "rows.csv:2 sae_release" in err and "rows.csv:3 sae_release" in err
    assert "error: 6 problems in the steer files" in err
