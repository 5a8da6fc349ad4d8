"""The demo's stable names for ``saeval run``: ``--model saeval-demo`` is the demo model and the
``saeval_demo`` group and its tasks are found without ``--include-path``; both live in the saeval
cache (``$SAEVAL_CACHE``, default ``~/.cache/saeval``) and are made there on first use."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from saeval.demo.lm_tasks import DEMO_GROUP

DEMO_MODEL_NAME = "saeval-demo"


def with_demo_assets(
    model: str | None, tasks: Sequence[str], include_path: Sequence[Path]
) -> tuple[str | None, tuple[Path, ...]]:
    """``model`` with ``saeval-demo`` made the demo model's folder, and ``include_path`` with
    the demo tasks' folder added when a task is one of the demo's."""
    if model == DEMO_MODEL_NAME:
        from saeval.demo.model import demo_model_dir

        model = str(demo_model_dir())
    folders = tuple(include_path)
    if any(task.startswith(DEMO_GROUP) for task in tasks):
        from saeval.demo.lm_tasks import demo_tasks_dir

        folder = demo_tasks_dir()
        folders = folders if folder in folders else (*folders, folder)
    return model, folders
