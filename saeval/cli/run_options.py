"""`saeval run`'s evaluation options, made from their declaration (``saeval.spec.options``).

``with_eval_options`` gives a command one ``--<name>`` option per declared option, placed
where its declaration says (after ``cli_after``, else after the option declared before it), and
hands the command their values as one ``EvalOptions`` together with the names of every
parameter the command line changed from its default.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import Field
from typing import Annotated, Any

import typer

from saeval.spec.options import EvalOptions, declared, flag, info, types

Command = Callable[..., None]
_RECEIVED = ("options", "given")  # what the command gets instead of the declared options


def with_eval_options(command: Command) -> Command:
    """``command`` with the declared options as parameters; it receives ``options`` (their
    values) and ``given`` (the parameters that differ from their defaults, in order)."""
    own = [p for p in _signature(command).parameters.values() if p.name not in _RECEIVED]
    parameters = _placed(own, [_parameter(item) for item in declared()])

    @functools.wraps(command)
    def wrapper(**values: Any) -> None:
        given = tuple(p.name for p in parameters if values[p.name] != p.default)
        options = eval_options({item.name: values.pop(item.name) for item in declared()})
        command(**values, options=options, given=given)

    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper


def eval_options(values: Mapping[str, Any]) -> EvalOptions:
    """The declared options from their command-line values (``--limit 3.0`` is 3 documents)."""
    converted = {}
    for item in declared():
        convert = info(item).from_cli
        value = values[item.name]
        converted[item.name] = value if convert is None else convert(value)
    return EvalOptions(**converted)


def _signature(command: Command) -> inspect.Signature:
    return inspect.signature(command, eval_str=True)


def _parameter(item: Field[Any]) -> inspect.Parameter:
    """The typer option of one declared option."""
    described = info(item)
    kind = described.cli_type if described.cli_type is not None else types()[item.name]
    decls = (flag(item.name),) if kind is bool else ()  # a flag, not --x/--no-x
    option = typer.Option(*decls, help=described.help, show_default=item.default is not None)
    return inspect.Parameter(
        item.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=item.default,
        annotation=Annotated[kind, option],
    )


def _placed(
    own: list[inspect.Parameter], options: list[inspect.Parameter]
) -> list[inspect.Parameter]:
    """The command's parameters with each option after its ``cli_after`` parameter, or after
    the option before it; all keyword-only (typer reads only their names)."""
    placed = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
    after = {item.name: info(item).cli_after for item in declared()}
    previous: str | None = None
    for option in options:
        anchor = after[option.name] or previous
        names = [p.name for p in placed]
        index = names.index(anchor) + 1 if anchor is not None else len(placed)
        placed.insert(index, option)
        previous = option.name
    return placed
