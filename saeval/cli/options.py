"""Options several commands share, as `Annotated` aliases: one spelling and help text each."""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from saeval.errors import UsageError


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
DtypeOpt = Annotated[str, typer.Option(help="Model dtype: auto, bfloat16, float16 or float32.")]
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


def parse_scales(text: str) -> tuple[float, ...]:
    """``"0,0.5,1"`` -> (0.0, 0.5, 1.0); UsageError for anything that is not a finite number."""
    try:
        scales = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--scale takes numbers separated by commas, got {text!r}") from None
    bad = [scale for scale in scales if not math.isfinite(scale)]
    if bad:
        raise UsageError(f"--scale takes finite numbers, got {bad[0]} in {text!r}")
    return scales
