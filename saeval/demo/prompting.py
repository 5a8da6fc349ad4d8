"""The demo's prompting baseline: what asking the model to "Talk about dogs." does on the same
questions, next to what the steering does.

One more `saeval run` of the demo (``prompt_config``): the dog-preference probe and the knowledge
task with lm-eval's ``system_instruction`` set, so its baseline is the unsteered model asked
with the prompt and its one configuration the model asked and steered at 1x. Its numbers are
paired, document by document, against the main run's plain baseline (``prompt_sentences``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from saeval.demo.run import KNOWLEDGE_TASK, PREFERENCE_TASK

if TYPE_CHECKING:
    from saeval.analysis.compare import Comparison, ComparisonRow
    from saeval.run.config import RunConfig

DEMO_PROMPT = "Talk about dogs."
PROMPT_SCALE = 1.0  # the strength at which the prompt is also combined with the steering
PROMPT_TASKS = (PREFERENCE_TASK, KNOWLEDGE_TASK)


def prompt_config(config: RunConfig, run_name: str) -> RunConfig:
    """The demo's prompted run: the preference probe and knowledge, asked with the prompt,
    unsteered (its baseline) and steered at 1x."""
    return replace(
        config,
        tasks=PROMPT_TASKS,
        scales=(PROMPT_SCALE,),
        system_instruction=DEMO_PROMPT,
        kl_docs=0,
        name=f"{run_name}-prompt",
    )


def prompt_sentences(plain: Path, prompted: Path, steered_scale: float) -> list[str]:
    """What the prompt did, against the plain baseline, next to the steering at
    ``steered_scale`` (both from run folders ``plain`` and ``prompted``)."""
    from saeval.analysis.compare import compare
    from saeval.analysis.results_io import load_run

    main, asked = load_run(plain), load_run(prompted)
    if steered_scale not in main.steered or asked.baseline is None:
        return []
    steering = compare(main.baseline, main.steered[steered_scale])
    prompting = compare(main.baseline, asked.baseline)
    both = compare(main.baseline, asked.steered[PROMPT_SCALE])
    lines = []
    for task, what in ((PREFERENCE_TASK, "dog option chosen"), (KNOWLEDGE_TASK, "knowledge acc")):
        rows = [_acc(comparison, task) for comparison in (prompting, steering, both)]
        if all(row is not None for row in rows):
            lines.append(_sentence(what, steered_scale, *rows))  # type: ignore[arg-type]
    return lines


def _acc(comparison: Comparison, task: str) -> ComparisonRow | None:
    return next((r for r in comparison.rows if r.task == task and r.metric == "acc"), None)


def _sentence(
    what: str, scale: float, asked: ComparisonRow, steered: ComparisonRow, both: ComparisonRow
) -> str:
    """'dog option chosen, asked "Talk about dogs." (system prompt, unsteered): 25% -> 70% (20
    to it, 0 away, McNemar p <1e-4); steered at 1x: 50%; asked and steered at 1x: 82%'."""
    from saeval.analysis.number_text import fmt_p

    percent = what.startswith("dog")

    def value(number: float) -> str:
        return f"{number:.0%}" if percent else f"{number:.2f}"

    flips = ""
    if asked.wrong_to_right is not None and asked.right_to_wrong is not None:
        toward = "to it" if percent else "right"
        away = "away" if percent else "wrong"
        flips = f"{asked.wrong_to_right} {toward}, {asked.right_to_wrong} {away}, "
    p = fmt_p(asked.p)
    return (
        f'{what}, asked "{DEMO_PROMPT}" (system prompt, unsteered): {value(asked.a)} -> '
        f"{value(asked.b)} ({flips}{asked.test} p {'' if p.startswith('<') else '= '}{p}); "
        f"steered at {scale:g}x: "
        f"{value(steered.b)}; asked and steered at {PROMPT_SCALE:g}x: {value(both.b)}"
    )
