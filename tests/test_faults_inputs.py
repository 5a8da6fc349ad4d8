"""Bad inputs are one line naming their source: steer files that are not regular files, damaged
SAE folders, model folders without a tokenizer or with a damaged weights file, and comparisons
with nothing in common."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from builders import save_tiny_pretrained
from cli_checks import assert_one_line_error
from conftest import HANG_S, invoke
from sae_builders import MC_TASK, build_sae, save_sae, write_steer_csv
from typer.testing import Result

from saeval.errors import ResolutionError, SteerFileError
from saeval.spec.csv_records import MAX_STEER_BYTES
from saeval.spec.sae_folder import ARCHITECTURES, SAE_DTYPES
from saeval.spec.steer_file import read_steer_file

GOLDEN = Path(__file__).parent / "golden" / "lmeval"


def validate(*args: str) -> Result:
    return invoke("validate", *args)


def run_cli(bundle: Path, output: Path, steer: Path, model: Path | None = None) -> Result:
    """`saeval run STEER` on the tiny bundle's tasks (and model): one task, four documents."""
    base = ["run", str(steer), "--model", str(model or bundle / "model"), "--device", "cpu"]
    base += ["--include-path", str(bundle / "tasks"), "--output", str(output)]
    base += ["--tasks", MC_TASK, "--limit", "4", "--name", "r"]
    return invoke(*base)


def read_within(path: Path, seconds: float = HANG_S) -> SteerFileError:
    """The SteerFileError of reading ``path``, which must come back within ``seconds``."""
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            read_steer_file(path)
        except BaseException as error:  # handed to the test thread
            outcome.append(error)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive() and path.is_fifo():
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # let the reader go
    assert not thread.is_alive() and outcome, f"reading {path} did not end with an error"
    assert isinstance(outcome[0], SteerFileError), repr(outcome[0])
    return outcome[0]


# ---- steer files -----------------------------------------------------------------------------


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "steer.csv"
    os.mkfifo(fifo)
    error = read_within(fifo)
    assert error.message == (
        f"{fifo}: is a named pipe (FIFO), not a regular file; expected a steer.csv file"
    )


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_link_to_dev_zero_is_refused_without_reading_it(tmp_path: Path) -> None:
    link = tmp_path / "steer.csv"
    link.symlink_to("/dev/zero")
    error = read_within(link)
    assert error.message == (
        f"{link}: is a character device, not a regular file; expected a steer.csv file"
    )
    result = validate(str(link))
    assert result.exit_code == 1 and f"{link}: is a character device" in result.stderr


def test_a_steer_file_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "steer.csv"
    with big.open("wb") as file:
        file.write(b"latent_idx,steering_coefficient,sae_release,sae_id\n")
        file.truncate(MAX_STEER_BYTES + 1)
    with pytest.raises(SteerFileError) as caught:
        read_steer_file(big)
    assert caught.value.message.startswith(f"{big}: larger than 16 MiB")
    big.write_bytes(big.read_bytes()[:MAX_STEER_BYTES])  # at the cap: read, then its own errors
    with pytest.raises(SteerFileError, match="NUL byte"):
        read_steer_file(big)


