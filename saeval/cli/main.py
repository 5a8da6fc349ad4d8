"""The `saeval` application: global options, command registration and the one error boundary."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape

from saeval import __version__
from saeval.cli import compare, demo, harness, kl, latents, run, saes, validate
from saeval.cli.console import err
from saeval.errors import SaevalError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="saeval",
    help="Evaluate language models steered by SAE latents on lm-eval benchmarks.",
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def report(error: SaevalError) -> None:
    """Print a library error as one red line (plus a dim hint) on stderr."""
    err.print(f"[bold red]error:[/] {escape(error.message)}", highlight=False, soft_wrap=True)
    if error.hint:
        err.print(f"[dim]hint: {escape(error.hint)}[/]", highlight=False, soft_wrap=True)


def boundary(command: F) -> F:
    """Turn library errors into exit codes: SaevalError -> 1 (2 for usage), Ctrl-C -> 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SaevalError as error:
            report(error)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"saeval {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Evaluate language models steered by SAE latents on lm-eval benchmarks."""


app.command("validate")(boundary(validate.command))
app.command("saes")(boundary(saes.command))
app.command("demo")(boundary(demo.command))
app.command("run")(boundary(run.command))
app.command("compare")(boundary(compare.command))
app.command("kl")(boundary(kl.command))
app.command("latents")(boundary(latents.command))
app.command("harness", context_settings=harness.CONTEXT_SETTINGS, help=harness.HELP)(
    boundary(harness.command)
)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="saeval")
