"""`saeval validate`: check steer files against the SAE catalog in seconds, before any model loads.

Output with `--format table` (default): one table per file (row, latent or vector, action as
saeval computes it with the dialect's own name for it, the formula, SAE or vector file, hook,
width, model, status, Neuronpedia link; a narrow console gets the links and the model as lines
below it, SAEs by key with a legend), a one-line verdict per file, a one-line note for each
place where the dialect's author computed something else, then every error as
`file:line column: message` on stderr and every unchecked check on stdout. A row with bad cells
is not in the table, but its SAE, hook and latent range are still checked.

`--format json` prints one object (schema `saeval.resolution/1`) on stdout:

    {"schema": "saeval.resolution/1", "ok": bool, "online": bool,
     "model": --model or null, "base_model": the Hugging Face id all rows steer, or null,
     "files": [{"path", "summary"}],
     "rows": [{"file", "line", "latent_idx" (null for a vector row), "coefficient",
               "action" (as saeval computes it), "dialect_action" (as the file names it),
               "computes" (the formula), "threshold", "description",
               "hook_name", "neuronpedia_url", "status": "ok"|"error"|"unchecked",
               "sae": null | {"kind": "release"|"hf_repo"|"local", "release", "sae_id",
                              "repo_id", "path", "model", "hook_name", "d_sae", "d_in",
                              "neuronpedia_id", "source"},
               "vector": null | {"path", "entry", "head_index", "width", "norm", "dtype"},
               "checks": [{"name": "sae"|"latent_idx"|"model"|"hook"|"duplicate"|"vector",
                           "status", "where", "message"}],
               "notes": ["where the dialect's author computed something else", ...]}],
     "problems": ["file:line column: message", ...],   # every error, unreadable files too
     "unchecked": ["file:line column: message", ...]}

Exit code 0 when every file is valid (unchecked checks allowed), 1 otherwise.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.text import Text

from saeval.analysis.table_fit import COMPACT, SHORT_LABELS, FitColumn, FitTable
from saeval.cli.console import err, out
from saeval.cli.options import FormatOpt, ModelOpt, OnlineOpt, OutputFormat
from saeval.demo.names import demo_model
from saeval.errors import ResolutionError
from saeval.spec.experiment import is_experiment_file
from saeval.spec.resolve import CheckOutcome, Resolution, ResolvedRow, validate
from saeval.spec.row_formulas import formula
from saeval.spec.steer_file import SteerRow

_STYLES = {
    CheckOutcome.OK: "green",
    CheckOutcome.ERROR: "bold red",
    CheckOutcome.UNCHECKED: "yellow",
}
_NEURONPEDIA = "Neuronpedia"
_COLUMNS = ("line", "latent", "action", "computes", "SAE", "hook", "width", "model", "status",
            _NEURONPEDIA)  # fmt: skip
_SAE = _COLUMNS.index("SAE")
_WRAPPED = ("computes",)  # the others never wrap: names, numbers, links


def command(
    steer_files: Annotated[
        list[str],
        typer.Argument(
            help="steer.csv files; several are checked as one steer set. Or one experiment "
            "file (.yaml): its keys, every intervention's steer files and its tasks.",
            metavar="STEER.csv",
        ),
    ],
    model: ModelOpt = None,
    online: OnlineOpt = False,
    output: FormatOpt = OutputFormat.TABLE,
) -> None:
    """Check steer files offline: SAEs exist, latents fit, one base model, hooks map."""
    if any(is_experiment_file(path) for path in steer_files):
        from saeval.cli.validate_experiment import check_experiment

        check_experiment(steer_files, model=model, online=online, output=output, show=show)
        return
    resolution = validate(steer_files, model=demo_model(model, build=False), online=online)
    if output is OutputFormat.JSON:
        typer.echo(json.dumps(resolution.to_dict(), indent=2))
    else:
        show(resolution)
    if not resolution.ok:
        count = len(resolution.problems)
        raise ResolutionError(f"{count} problem{'s' if count > 1 else ''} in the steer files")


def show(resolution: Resolution) -> None:
    """Print the tables, verdicts, errors (stderr) and unchecked checks of a resolution."""
    for file in resolution.files:
        rows = resolution.rows_of(file)
        if rows:
            out.print(_table(file, rows))
        out.print(escape(resolution.summary(file)), highlight=False, soft_wrap=True)
    for note in resolution.notes:
        out.print(f"[dim]{escape(note)}[/]", highlight=False, soft_wrap=True)
    for problem in resolution.problems:
        err.print(f"[red]{escape(problem)}[/]", highlight=False, soft_wrap=True)
    for note in resolution.unchecked:
        out.print(f"[yellow]{escape(note)}[/]", highlight=False, soft_wrap=True)


def _table(file: str, rows: list[ResolvedRow]) -> FitTable:
    """One file's rows, fitted to the console: a narrow one gets the Neuronpedia links as lines
    below the table, then no border, then the model as a line below, then keys the SAEs (S1,
    ...) with a legend, then leaves out the formula."""
    cells: list[list[str | Text]] = [
        [
            str(resolved.row.line) if resolved.row.line else resolved.row.hook or "",
            *_source(resolved),
            Text(str(resolved.status), style=_STYLES[resolved.status]),
            resolved.neuronpedia_url or "",
        ]
        for resolved in rows
    ]
    keys = {sae: f"S{n}" for n, sae in enumerate(dict.fromkeys(str(c[_SAE]) for c in cells), 1)}
    links = [f"line {c[0]}: {c[-1]}" for c in cells if c[-1]]
    models = ", ".join(dict.fromkeys(str(c[_COLUMNS.index("model")]) for c in cells))
    return FitTable(
        title=Text(file),
        columns=[FitColumn(name, wrap=name in _WRAPPED) for name in _COLUMNS],
        rows=cells,
        steps=[_NEURONPEDIA, COMPACT, "model", SHORT_LABELS, "computes"],
        short_rows=[[*c[:_SAE], keys[str(c[_SAE])], *c[_SAE + 1 :]] for c in cells],
        legend=[f"{key} = {sae}".replace("\n", " ") for sae, key in keys.items()],
        hidden_lines={_NEURONPEDIA: links, "model": [f"model: {models}"]},
    )


def _source(resolved: ResolvedRow) -> tuple[str, ...]:
    """The latent (or vector), action, formula, SAE (or vector file), hook, width and model."""
    row, sae = resolved.row, resolved.sae
    action = row.action.value if row.action == "ablate" else f"{row.action} {row.coefficient:g}"
    if row.written_action != row.action.value:
        action += f"\n({row.dialect}: {row.written_action})"
    hook = resolved.hook_name or "?"
    if isinstance(row, SteerRow):
        width = str(sae.d_sae) if sae and sae.d_sae else "?"
        model = (sae.model or "?") if sae else "?"
        where = f"{row.sae_release}\n{row.sae_id}".strip()
        return str(row.latent_idx), action, formula(row), where, hook, width, model
    facts = resolved.vector
    width = str(facts.width) if facts else "?"
    norm = f"\n|v| = {facts.norm:.4g}" if facts else ""
    return "vector", action, formula(row), row.vector + norm, hook, width, "?"