def test_run_names_a_steer_file_that_is_a_fifo(tiny_bundle: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "steer.csv"
    os.mkfifo(fifo)
    result = run_cli(tiny_bundle, tmp_path / "out", fifo)
    assert_one_line_error(result, f"{fifo}: is a named pipe (FIFO)")
    assert not (tmp_path / "out").exists()


# ---- SAE folders -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sae_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A good tiny SAE folder (d_in 64, d_sae 128) to copy and damage."""
    return save_sae(build_sae("standard", seed=1), tmp_path_factory.mktemp("good") / "sae")


def _cfg(folder: Path, **changes: Any) -> str:
    """Change cfg.json fields (None deletes one); the file's path."""
    path = folder / "cfg.json"
    cfg = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    path.write_text(json.dumps(cfg))
    return str(path)


def _not_an_object(folder: Path) -> str:
    (folder / "cfg.json").write_text("[1, 2]")
    return f"cannot read SAE config {folder}/cfg.json: a list, not a JSON object"


def _unknown_architecture(folder: Path) -> str:
    return f"{_cfg(folder, architecture='sparse_magic')}: unknown architecture 'sparse_magic'"


def _no_architecture(folder: Path) -> str:
    return f"{_cfg(folder, architecture=None)}: no 'architecture'"


def _d_sae_as_text(folder: Path) -> str:
    return f"{_cfg(folder, d_sae='16k')}: d_sae must be a whole number above 0, got '16k'"


def _d_sae_fractional(folder: Path) -> str:
    return f"{_cfg(folder, d_sae=128.5)}: d_sae must be a whole number above 0, got 128.5"


def _no_d_in(folder: Path) -> str:
    return f"{_cfg(folder, d_in=None)}: no 'd_in'"


def _hook_name_not_text(folder: Path) -> str:
    cfg = json.loads((folder / "cfg.json").read_text())
    metadata = {**cfg["metadata"], "hook_name": 7}
    return f"{_cfg(folder, metadata=metadata)}: hook_name must be text, got 7"


def _shapes_contradict_cfg(folder: Path) -> str:
    cfg = _cfg(folder, d_sae=256)
    weights = folder / "sae_weights.safetensors"
    return f"{weights}: W_dec has shape [128, 64], but {cfg} says [256, 64]"


def _truncated_weights(folder: Path) -> str:
    weights = folder / "sae_weights.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    return f"{weights}: truncated: {len(data) // 2} bytes, but its header describes {len(data)}"


def _garbage_weights(folder: Path) -> str:
    weights = folder / "sae_weights.safetensors"
    weights.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    return f"{weights}: not a safetensors file"


def _header_not_json(folder: Path) -> str:
    weights = folder / "sae_weights.safetensors"
    weights.write_bytes((12).to_bytes(8, "little") + b"{not json!!}" + bytes(64))
    return f"{weights}: not a safetensors file (its header is not JSON)"


def _metadata_a_string(folder: Path) -> str:
    return f"{_cfg(folder, metadata='gpt2')}: metadata must be a JSON object"


def _dtype_float7(folder: Path) -> str:
    return f"{_cfg(folder, dtype='float7')}: dtype 'float7' is not one sae_lens loads"


def _int32_weights(folder: Path) -> str:
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import save_file

    weights = folder / "sae_weights.safetensors"
    with safe_open(str(weights), framework="numpy") as stored:
        tensors = {name: stored.get_tensor(name).astype(np.int32) for name in stored.keys()}  # noqa: SIM118
    save_file(tensors, str(weights))
    return f"{weights}: W_dec holds I32 values; SAE weights are floating"


def _offsets_disagree_with_shapes(folder: Path) -> str:
    weights = folder / "sae_weights.safetensors"
    data = weights.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    begin, end = header["b_dec"]["data_offsets"]
    header["b_dec"]["data_offsets"] = [begin, end - 4]  # 63 floats' bytes for shape [64]
    text = json.dumps(header).encode()
    weights.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + length :])
    return f"{weights}: not a valid safetensors file (the safetensors library says:"


def _no_weights_file(folder: Path) -> str:
    (folder / "sae_weights.safetensors").unlink()
    return f"{folder / 'sae_weights.safetensors'}: file not found"


SAE_DAMAGES = [
    _not_an_object,
    _unknown_architecture,
    _no_architecture,
    _d_sae_as_text,
    _d_sae_fractional,
    _no_d_in,
    _hook_name_not_text,
    _shapes_contradict_cfg,
    _truncated_weights,
    _garbage_weights,
    _header_not_json,
    _no_weights_file,
    _metadata_a_string,
    _dtype_float7,
    _int32_weights,
    _offsets_disagree_with_shapes,
]


@pytest.mark.parametrize("damage", SAE_DAMAGES, ids=[d.__name__.strip("_") for d in SAE_DAMAGES])
def test_validate_names_the_row_and_the_folder_of_a_damaged_sae(
    sae_folder: Path, tmp_path: Path, damage: Callable[[Path], str]
) -> None:
    folder = Path(shutil.copytree(sae_folder, tmp_path / "sae"))
    expected = damage(folder)
    steer = write_steer_csv(tmp_path / "steer.csv", [(3, 8.0, folder, "")])
    result = validate(str(steer))
    assert result.exit_code == 1, result.output
    problem = f"{steer}:2 sae_release: {expected}"
    assert problem in result.stderr.replace("\n", ""), result.stderr
    assert "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1] == "error: 1 problem in the steer files"


