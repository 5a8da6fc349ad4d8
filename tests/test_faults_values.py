"""Non-finite numbers are an error, never a result: options, SAE weights, steered forward passes,
logits and results files with NaN or infinity stop with one line naming where they came from."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_checks import assert_one_line_error
from conftest import invoke
from sae_builders import MC_TASK, build_sae, save_sae, write_steer_csv
from sae_lens import SAE
from typer.testing import Result

from saeval.cli.options import parse_scales
from saeval.errors import ResultsError, SteeringError, UsageError
from saeval.run.config import RunConfig
from saeval.spec.steer_file import Action, SteerRow
from saeval.steering.finite import check_logits, finite_edit
from saeval.steering.plan import HookPointPlan, plan_from_saes

GOLDEN = Path(__file__).parent / "golden" / "lmeval"
RELEASE = "tiny-release"
HOOK = "blocks.1.hook_resid_post"


def row(latent: int, coefficient: float = 1.0, action: str = "add", line: int = 2) -> SteerRow:
    """A steer row on the tiny SAE registered as RELEASE."""
    return SteerRow("steer.csv", line, latent, coefficient, RELEASE, "", Action(action))


def poisoned(kind: str, name: str, index: Any) -> SAE:
    """A tiny SAE with NaN written into ``name[index]``."""
    sae = build_sae(kind, seed=1)
    with torch.no_grad():
        getattr(sae, name)[index] = math.nan
    return sae


def run_cli(bundle: Path, output: Path, *args: str, steer: Path | None = None) -> Result:
    """`saeval run` on the tiny bundle: one task, four documents."""
    base = ["run", str(steer or bundle / "steer.csv"), "--model", str(bundle / "model")]
    base += ["--include-path", str(bundle / "tasks"), "--output", str(output), "--device", "cpu"]
    base += ["--tasks", MC_TASK, "--limit", "4", "--name", "r"]
    return invoke(*base, *args)


def assert_usage_error(result: Result, *needles: str) -> None:
    """Exit 2 through the error boundary: one `error:` line naming every needle, no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if not line.startswith("hint: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def manifest(run: Path) -> dict[str, Any]:
    return dict(json.loads((run / "run.json").read_text()))


def completed(run: Path) -> list[tuple[str, str]]:
    return [(r["configuration"], r["task"]) for r in manifest(run)["completed"]]


# ---- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1,nan", "0.5,1e999"])
def test_scales_must_be_finite(text: str) -> None:
    with pytest.raises(UsageError, match="--scale takes finite numbers"):
        parse_scales(text)
    assert parse_scales("0,-1.5,2") == (0.0, -1.5, 2.0)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("1,,2", "--scale has an empty strength in '1,,2'"),
        ("1,2,", "--scale has an empty strength in '1,2,'"),
        ("1e-400", "'1e-400' is too small for a float64 and would become 0"),
        ("1_000", "'1_000' is not a number; expected a plain decimal"),
        ("\u0661\u0662", "is not a number; expected a plain decimal"),  # Arabic-Indic digits
        ("0x10", "'0x10' is not a number; expected a plain decimal"),
    ],
)
def test_scales_are_plain_decimal_numbers(text: str, needle: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_scales(text)
    assert needle in caught.value.message
    assert parse_scales("0, .5,+1.,2e0,0e-500") == (0.0, 0.5, 1.0, 2.0, 0.0)


@pytest.mark.parametrize("text", ["1_000", "\u0661\u0662", "1e-400", "infinity"])
def test_steer_file_coefficients_are_plain_decimal_numbers(tmp_path: Path, text: str) -> None:
    sae = save_sae(build_sae("standard", seed=1), tmp_path / "sae")
    steer = write_steer_csv(tmp_path / "steer.csv", [(3, text, sae, "")])
    result = invoke("validate", str(steer))
    assert result.exit_code == 1, result.output
    assert f"{steer}:2 steering_coefficient: {text!r} is " in result.stderr.replace("\n", "")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--scale", "nan"], "--scale takes finite numbers, got nan"),
        (["--scale", "1,inf"], "--scale takes finite numbers, got inf"),
        (["--limit", "nan"], "--limit must be a finite number above 0, got nan"),
        (["--limit", "inf"], "--limit must be a finite number above 0, got inf"),
        (["--margin", "nan"], "--margin must be a finite number >= 0"),
        (["--margin", "-0.1"], "--margin must be a finite number >= 0"),
        (["--seed", "-1"], "--seed must be a whole number from 0 to 4294967295, got -1"),
        (["--seed", str(2**32)], "got 4294967296"),
        (["--scale", "1,,2"], "--scale has an empty strength in '1,,2'"),
        (["--scale", "1e-400"], "'1e-400' is too small for a float64 and would become 0"),
        (["--gen-kwargs", "temperature"], "--gen-kwargs (gen_kwargs): part 'temperature' is not"),
        (["--gen-kwargs", "temperature=hot"], "temperature=hot: expected a number >= 0"),
        (["--gen-kwargs", "max_gen_toks=0"], "max_gen_toks=0: expected a whole number >= 1"),
        (["--gen-kwargs", "do_sample=maybe"], "do_sample=maybe: expected true or false"),
    ],
)
def test_bad_run_options_fail_before_any_model_is_loaded(
    tiny_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    needle: str,
) -> None:
    from saeval.run import evaluation

    def no_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(evaluation, "load_model", no_load)
    result = run_cli(tiny_bundle, tmp_path, *args)
    assert_usage_error(result, needle)
    assert not any(tmp_path.iterdir())  # no run folder either


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("scales", (1.0, math.nan), "--scale"),
        ("limit", math.nan, "--limit"),
        ("margin", math.inf, "--margin"),
        ("seed", 2**40, "--seed"),
    ],
)
def test_run_config_checks_numbers_for_library_callers(field: str, value: Any, needle: str) -> None:
    config = RunConfig(steer_files=(Path("s.csv"),), tasks=("t",), **{field: value})
    with pytest.raises(UsageError, match=needle):
        config.check()
    RunConfig(steer_files=(Path("s.csv"),), tasks=("t",), seed=2**32 - 1, limit=0.5).check()


