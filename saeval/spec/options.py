"""The evaluation options, declared once: every option that decides how a task is evaluated.

Each field of ``EvalOptions`` is one option; its ``OptionInfo`` (the field's metadata) says the
rest: the help text of ``saeval run --<name>``, the valid example tests and docs use, whether
it enters the baseline cache key, the parser of the experiment-file key of the same name (None:
a file cannot set it), whether the command line replaces a file's value, and the check of a
value. Everything else is derived from this declaration: the ``saeval run`` options
(``saeval.cli.run_options``), the experiment-file keys (``saeval.spec.experiment``), the run's
``spec`` in ``run.json`` and the baseline cache key (``recorded``), and the worker's options
(``from_record``). ``RunConfig`` (``saeval.run.config``) is an ``EvalOptions`` plus what places
one run.

Adding an option: a field here, the code that uses it, and its line in README's CLI reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any, get_type_hints

import yaml

from saeval.spec import experiment_keys as keys
from saeval.spec.gen_kwargs import gen_kwargs_problem

DTYPES = ("auto", "bfloat16", "float16", "float32")
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit
LM_EVAL_SEEDS = {"random": 0, "numpy": 1234, "torch": 1234, "fewshot": 1234}
DEFAULT_KL_DOCS = 100


def _as_is(name: str, value: Any) -> dict[str, Any]:
    """An option as run.json's spec holds most: under its own name, its value as it is."""
    return {name: value}


def when_set(name: str, value: Any) -> dict[str, Any]:
    """An option that run.json's spec holds only when it is set (not 0, False or None), so
    runs from before the option existed keep their spec and still resume."""
    return {name: value} if value else {}


def _no_problem(value: Any) -> str | None:
    """Every value of the option's type is valid."""
    return None


@dataclass(frozen=True)
class OptionInfo:
    """What the declaration says about one option besides its name, type and default."""

    help: str  # `saeval run --help`
    example: Any  # a valid value other than the default
    cache_key: bool  # it enters the baseline cache key
    key: Callable[[yaml.Node], Any] | None  # parser of the experiment-file key; None: no key
    check: Callable[[Any], str | None] = _no_problem  # a value's problem (after `--<name> `)
    record: Callable[[str, Any], dict[str, Any]] = _as_is  # how run.json's spec (and key) hold it
    replaces_file_key: bool = False  # `saeval run EXP.yaml --<name>` replaces the file's value
    cli_type: Any = None  # what the command line parses (None: the field's type)
    from_cli: Callable[[Any], Any] | None = None  # command-line value -> option value
    cli_after: str | None = None  # the `saeval run` parameter it follows (None: the last option)


def option(default: Any, info: OptionInfo) -> Any:
    """A declared option: a dataclass field with its ``OptionInfo``."""
    return field(default=default, metadata={"option": info})


def whole_limit(value: float | None) -> int | float | None:
    """A whole ``--limit`` of 1 or more is a document count; below 1 it is a fraction."""
    if value is not None and value >= 1 and float(value).is_integer():
        return int(value)
    return value


def seeds_of(seed: int | None) -> dict[str, int]:
    """The four seeds lm-eval takes (python, numpy, torch, few-shot sampler) for ``--seed``."""
    return dict(LM_EVAL_SEEDS) if seed is None else dict.fromkeys(LM_EVAL_SEEDS, seed)


def _limit_problem(value: int | float | None) -> str | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        return f"must be a finite number above 0, got {value}"
    return None


def _at_least(minimum: int, what: str) -> Callable[[int | None], str | None]:
    return lambda value: None if value is None or value >= minimum else f"{what}, got {value}"


def _batch_size_problem(value: str) -> str | None:
    if value == "auto" or (value.isdigit() and int(value) > 0):
        return None
    return f"must be 'auto' or a positive number, got {value!r}"


def _dtype_problem(value: str) -> str | None:
    return None if value in DTYPES else f"must be auto, bfloat16, float16 or float32, got {value!r}"


def _seed_problem(value: int | None) -> str | None:
    if value is None or 0 <= value <= MAX_SEED:
        return None
    return f"must be a whole number from 0 to {MAX_SEED}, got {value}"


def _text_problem(value: str | None) -> str | None:
    return None if value is None or value.strip() else "is empty; give the text, or leave it out"


def _gen_kwargs_problem(value: str | None) -> str | None:
    problem = None if value is None else gen_kwargs_problem(value)
    return None if problem is None else f"(gen_kwargs): {problem}"