def test_validate_accepts_a_good_sae_folder_of_every_kind(tmp_path: Path) -> None:
    rows = [
        (3, 1.0, save_sae(build_sae(kind), tmp_path / kind), "")
        for kind in ("standard", "jumprelu", "topk")
    ]
    steer = write_steer_csv(tmp_path / "steer.csv", rows)
    result = validate(str(steer))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "damage", [_unknown_architecture, _truncated_weights, _metadata_a_string, _int32_weights]
)
def test_run_stops_at_a_damaged_sae_before_any_model_is_loaded(
    tiny_bundle: Path,
    sae_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    damage: Callable[[Path], str],
) -> None:
    from saeval.run import evaluation

    def no_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(evaluation, "load_model", no_load)
    folder = Path(shutil.copytree(sae_folder, tmp_path / "sae"))
    expected = damage(folder)
    steer = write_steer_csv(tmp_path / "steer.csv", [(3, 8.0, folder, "")])
    result = run_cli(tiny_bundle, tmp_path / "out", steer)
    assert_one_line_error(result, f"{steer}:2 sae_release: {expected}")


def test_the_known_architectures_are_sae_lens_own() -> None:
    from sae_lens.registry import SAE_CLASS_REGISTRY

    assert sorted(ARCHITECTURES) == sorted(SAE_CLASS_REGISTRY)


def test_the_known_dtypes_are_sae_lens_own() -> None:
    from sae_lens.constants import DTYPE_MAP

    assert sorted(SAE_DTYPES) == sorted(DTYPE_MAP)


def test_an_sae_that_fails_to_load_names_its_folder_and_row(
    sae_folder: Path, tmp_path: Path
) -> None:
    from saeval.steering.plan import build_plan
    from saeval.steering.sae_loading import load_sae

    folder = Path(shutil.copytree(sae_folder, tmp_path / "sae"))
    steer = read_steer_file(write_steer_csv(tmp_path / "steer.csv", [(3, 8.0, folder, "")]))
    _truncated_weights(folder)  # after validate would have run: load_sae meets it itself
    with pytest.raises(ResolutionError) as caught:
        load_sae(str(folder), "")
    assert caught.value.message.startswith(
        f"cannot load SAE {folder}: sae_lens could not read its cfg.json or weights ("
    )
    assert "\n" not in caught.value.message and "SafetensorError" not in caught.value.message
    with pytest.raises(ResolutionError) as caught:
        build_plan(steer)
    assert caught.value.message.startswith(
        f"{tmp_path / 'steer.csv'}:2 sae_release: cannot load SAE {folder}"
    )


def test_an_sae_loader_error_is_not_named_by_its_class(sae_folder: Path, tmp_path: Path) -> None:
    from saeval.steering.sae_loading import load_sae

    folder = Path(shutil.copytree(sae_folder, tmp_path / "sae"))
    _metadata_a_string(folder)  # after validate would have run: load_sae meets it itself
    with pytest.raises(ResolutionError) as caught:
        load_sae(str(folder), "")
    assert caught.value.message.startswith(f"cannot load SAE {folder}: sae_lens could not read")
    assert "AttributeError" not in caught.value.message


# ---- model folders ---------------------------------------------------------------------------


def test_a_model_folder_without_a_tokenizer_is_named(tiny_bundle: Path, tmp_path: Path) -> None:
    model = Path(shutil.copytree(tiny_bundle / "model", tmp_path / "model"))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (model / name).unlink()
    result = run_cli(tiny_bundle, tmp_path / "out", tiny_bundle / "steer.csv", model)
    assert_one_line_error(
        result, f"cannot load model {model}: its tokenizer turns text into no tokens"
    )
    assert "tokenizer.save_pretrained" in result.stderr


def test_a_model_folder_with_a_truncated_weights_file_is_named_before_loading(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from saeval.steering.lm_eval_model import SteeredHFLM

    def no_model(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(SteeredHFLM, "__init__", no_model)
    model = Path(shutil.copytree(tiny_bundle / "model", tmp_path / "model"))
    weights = model / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:5000])
    result = run_cli(tiny_bundle, tmp_path / "out", tiny_bundle / "steer.csv", model)
    assert_one_line_error(result, f"{weights}: truncated: 5000 bytes, but its header describes")


def test_the_tiny_model_folders_pass_the_weights_check(tmp_path: Path) -> None:
    from saeval.run.evaluation import check_model_folder
    from saeval.spec.safetensors_header import read_header

    model = save_tiny_pretrained("llama", tmp_path / "llama")
    check_model_folder(str(model))
    check_model_folder("google/gemma-2-2b")  # not a folder: nothing to check offline
    header = read_header(model / "model.safetensors")
    assert all(entry.dtype == "F32" for entry in header.values())


# ---- comparisons -----------------------------------------------------------------------------


