"""The evaluation options' declaration (saeval.spec.options) reaches every place an option goes.

Every test walks the declaration and names no option: each declared option, set to its declared
example, reaches `saeval run`'s RunConfig, run.json's spec, the baseline cache key (exactly the
options declared to enter it), and, for those an experiment file may set, the experiment reader
and the worker's RunConfig.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import Field, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import invoke
from experiment_builders import write_experiment
from sae_builders import MC_TASK

from saeval.records.run_record import Manifest, spec_sha256
from saeval.run.baseline_cache import baseline_inputs, baseline_key
from saeval.run.config import RunConfig
from saeval.run.experiment_prepare import prepare
from saeval.run.folder import open_run_folder
from saeval.run.workers import worker_config
from saeval.spec.experiment import read_experiment
from saeval.spec.options import EvalOptions, declared, flag, info
from saeval.spec.steer_file import read_steer_file
from saeval.spec.tasks import TaskSet, validate_tasks

OPTIONS = declared()
SETTABLE = [item for item in OPTIONS if info(item).key is not None]


def _names(items: list[Field[Any]] | tuple[Field[Any], ...]) -> list[str]:
    return [item.name for item in items]


def _changed(config: RunConfig, item: Field[Any]) -> RunConfig:
    return replace(config, **{item.name: info(item).example})


@pytest.fixture(scope="module")
def tasks(tiny_bundle: Path) -> TaskSet:
    return validate_tasks((MC_TASK,), (tiny_bundle / "tasks",))


@pytest.fixture(scope="module")
def base(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> RunConfig:
    output = tmp_path_factory.mktemp("options")
    tasks = (MC_TASK,)
    return RunConfig(steer_files=(tiny_bundle / "steer.csv",), tasks=tasks, output=output)


def _manifest(config: RunConfig, tasks: TaskSet, name: str) -> dict[str, Any]:
    """run.json of a new run folder opened with ``config``, as read back from disk."""
    steer = [read_steer_file(path) for path in config.steer_files]
    store = open_run_folder(replace(config, name=name), steer, [], "tiny-model", "cpu", tasks)
    store.close()
    data: dict[str, Any] = json.loads((config.output / name / "run.json").read_text())
    return data


def _run(config: RunConfig, tasks: TaskSet, folder: Path) -> Path:
    """run.json of a new run folder ``folder`` opened with ``config``."""
    _manifest(config, tasks, folder.name)
    return folder / "run.json"


def test_every_example_is_valid_and_not_the_default() -> None:
    assert OPTIONS, "no option is declared"
    for item in OPTIONS:
        options = replace(EvalOptions(), **{item.name: info(item).example})
        assert list(options.problems()) == [], item.name
        assert info(item).example != item.default, item.name


@pytest.mark.parametrize("item", OPTIONS, ids=_names(OPTIONS))
def test_every_option_reaches_run_json(item: Field[Any], base: RunConfig, tasks: TaskSet) -> None:
    before = _manifest(base, tasks, f"{item.name}-default")
    after = _manifest(_changed(base, item), tasks, f"{item.name}-example")
    example = json.loads(json.dumps(info(item).record(item.name, info(item).example)))
    assert example and {key: after["spec"].get(key) for key in example} == example
    keys = before["spec"].keys() | after["spec"].keys()
    assert {key for key in keys if before["spec"].get(key) != after["spec"].get(key)} == set(
        example
    )
    for key in set(example) & set(Manifest.__dataclass_fields__):
        assert after[key] == after["spec"][key]  # run.json's own copy of the option agrees


def test_the_cache_key_takes_exactly_the_declared_options(base: RunConfig, tasks: TaskSet) -> None:
    folder = base.output / "cache-key"
    manifest = Manifest.from_dict(json.loads(_run(base, tasks, folder).read_text()), folder)
    spec = tasks.specs[0]
    key = baseline_key(baseline_inputs(manifest, base, spec))
    for item in OPTIONS:
        other = baseline_key(baseline_inputs(manifest, _changed(base, item), spec))
        assert (other != key) is info(item).cache_key, item.name


def test_the_cache_key_of_default_options_is_the_one_older_saevals_wrote(
    base: RunConfig, tasks: TaskSet
) -> None:
    """Baselines cached before the options were declared stay reusable: the key's inputs, as
    they were written out by hand before, give the same key."""
    folder = base.output / "old-key"
    manifest = Manifest.from_dict(json.loads(_run(base, tasks, folder).read_text()), folder)
    spec = tasks.specs[0]
    model, packages = manifest.model, manifest.packages
    by_hand = {
        "model": model.id,
        "revision": model.revision,
        "dtype": model.dtype,
        "device": model.device_name,
        "batch_size": "8",
        "task": {"name": spec.name, "version": spec.version, "config": spec.config_sha256},
        "num_fewshot": None,
        "limit": None,
        "seeds": {"random": 0, "numpy": 1234, "torch": 1234, "fewshot": 1234},
        "apply_chat_template": False,
        "gen_kwargs": None,
        "bootstrap_iters": 100_000,
        "packages": {name: packages.get(name) for name in ("lm_eval", "transformers", "torch")},
    }
    expected = spec_sha256({"cache_schema": 1, **by_hand})
    assert baseline_key(baseline_inputs(manifest, base, spec)) == expected


@pytest.mark.parametrize("item", OPTIONS, ids=_names(OPTIONS))
def test_every_option_is_a_saeval_run_option(
    item: Field[Any], tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[RunConfig] = []

    def run(config: RunConfig, events: object) -> None:
        seen.append(config)
        raise KeyboardInterrupt  # stop before anything is evaluated

    monkeypatch.setattr("saeval.run.runner.run", run)
    example = info(item).example
    given = [flag(item.name)] if example is True else [flag(item.name), str(example)]
    steer = str(tiny_bundle / "steer.csv")
    invoke("run", steer, "--tasks", MC_TASK, "--model", "m", *given)
    assert len(seen) == 1, item.name
    assert getattr(seen[0], item.name) == example
    others = [other for other in OPTIONS if other.name != item.name]
    defaults = RunConfig(steer_files=(), tasks=())
    assert all(getattr(seen[0], o.name) == getattr(defaults, o.name) for o in others)


@pytest.mark.parametrize("item", SETTABLE, ids=_names(SETTABLE))
def test_every_settable_option_reaches_the_worker(
    item: Field[Any], tiny_bundle: Path, tmp_path: Path
) -> None:
    model = Path(shutil.copytree(tiny_bundle / "model", tmp_path / "model"))
    (model / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    example = info(item).example
    path = write_experiment(tmp_path, tiny_bundle, model=str(model), **{item.name: example})
    assert yaml.safe_load(path.read_text())[item.name] == example
    experiment = read_experiment(path)
    assert getattr(experiment.options, item.name) == example
    prepared = prepare(experiment, output=tmp_path / "out", name=None, resume=False, device="cpu")
    definition = json.loads(json.dumps(prepared.definition))  # as experiment.json holds it
    config = worker_config(definition, tmp_path / "out", "cpu")
    assert getattr(config, item.name) == example
    assert getattr(prepared.config, item.name) == example


@pytest.mark.parametrize("item", OPTIONS, ids=_names(OPTIONS))
def test_an_experiment_takes_only_the_options_that_replace_its_keys(
    item: Field[Any], tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []

    def run_experiment(path: Path, options: Any, events: object) -> None:
        seen.append(options)
        raise KeyboardInterrupt  # stop before anything is evaluated

    monkeypatch.setattr("saeval.run.experiment.run_experiment", run_experiment)
    path = write_experiment(tmp_path, tiny_bundle)
    example = info(item).example
    given = [flag(item.name)] if example is True else [flag(item.name), str(example)]
    result = invoke("run", str(path), *given)
    if info(item).replaces_file_key:
        assert len(seen) == 1 and dict(seen[0].run_options) == {item.name: example}
        experiment = seen[0].applied(read_experiment(path))
        assert getattr(experiment.options, item.name) == example
    else:
        assert seen == [] and result.exit_code == 2
        assert f"{flag(item.name)} does not apply to an experiment" in result.stderr