@dataclass(frozen=True)
class EvalOptions:
    """The evaluation options (see the module docstring); the order is ``saeval run --help``'s."""

    dtype: str = option(
        "auto",
        OptionInfo(
            help="Model dtype: auto, bfloat16, float16 or float32.",
            example="float32",
            cache_key=False,  # the loaded dtype enters the key through the model record
            key=lambda node: keys.choice(node, DTYPES),
            check=_dtype_problem,
            cli_after="device",
        ),
    )
    batch_size: str = option(
        "8",
        OptionInfo(
            help="Batch size: a number or auto.",
            example="auto",
            cache_key=True,
            key=keys.batch_size,
            check=_batch_size_problem,
        ),
    )
    limit: int | float | None = option(
        None,
        OptionInfo(
            help="Documents per task (a value below 1 is a fraction of each task).",
            example=3,
            cache_key=True,
            key=keys.limit,
            check=_limit_problem,
            replaces_file_key=True,
            cli_type=float | None,
            from_cli=whole_limit,
        ),
    )
    num_fewshot: int | None = option(
        None,
        OptionInfo(
            help="Few-shot examples per prompt (default: the task's).",
            example=2,
            cache_key=True,
            key=lambda node: keys.whole(node, 0),
            check=_at_least(0, "must be 0 or more"),
        ),
    )
    seed: int | None = option(
        None,
        OptionInfo(
            help="One seed for python, numpy, torch and few-shot sampling (default: lm-eval's).",
            example=7,
            cache_key=True,
            key=lambda node: keys.whole(node, 0, MAX_SEED),
            check=_seed_problem,
            record=lambda name, value: {"seeds": seeds_of(value)},
        ),
    )
    apply_chat_template: bool = option(
        False,
        OptionInfo(
            help="Format prompts with the model's chat template.",
            example=True,
            cache_key=True,
            key=keys.flag,
            cli_after="resume",
        ),
    )
    system_instruction: str | None = option(
        None,
        OptionInfo(
            help="A system prompt (lm-eval's system_instruction) given to the baseline and "
            "every steered configuration alike (its baseline is cached apart).",
            example="Talk about dogs.",
            cache_key=True,  # an unsteered run with a prompt is not the baseline
            key=None,  # an experiment gives prompts per intervention (`prompt:`)
            check=_text_problem,
            record=when_set,
        ),
    )
    kl_docs: int | None = option(
        None,  # None: DEFAULT_KL_DOCS
        OptionInfo(
            help="Documents per task whose prompts get a KL(unsteered || steered) pass (0: none; "
            f"default {DEFAULT_KL_DOCS}, or an experiment file's kl_docs).",
            example=5,
            cache_key=False,  # the cache holds lm-eval's results; KL is measured each run
            key=lambda node: keys.whole(node, 0),
            check=_at_least(0, "must be 0 (no KL) or more"),
            record=when_set,
            replaces_file_key=True,
        ),
    )
    gen_kwargs: str | None = option(
        None,
        OptionInfo(
            help="Generation arguments of generate_until tasks: temperature=0,max_gen_toks=64.",
            example="temperature=0,max_gen_toks=8",
            cache_key=True,
            key=keys.text,
            check=_gen_kwargs_problem,
        ),
    )

    @property
    def seeds(self) -> dict[str, int]:
        """The four seeds lm-eval takes (python, numpy, torch, few-shot sampler)."""
        return seeds_of(self.seed)

    def problems(self) -> Iterator[str]:
        """``--<name> <problem>`` for every option whose value its check refuses."""
        for item in declared():
            problem = info(item).check(getattr(self, item.name))
            if problem is not None:
                yield f"{flag(item.name)} {problem}"


def declared() -> tuple[Field[Any], ...]:
    """The declared options, in their order."""
    return fields(EvalOptions)


def info(item: Field[Any]) -> OptionInfo:
    """The ``OptionInfo`` of a declared option."""
    found: OptionInfo = item.metadata["option"]
    return found


def help_of(name: str) -> str:
    """The help text of a declared option (commands other than `saeval run` share it)."""
    return next(info(item).help for item in declared() if item.name == name)


def types() -> dict[str, Any]:
    """Each declared option's type (the annotations evaluated)."""
    return get_type_hints(EvalOptions)


def flag(name: str) -> str:
    """``gen_kwargs`` -> ``--gen-kwargs``."""
    return f"--{name.replace('_', '-')}"


def recorded(options: EvalOptions, *, cache_key: bool = False) -> dict[str, Any]:
    """The options as run.json's ``spec`` holds them (``cache_key``: only those the baseline
    cache key takes)."""
    found: dict[str, Any] = {}
    for item in declared():
        if info(item).cache_key or not cache_key:
            found |= info(item).record(item.name, getattr(options, item.name))
    return found


def from_record(data: Mapping[str, Any]) -> EvalOptions:
    """The options an experiment's definition records (``dataclasses.asdict`` of them)."""
    return EvalOptions(**{item.name: data[item.name] for item in declared() if item.name in data})


def set_options(options: EvalOptions) -> dict[str, Any]:
    """The options whose value is not None, by name (None leaves a default in place)."""
    values = {item.name: getattr(options, item.name) for item in declared()}
    return {name: value for name, value in values.items() if value is not None}
