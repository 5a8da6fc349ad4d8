"""`saeval saes`: search sae_lens's pretrained-SAE catalog (offline) for rows of a steer.csv.

`--format json` prints a list of objects with keys `release, sae_id, repo_id, path, model,
hook_name, d_sae, neuronpedia_id` (null where the catalog does not tell offline).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from saeval.analysis.table_fit import COMPACT, FitColumn, FitTable
from saeval.cli.console import out
from saeval.cli.options import FormatOpt, ModelOpt, OutputFormat
from saeval.spec.catalog import CatalogEntry, search


def command(
    query: Annotated[
        list[str] | None,
        typer.Argument(
            help="Words that must all appear in the release, SAE id, model, hook, width or "
            "Neuronpedia id (e.g. gemma-2-2b res 20 16k canonical).",
            metavar="QUERY",
            show_default=False,
        ),
    ] = None,
    model: ModelOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most N SAEs.")] = 50,
    output: FormatOpt = OutputFormat.TABLE,
) -> None:
    """Search the SAE catalog: release, sae_id, base model, hook point, width, Neuronpedia id."""
    found = search(" ".join(query or ()), model=model)
    if output is OutputFormat.JSON:
        typer.echo(json.dumps([entry.to_dict() for entry in found[:limit]], indent=2))
        return
    out.print(_table(found[:limit]))
    shown = f"{min(limit, len(found))} of {len(found)}" if len(found) > limit else str(len(found))
    noun = "SAE" if len(found) == 1 else "SAEs"
    out.print(f"{shown} {noun}; use the release and sae_id columns in a steer.csv", highlight=False)


def _table(entries: list[CatalogEntry]) -> FitTable:
    """The matching SAEs; a narrow console leaves out the Neuronpedia id, the border, then the
    model and the hook, never cutting a release or sae_id (what a steer.csv needs)."""
    rows = [
        [
            entry.release,
            entry.sae_id,
            entry.model,
            entry.hook_name or "?",
            str(entry.d_sae) if entry.d_sae else "?",
            entry.neuronpedia_id or "",
        ]
        for entry in entries
    ]
    headers = ("release", "sae_id", "model", "hook", "width", "Neuronpedia id")
    return FitTable(
        title="",
        columns=[
            FitColumn(name, "right" if name == "width" else "left", wrap=False) for name in headers
        ],
        rows=rows,
        steps=["Neuronpedia id", COMPACT, "model", "hook"],
    )
