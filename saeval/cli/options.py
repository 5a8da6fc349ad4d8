"""Options several commands share, as `Annotated` aliases: one spelling and help text each."""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from saeval.analysis.defaults import EQUIVALENCE, NONINFERIORITY
from saeval.errors import UsageError
from saeval.spec.cells import number
from saeval.spec.csv_records import Invalid
from saeval.spec.options import help_of


class OutputFormat(StrEnum):
    """How a command prints its result."""

    TABLE = "table"
    JSON = "json"


ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Base model: a Hugging Face id (google/gemma-2-2b), a TransformerLens alias "
        "(gemma-2-2b) or a local model folder.",
        show_default=False,
    ),
]
OnlineOpt = Annotated[
    bool,
    typer.Option(
        "--online",
        help="Fetch the small config files of SAEs whose width or hook point is unknown "
        "offline from the Hugging Face hub (never weights).",
    ),
]
FormatOpt = Annotated[
    OutputFormat,
    typer.Option(
        "--format", "-f", help="table for people, json for scripts.", case_sensitive=False
    ),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option(help="cpu, cuda, cuda:N or mps (default: cuda:0 if present, else cpu)."),
]
DtypeOpt = Annotated[str, typer.Option(help=help_of("dtype"))]
LatentSteerFilesArg = Annotated[  # the commands that read latents of steer files over texts
    list[Path], typer.Argument(help="Steer file(s): one latent per row (steer.csv).")
]
TextsBatchOpt = Annotated[int, typer.Option(min=1, help="Texts per forward pass.")]
TextsOpt = Annotated[
    Path,
    typer.Option(
        "--texts",
        help='JSONL corpus, one {"text": "..."} per line; tokenized with the model\'s '
        "tokenizer defaults, cut only at the model's context length.",
        show_default=False,
    ),
]
ScaleOpt = Annotated[
    str,
    typer.Option(help="Steering strength(s), comma separated; each multiplies every coefficient."),
]


class MarginTestChoice(StrEnum):
    """The test of a sweep's safe strength (saeval.analysis.margins)."""

    NONINFERIORITY = NONINFERIORITY
    EQUIVALENCE = EQUIVALENCE


MarginOpt = Annotated[
    float,
    typer.Option(help="Sweeps: margin of the safe strength for metrics in [0, 1] (absolute)."),
]
RelativeMarginOpt = Annotated[
    float,
    typer.Option(
        help="Sweeps: margin of unbounded metrics (perplexities, gen_ppl) as a fraction of the "
        "baseline's value."
    ),
]
MarginTestOpt = Annotated[
    MarginTestChoice,
    typer.Option(
        metavar="TEST",
        help="Sweeps: noninferiority (no loss beyond the margin, one-sided) or equivalence (no "
        "change beyond it either way, TOST).",
    ),
]


DoseOpt = Annotated[
    str | None,
    typer.Option(
        help="Instead of --scale: strength(s) in activation units, comma separated; each becomes "
        "the scale whose mean ||h' - h|| / ||h|| on the first --kl-docs documents is that dose "
        "(add rows and vectors only).",
        show_default=False,
    ),
]


def parse_scales(text: str, option: str = "--scale") -> tuple[float, ...]:
    """``"0,0.5,1"`` -> (0.0, 0.5, 1.0); UsageError for an empty strength or anything that is
    not a finite plain decimal number (``cells.number``'s rules, as in steer files)."""
    scales: list[float] = []
    for part in text.split(","):
        if not part.strip():
            raise UsageError(
                f"{option} has an empty strength in {text!r}; separate numbers by single commas, "
                "e.g. 0,0.5,1"
            )
        try:
            scales.append(number(part))
        except Invalid as problem:
            if _non_finite_float(part):
                raise UsageError(
                    f"{option} takes finite numbers, got {float(part)} in {text!r}"
                ) from None
            raise UsageError(f"{option}: {problem}") from None
    return tuple(scales)


def _non_finite_float(text: str) -> bool:
    """Whether Python reads ``text`` as NaN or an infinity (``nan``, ``inf``, ``1e999``)."""
    try:
        return not math.isfinite(float(text))
    except ValueError:
        return False
