"""The demo's stable names: ``saeval-demo`` is the demo model and the ``saeval_demo`` group and
its tasks are found without ``--include-path``, in steer-file runs, experiment files (``model:
saeval-demo``), ``saeval validate``, ``saeval kl`` and ``saeval latents``. Both live in the saeval
cache (``$SAEVAL_CACHE``, default ``~/.cache/saeval``) and are made there on first use."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from saeval.demo.lm_tasks import DEMO_GROUP

DEMO_MODEL_NAME = "saeval-demo"


def demo_model(model: str | None, *, build: bool = True) -> str | None:
    """``model``, with ``saeval-demo`` made the demo model's folder (converted on first use when
    ``build``; without it, a check that must not convert gets the folder once it exists, else
    the Hugging Face id the demo model is a copy of)."""
    if model != DEMO_MODEL_NAME:
        return model
    from saeval.demo.model import demo_model_dir, is_converted
    from saeval.demo.paths import DEMO_MODEL_ID

    if build or is_converted():
        return str(demo_model_dir())
    return DEMO_MODEL_ID


def demo_task_folders(tasks: Sequence[str], include_path: Sequence[Path]) -> tuple[Path, ...]:
    """``include_path`` with the demo tasks' folder added when a task is one of the demo's."""
    folders = tuple(include_path)
    if any(task.startswith(DEMO_GROUP) for task in tasks):
        from saeval.demo.lm_tasks import demo_tasks_dir

        folder = demo_tasks_dir()
        folders = folders if folder in folders else (*folders, folder)
    return folders


def with_demo_assets(
    model: str | None, tasks: Sequence[str], include_path: Sequence[Path]
) -> tuple[str | None, tuple[Path, ...]]:
    """``model`` and ``include_path`` of a steer-file run with the demo's names resolved."""
    return demo_model(model), demo_task_folders(tasks, include_path)


def experiment_demo_names(path: str, model: str | None, *, build: bool = True) -> dict[str, Any]:
    """The ``model`` (when the demo's name changes it) and ``include_path`` an experiment file
    runs with, the demo's names resolved (``model`` given on the command line wins)."""
    from saeval.errors import SteerFileError
    from saeval.spec.experiment import read_experiment

    try:
        experiment = read_experiment(path)
    except SteerFileError:
        return {}  # the file's problems are reported where it is read for the work
    named = model if model is not None else experiment.model
    resolved = demo_model(named, build=build)
    changes: dict[str, Any] = {
        "include_path": demo_task_folders(experiment.tasks, experiment.include_path)
    }
    return changes | ({"model": resolved} if resolved != named else {})
