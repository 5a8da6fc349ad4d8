"""The documents of the example experiment's tasks (``steers/demo_experiment.yaml``), read from
the installed saeval package.

lm-eval resolves a relative ``data_files`` path against the current directory, not the YAML's
folder, so these tasks load their documents through ``custom_dataset`` (a ``!function`` is
found next to its YAML): the experiment then runs from any directory.
"""

from typing import Any

import datasets

from saeval.demo.paths import TASKS_SOURCE_DIR


def knowledge(**_: Any) -> datasets.DatasetDict:
    """The general-knowledge questions (saeval_demo_knowledge)."""
    return _load("knowledge.jsonl")


def dog_preference(**_: Any) -> datasets.DatasetDict:
    """The dog-preference probe (saeval_demo_dog_preference)."""
    return _load("dog_preference.jsonl")


def _load(name: str) -> datasets.DatasetDict:
    return datasets.load_dataset("json", data_files={"test": str(TASKS_SOURCE_DIR / name)})
