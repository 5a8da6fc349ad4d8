"""`saeval validate EXPERIMENT.yaml`: the experiment file, then each intervention's steer files
as `saeval validate` shows them, then one verdict line; `--format json` prints one object
(schema `saeval.experiment-check/1`, see ``saeval.spec.experiment_check``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import typer
from rich.markup import escape

from saeval.cli.console import err, out
from saeval.cli.options import OutputFormat
from saeval.errors import ResolutionError, UsageError
from saeval.spec.experiment_check import validate_experiment
from saeval.spec.resolve import Resolution


def check_experiment(
    paths: Sequence[str],
    *,
    model: str | None,
    online: bool,
    output: OutputFormat,
    show: Callable[[Resolution], None],
) -> None:
    """Validate one experiment file; ``show`` prints a steer set's resolution (validate's own)."""
    if len(paths) != 1:
        raise UsageError(
            "give one experiment file alone (its interventions name their steer files)",
            hint=f"got {len(paths)} files: {', '.join(paths)}",
        )
    from saeval.demo.names import experiment_demo_names

    names = experiment_demo_names(paths[0], model, build=False)
    checked = validate_experiment(
        paths[0],
        model=names.get("model", model),
        include_path=names.get("include_path"),
        online=online,
    )
    if output is OutputFormat.JSON:
        typer.echo(json.dumps(checked.to_dict(), indent=2))
    else:
        for problem in checked.read_problems:
            err.print(f"[red]{escape(problem)}[/]", highlight=False, soft_wrap=True)
        for name, resolution in checked.resolutions.items():
            out.print(f"[bold]intervention {escape(name)}[/]", highlight=False)
            show(resolution)
        for problem in checked.problems_across:
            err.print(f"[red]{escape(problem)}[/]", highlight=False, soft_wrap=True)
        out.print(escape(checked.summary()), highlight=False, soft_wrap=True)
    if not checked.ok:
        count = len(checked.problems)
        raise ResolutionError(f"{count} problem{'s' if count > 1 else ''} in {paths[0]}")
