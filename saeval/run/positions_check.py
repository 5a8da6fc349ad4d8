"""A warning before a run spends its evaluations steering nothing: a row that steers only
``generated`` positions leaves a loglikelihood request's context alone, and the first token of
a continuation is predicted from the context's last position, so on a multiple-choice task
whose answers are one token each such a row changes no score at all."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from saeval.spec.positions import GENERATED

if TYPE_CHECKING:
    from saeval.spec.steer_rows import SteerFile
    from saeval.spec.tasks import TaskSet
    from saeval.steering.lm_eval_model import SteeredHFLM

SAMPLE_DOCS = 20  # documents looked at per task


def steers_generated_only(steer: Sequence[SteerFile]) -> bool:
    """Whether some row of the steer files steers only generated positions."""
    return any(row.positions == GENERATED for file in steer for row in file.rows)


def single_token_tasks(lm: SteeredHFLM, tasks: TaskSet) -> list[str]:
    """The multiple-choice tasks (subtasks of groups included) whose answers, in their first
    ``SAMPLE_DOCS`` documents, are each one token as lm-eval encodes them after the context."""
    loaded = tasks.manager.load_task_or_group(tasks.names)
    return [
        str(task.config.task)
        for task in _leaves(loaded)
        if task.OUTPUT_TYPE == "multiple_choice" and _one_token_answers(lm, task)
    ]


def warning(task_names: Sequence[str]) -> str:
    """The line that says so."""
    return (
        f"positions generated steers nothing on {', '.join(task_names)}: each answer is one "
        "token, scored from the last prompt position, which such rows leave alone "
        "(use positions all or prompt there)"
    )


def _leaves(loaded: Mapping[Any, Any]) -> Iterator[Any]:
    """The tasks of lm-eval's loaded (nested) task dictionary."""
    for value in loaded.values():
        if isinstance(value, Mapping):
            yield from _leaves(value)
        elif value is not None:
            yield value


def _one_token_answers(lm: SteeredHFLM, task: Any) -> bool:
    """Whether every answer of the first documents is one token after its context."""
    docs = list(itertools.islice(task.eval_docs, SAMPLE_DOCS))
    delimiter = str(task.config.target_delimiter)
    for doc in docs:
        context = str(task.doc_to_text(doc)) or "\n"
        for choice in task.doc_to_choice(doc):
            _, continuation = lm._encode_pair(context, f"{delimiter}{choice}")
            if len(continuation) != 1:
                return False
    return bool(docs)