def test_compare_of_two_evaluations_with_no_task_in_common_is_an_error(tmp_path: Path) -> None:
    run = Path(shutil.copytree(GOLDEN, tmp_path / "run", ignore=shutil.ignore_patterns("*.md")))
    (results,) = (run / "steered").glob("*/results_*.json")
    data = json.loads(results.read_text())
    data["results"] = {f"other_{name}": value for name, value in data["results"].items()}
    results.write_text(json.dumps(data))
    result = invoke("compare", str(run / "baseline"), str(run / "steered"))
    assert_one_line_error(
        result,
        f"{run / 'baseline'} and {run / 'steered'} have no task in common (baseline: ",
        "steered: other_tiny_",
    )


def test_a_cache_path_that_is_a_file_leaves_the_run_going_without_the_cache(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / ".cache").write_text("not a folder")
    result = run_cli(tiny_bundle, output, tiny_bundle / "steer.csv")
    assert result.exit_code == 0, result.output
    assert "baseline cache not written" in result.output.replace("\n", " ")
    assert f"{output / '.cache' / 'baselines'}" in result.output.replace("\n", "")
    run = json.loads((output / "r" / "run.json").read_text())
    assert [r["configuration"] for r in run["completed"]] == ["baseline", "steered"]


def test_validate_model_dir_that_the_sae_names_is_that_model(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    model = tiny_bundle / "model"
    sae = save_sae(build_sae("standard", seed=1), tmp_path / "sae")
    _cfg(
        sae,
        metadata={
            **json.loads((sae / "cfg.json").read_text())["metadata"],
            "model_name": str(model),
        },
    )
    steer = write_steer_csv(tmp_path / "steer.csv", [(3, 8.0, sae, "")])
    result = validate(str(steer), "--model", str(model))
    assert result.exit_code == 0, result.output
    assert f"is {model}" not in result.output.replace("\n", "")
    other = write_steer_csv(tmp_path / "other.csv", [(3, 8.0, tiny_bundle / "sae", "")])
    text = validate(str(other), "--model", str(model)).output.replace("\n", "")
    assert f"the SAE names base model tiny; whether local model folder {model} holds it" in text


def test_apply_chat_template_without_a_template_stops_before_the_model_loads(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from saeval.run import evaluation

    def no_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(evaluation, "load_model", no_load)
    steer = tiny_bundle / "steer.csv"
    result = invoke(
        *["run", str(steer), "--model", str(tiny_bundle / "model"), "--device", "cpu"],
        *["--include-path", str(tiny_bundle / "tasks"), "--output", str(tmp_path / "out")],
        *["--tasks", MC_TASK, "--limit", "2", "--apply-chat-template"],
    )
    model = tiny_bundle / "model"
    assert_one_line_error(result, f"--apply-chat-template: the tokenizer of {model} has no chat")
    assert not (tmp_path / "out").exists()


def test_a_loaded_tokenizer_without_a_template_is_named(tiny_bundle: Path) -> None:
    from transformers import AutoTokenizer

    from saeval.spec.chat_template import template_problem

    tokenizer = AutoTokenizer.from_pretrained(tiny_bundle / "model")
    assert tokenizer.chat_template is None  # what lm-eval would fail on
    error = template_problem("tiny", tokenizer.chat_template)
    assert error is not None and error.message.endswith(
        "the tokenizer of tiny has no chat template"
    )
    assert template_problem("tiny", "{{ messages }}") is None


@pytest.mark.parametrize("where", ["tokenizer_config.json", "chat_template.jinja"])
def test_a_local_folder_with_a_template_passes(
    tiny_bundle: Path, tmp_path: Path, where: str
) -> None:
    from saeval.spec.chat_template import check_local_template

    folder = tmp_path / "model"
    folder.mkdir()
    config = json.loads((tiny_bundle / "model" / "tokenizer_config.json").read_text())
    if where == "tokenizer_config.json":
        config["chat_template"] = "{{ messages }}"
    else:
        (folder / where).write_text("{{ messages }}")
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    check_local_template(str(folder))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ResolutionError, match="has no chat template"):
        check_local_template(str(folder))


def test_an_experiment_with_apply_chat_template_is_checked_before_any_work(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    from experiment_builders import write_experiment

    path = write_experiment(tmp_path, tiny_bundle, apply_chat_template=True)
    result = invoke("run", str(path), "--output", str(tmp_path / "out"))
    model = tiny_bundle / "model"
    assert_one_line_error(result, f"--apply-chat-template: the tokenizer of {model} has no chat")
    assert not (tmp_path / "out").exists()
