"""The calibration prompts of a run: the first ``kl_docs`` documents of each of its (sub)tasks
(within ``--limit``), as lm-eval builds their requests with the run's options, encoded as the KL
measure encodes them (``saeval.run.side_effects``): the context of a document's first request
(the prompt of a generation), or a rolling text after lm-eval's prefix token.

Built without evaluating anything, so a measure can be taken before a configuration runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from saeval.run.config import RunConfig
    from saeval.spec.tasks import TaskSet
    from saeval.steering.lm_eval_model import SteeredHFLM


@dataclass(frozen=True)
class Calibration:
    """Token ids of each calibration prompt and how many of them are conditioning text."""

    documents: tuple[tuple[int, ...], ...]
    prompt_ends: tuple[int, ...]  # a context: its length; a rolling text: 0 (all generated)


def calibration_prompts(lm: SteeredHFLM, config: RunConfig, tasks: TaskSet) -> Calibration:
    """The first ``config.kl_docs`` documents of every (sub)task of ``config.tasks``."""
    from lm_eval.evaluator_utils import get_sample_size

    loaded = tasks.manager.load(list(config.tasks))
    documents: list[tuple[int, ...]] = []
    ends: list[int] = []
    limit = int(lm.max_length)
    for task in loaded["tasks"].values():
        _configure(task, config)
        size = get_sample_size(task, config.limit)
        task.build_all_requests(
            limit=config.kl_docs if size is None else min(size, config.kl_docs),
            system_instruction=config.system_instruction,
            apply_chat_template=config.apply_chat_template,
            chat_template=lm.apply_chat_template if config.apply_chat_template else None,
            tokenizer_name=lm.tokenizer_name if config.apply_chat_template else "",
        )
        first: dict[int, Any] = {}
        for instance in task.instances:
            first.setdefault(instance.doc_id, instance)
        for _, instance in sorted(first.items()):
            rolling = instance.request_type == "loglikelihood_rolling"
            prefix = [lm.prefix_token_id] if rolling else []
            ids = (prefix + lm.tok_encode(str(instance.arguments[0])))[-limit:]
            if ids:
                documents.append(tuple(ids))
                ends.append(0 if rolling else len(ids))
    return Calibration(tuple(documents), tuple(ends))


def _configure(task: Any, config: RunConfig) -> None:
    """The few-shot count and seed ``simple_evaluate`` gives the task (an lm-eval Task)."""
    if config.num_fewshot is not None and task.get_config("num_fewshot") != 0:
        task.set_config(key="num_fewshot", value=config.num_fewshot)
    elif task.get_config("num_fewshot") is None:
        task.set_config(key="num_fewshot", value=0)
    task.set_fewshot_seed(seed=config.seeds["fewshot"])