def test_gen_kwargs_lm_eval_reads_are_accepted() -> None:
    from lm_eval.utils import simple_parse_args_string

    text = "temperature=0, top_p=0.9,do_sample=False,max_gen_toks=64,until=ok,"
    assert simple_parse_args_string(text)["temperature"] == 0  # what lm-eval will read
    RunConfig(steer_files=(Path("s.csv"),), tasks=("t",), gen_kwargs=text).check()
    assert simple_parse_args_string("temperature")["temperature"] == ""  # what it would fail on


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--alpha", "nan"], "--alpha must be between 0 and 1 (exclusive), got nan"),
        (["--alpha", "0"], "--alpha must be between 0 and 1"),
        (["--alpha", "1"], "--alpha must be between 0 and 1"),
        (["--margin", "nan"], "--margin must be a finite number >= 0"),
    ],
)
def test_bad_compare_options_fail_before_any_file_is_read(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    missing = str(tmp_path / "missing")  # reading it first would be exit 1, "no such file"
    result = invoke("compare", missing, missing, *args)
    assert_usage_error(result, needle)


def test_a_sweep_refuses_a_nan_margin() -> None:
    from saeval.analysis.results_io import load_side
    from saeval.analysis.sweep import sweep

    baseline = load_side(GOLDEN / "baseline")
    with pytest.raises(UsageError, match="--margin must be a finite number"):
        sweep(baseline, {1.0: load_side(GOLDEN / "steered")}, margin=math.nan)


# ---- the plan's tensors ----------------------------------------------------------------------


def test_a_nan_decoder_row_of_a_steered_latent_names_the_row_and_the_sae() -> None:
    sae = poisoned("standard", "W_dec", (3, 7))
    with pytest.raises(SteeringError) as caught:
        plan_from_saes([row(5), row(3, line=3)], {(RELEASE, ""): sae})
    assert caught.value.message == (
        f"steer.csv:3 latent_idx: non-finite W_dec[3] of SAE {RELEASE} (1 NaN of 64 values)"
    )
    assert caught.value.hint is not None and "damaged" in caught.value.hint


def test_nan_in_a_latent_no_row_uses_does_not_stop_the_plan() -> None:
    sae = poisoned("standard", "W_dec", 9)
    plan = plan_from_saes([row(3, 2.0)], {(RELEASE, ""): sae})
    vector = plan.points[HOOK].add_vector
    assert vector is not None and torch.equal(vector, 2.0 * sae.W_dec[3])


@pytest.mark.parametrize(
    ("kind", "name", "index", "part"),
    [
        ("jumprelu", "threshold", 4, "threshold[4]"),
        ("standard", "W_enc", (0, 4), "W_enc[:, 4]"),
        ("standard", "b_enc", 4, "b_enc[4]"),
        ("standard", "b_dec", 0, "b_dec"),
        ("topk", "W_enc", (0, 100), "W_enc"),  # latents compete: the whole encoder is used
    ],
)
def test_a_clamp_checks_the_encoder_parts_it_uses(
    kind: str, name: str, index: Any, part: str
) -> None:
    sae = poisoned(kind, name, index)
    with pytest.raises(SteeringError) as caught:
        plan_from_saes([row(4, 1.5, "clamp")], {(RELEASE, ""): sae})
    assert caught.value.message.startswith(f"steer.csv:2 latent_idx: non-finite {part} of SAE")
    plan_from_saes([row(4, 1.5, "add")], {(RELEASE, ""): sae})  # an add uses W_dec[4] only


@pytest.mark.parametrize(
    ("kind", "name", "index", "action"),
    [
        ("jumprelu", "threshold", 4, "add_through_sae"),  # x > NaN: latent 4 would never fire
        ("standard", "W_enc", (0, 100), "add_through_sae"),
        ("standard", "W_dec", 100, "add_through_sae"),  # the SAE decodes every latent
        ("topk", "b_enc", 100, "clamp"),  # TopK latents compete: all are encoded
    ],
)
def test_a_row_that_runs_the_whole_sae_checks_every_parameter(
    kind: str, name: str, index: Any, action: str
) -> None:
    sae = poisoned(kind, name, index)
    with pytest.raises(SteeringError) as caught:
        plan_from_saes([row(3, 1.5), row(3, 1.5, action, line=3)], {(RELEASE, ""): sae})
    assert caught.value.message.startswith(f"steer.csv:3 latent_idx: non-finite {name} of SAE")
    assert caught.value.hint is not None and "damaged" in caught.value.hint
    plan_from_saes([row(3, 1.5)], {(RELEASE, ""): sae})  # an add uses W_dec[3] only


def test_each_whole_sae_parameter_is_checked_once_and_named_by_its_first_row() -> None:
    sae = poisoned("jumprelu", "threshold", 4)
    rows = [row(3, 1.5, "add_through_sae", line=5), row(7, 2.0, "add_through_sae", line=6)]
    with pytest.raises(SteeringError) as caught:
        plan_from_saes(rows, {(RELEASE, ""): sae})
    assert caught.value.message == (
        f"steer.csv:5 latent_idx: non-finite threshold of SAE {RELEASE} (1 NaN of 128 values)"
    )


def test_an_add_vector_that_overflows_is_refused_when_the_plan_is_built() -> None:
    sae = build_sae("standard", seed=1)
    with pytest.raises(SteeringError, match=r"steer\.csv:2: non-finite summed add vector at"):
        plan_from_saes([row(3, 1e39)], {(RELEASE, ""): sae})


# ---- the forward pass ------------------------------------------------------------------------


def test_the_forward_guard_tells_an_edit_that_made_nan_from_a_model_that_did() -> None:
    rows = (row(3, 8.0), row(5, -4.0, line=3))
    guarded = finite_edit(lambda h: h * math.inf, HOOK, rows)
    with pytest.raises(SteeringError) as caught:
        guarded(torch.zeros(1, 2, 4))
    assert caught.value.message == (
        f"non-finite activation at {HOOK} after steering "
        "(steer.csv:2 latent_idx 3 (add 8) and 1 more row)"
    )
    with pytest.raises(SteeringError, match="before steering \\(the model produced it\\)"):
        guarded(torch.full((1, 2, 4), math.nan))
    assert torch.equal(finite_edit(lambda h: h + 1, HOOK, rows)(torch.zeros(2)), torch.ones(2))


def test_logits_are_checked_with_steering_on_and_off() -> None:
    check_logits(torch.zeros(2, 3), None)
    bad = torch.tensor([0.0, math.nan, math.inf, -math.inf])
    with pytest.raises(SteeringError, match="logits from the model without steering"):
        check_logits(bad, None)
    with pytest.raises(SteeringError) as caught:
        check_logits(bad, 2.0)
    assert caught.value.message == (
        "non-finite logits from the model steered at scale 2 (1 NaN and 2 inf of 4 values)"
    )


def test_a_nan_decoder_stops_the_run_before_the_model_loads(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from saeval.steering.lm_eval_model import SteeredHFLM

    def no_model(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(SteeredHFLM, "__init__", no_model)
    sae = save_sae(poisoned("standard", "W_dec", 3), tmp_path / "sae")
    steer = write_steer_csv(tmp_path / "steer.csv", [(3, 8.0, sae, "")])
    result = run_cli(tiny_bundle, tmp_path / "out", steer=steer)
    assert_one_line_error(
        result, f"{steer}:2 latent_idx: non-finite W_dec[3] of SAE {sae} (64 NaN of 64 values)"
    )
    data = manifest(tmp_path / "out" / "r")
    assert data["status"] == "failed" and data["completed"] == []


def test_nan_after_steering_stops_that_configuration_and_keeps_the_baseline(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = HookPointPlan.edit

    def nan_edit(self: HookPointPlan, h: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        edited = real(self, h, scale)
        # the load-time check runs one token; the evaluation's requests are longer
        return edited * math.nan if h.shape[1] > 1 else edited

    monkeypatch.setattr(HookPointPlan, "edit", nan_edit)
    result = run_cli(tiny_bundle, tmp_path)
    steer = tiny_bundle / "steer.csv"
    assert_one_line_error(
        result,
        f"steered ({MC_TASK}): non-finite activation at {HOOK} after steering "
        f"({steer}:2 latent_idx 3 (add 8) and 1 more row)",
    )
    run = tmp_path / "r"
    assert completed(run) == [("baseline", MC_TASK)]
    (results,) = (run / "baseline").glob("results_*.json")
    assert 0.0 <= json.loads(results.read_text())["results"][MC_TASK]["acc,none"] <= 1.0
    data = manifest(run)
    assert data["status"] == "failed"
    assert (data["errors"][0]["configuration"], data["errors"][0]["type"]) == (
        "steered",
        "SteeringError",
    )
    assert not list((run / "steered").glob("results_*.json"))


def test_nan_logits_stop_even_the_baseline(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lm_eval.models.huggingface import HFLM

    real = HFLM._model_call

    def nan_logits(self: HFLM, *args: Any, **kwargs: Any) -> torch.Tensor:
        return real(self, *args, **kwargs) * math.nan

    monkeypatch.setattr(HFLM, "_model_call", nan_logits)
    result = run_cli(tiny_bundle, tmp_path)
    assert_one_line_error(
        result, f"baseline ({MC_TASK}): non-finite logits from the model without steering ("
    )
    assert completed(tmp_path / "r") == []


def test_scale_1e308_stops_its_configuration_and_keeps_the_others(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    result = run_cli(tiny_bundle, tmp_path, "--scale", "1,1e308")
    assert_one_line_error(
        result,
        f"steered@1e+308 ({MC_TASK}): {tiny_bundle / 'steer.csv'}:2 latent_idx 3 (add 8) and 1 "
        f"more row: non-finite add vector at {HOOK} at scale 1e+308 in float32 (64 inf of 64",
    )
    run = tmp_path / "r"
    assert completed(run) == [("baseline", MC_TASK), ("steered@1", MC_TASK)]
    assert manifest(run)["errors"][0]["configuration"] == "steered@1e+308"
    for folder in ("baseline", "steered@1"):
        (results,) = (run / folder).glob("results_*.json")
        assert math.isfinite(json.loads(results.read_text())["results"][MC_TASK]["acc,none"])


# ---- results files ---------------------------------------------------------------------------


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    """A writable copy of the golden lm-eval outputs: <tmp>/run/{baseline,steered}/tiny-gpt2/."""
    return Path(shutil.copytree(GOLDEN, tmp_path / "run", ignore=shutil.ignore_patterns("*.md")))


def _samples(side: Path, task: str) -> Path:
    (found,) = side.glob(f"*/samples_{task}_*.jsonl")
    return found


def _results(side: Path) -> Path:
    (found,) = side.glob("*/results_*.json")
    return found


def _set_sample(file: Path, line: int, metric: str, value: float) -> int:
    """Write ``value`` as the metric of one sample record; its doc_id."""
    lines = file.read_text().splitlines()
    record = json.loads(lines[line - 1])
    record[metric] = value
    lines[line - 1] = json.dumps(record)  # NaN and Infinity, as Python's json writes them
    file.write_text("\n".join(lines) + "\n")
    return int(record["doc_id"])


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_compare_refuses_a_non_finite_per_document_value(golden: Path, value: float) -> None:
    samples = _samples(golden / "steered", MC_TASK)
    doc_id = _set_sample(samples, 3, "acc", value)
    result = invoke("compare", str(golden / "baseline"), str(golden / "steered"))
    assert_one_line_error(
        result, f"{samples}:3: acc of document {doc_id} is {value}, not a finite number"
    )


def test_compare_refuses_a_nan_aggregate_and_accepts_na_stderrs(golden: Path) -> None:
    results = _results(golden / "baseline")
    data = json.loads(results.read_text())
    assert data["results"]["tiny_ppl"]["bits_per_byte_stderr,none"] == "N/A"
    data["results"][MC_TASK]["acc_norm,none"] = math.nan
    results.write_text(json.dumps(data))
    result = invoke("compare", str(golden / "baseline"), str(golden / "steered"))
    assert_one_line_error(result, f"{results}: task '{MC_TASK}' acc_norm,none is nan")


def test_a_nan_of_a_nanmean_metric_is_a_document_without_a_value(golden: Path) -> None:
    from saeval.analysis.results_io import read_samples

    samples = _samples(golden / "steered", MC_TASK)
    doc_id = _set_sample(samples, 3, "acc", math.nan)
    docs = read_samples(samples, {"acc": "nanmean"})
    assert "acc,none" not in docs[doc_id].values and "acc_norm,none" in docs[doc_id].values
    assert all("acc,none" in doc.values for other, doc in docs.items() if other != doc_id)
    with pytest.raises(ResultsError, match=f"acc of document {doc_id} is nan"):
        read_samples(samples, {"acc": "mean"})
