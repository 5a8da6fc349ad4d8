"""`saeval demo`: the embedded default, offline. Steer Gemma 3 270M towards dogs and measure it.

Validates the shipped steer file, makes sure the demo model (converted once from its PyPI GGUF
into the saeval cache), the demo SAE and the demo tasks exist, then runs the baseline and a
sweep of strengths like `saeval run` and prints the comparison and the dose-response tables,
then asks the model "Talk about dogs." on two of the tasks (``saeval.demo.prompting``) to set
prompting next to the steering.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from saeval.cli.console import err, out
from saeval.demo.run import DEFAULT_SCALES

if TYPE_CHECKING:
    from saeval.demo.run import DemoAssets
    from saeval.run.config import RunConfig, RunResult

DEFAULT_SCALE_TEXT = ",".join(f"{scale:g}" for scale in DEFAULT_SCALES)


def command(
    output: Annotated[Path, typer.Option(help="Folder that holds the run folders.")] = Path(
        "results"
    ),
    scale: Annotated[
        str,
        typer.Option(
            "--scale",
            "--scales",
            help="Steering strengths, comma separated; 1 is the steer file's coefficient.",
        ),
    ] = DEFAULT_SCALE_TEXT,
    limit: Annotated[
        int | None,
        typer.Option(help="Documents per task (default: all; 182 documents over 4 tasks).", min=1),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(help="cpu, cuda, cuda:N or mps (default: cuda:0 if present, else cpu)."),
    ] = None,
) -> None:
    """Run the built-in demo offline: a dog latent on Gemma 3 270M, baseline vs steered."""
    _offline()  # before anything imports huggingface_hub, which reads it once
    from saeval.cli.options import parse_scales
    from saeval.cli.progress import ProgressEvents, quiet_libraries
    from saeval.demo.prompting import DEMO_PROMPT, prompt_config, prompt_sentences
    from saeval.demo.run import (
        DEMO_STEER_FILE,
        demo_config,
        first_position_config,
        headline_scale,
        latent_sentence,
    )
    from saeval.run.runner import run

    scales = parse_scales(scale)
    quiet_libraries()
    _say_duration(scales, limit)
    _validate(DEMO_STEER_FILE)
    assets = _prepare()
    config = demo_config(assets, output=output, scales=scales, limit=limit, device=device)
    with ProgressEvents() as events:  # each run counts its own units: one display per run
        result = run(config, events)
    extra = first_position_config(config, result.folder.name)
    first_position = None if extra is None else _extra_run(extra, "the first position unsteered")
    prompted = _extra_run(prompt_config(config, result.folder.name), f"asked {DEMO_PROMPT!r}")
    asked = prompt_sentences(result.folder, prompted, headline_scale(scales))
    _show(result, scales, first_position, [*asked, latent_sentence(assets, device)])


def _extra_run(config: RunConfig, what: str) -> Path:
    """Run one of the demo's extra runs under its own progress display (its counts are its
    own units), saying first what it is; its folder."""
    from saeval.cli.progress import ProgressEvents
    from saeval.run.runner import run

    with ProgressEvents() as events:
        events.note(f"extra run {config.name}: {what}")
        return run(config, events).folder


def _offline() -> None:
    """Everything the demo reads is local: keep Hugging Face libraries off the network."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(name, "1")


def _say_duration(scales: tuple[float, ...], limit: int | None) -> None:
    """How long the demo will take, before anything else."""
    from saeval.demo.duration import estimate_sentence
    from saeval.demo.model import is_converted
    from saeval.demo.run import FIRST_POSITION_SCALE

    sentence = estimate_sentence(
        scales, limit, first_position=FIRST_POSITION_SCALE in scales, converted=is_converted()
    )
    err.print(escape(sentence), highlight=False, soft_wrap=True)


def _validate(steer_file: Path) -> None:
    """Check the shipped steer file offline and print its table."""
    from saeval.cli.validate import show
    from saeval.errors import ResolutionError
    from saeval.spec.resolve import validate

    resolution = validate([steer_file])
    show(resolution)
    if not resolution.ok:
        raise ResolutionError(f"the demo steer file {steer_file} does not validate")


def _prepare() -> DemoAssets:
    """Build the demo assets, saying so first (the first run converts the model: ~1 minute)."""
    from saeval.demo.paths import cache_root
    from saeval.demo.run import prepare_assets

    message = (
        f"preparing the demo model, SAE and tasks in {cache_root()} "
        "(the first run converts Gemma 3 270M from its PyPI GGUF: about a minute)"
    )
    err.print(f"[dim]{escape(message)}[/]", highlight=False, soft_wrap=True)
    with err.status("preparing the demo assets"):
        assets = prepare_assets()
    for name, folder in (
        ("model", assets.model_dir),
        ("SAE", assets.sae_dir),
        ("tasks", assets.tasks_dir),
    ):
        err.print(f"[dim]demo {name}: {escape(str(folder))}[/]", highlight=False, soft_wrap=True)
    return assets


def _show(
    result: RunResult, scales: tuple[float, ...], first_position: Path | None, more: list[str]
) -> None:
    """The comparison at 1x, the dose-response table, what they show (with the 2x knowledge
    accuracy leaving the first position alone, from the ``first_position`` run folder, and
    ``more``: what the prompt did, the dog latent's statistics) and where the files are."""
    from saeval.analysis.render import table
    from saeval.analysis.report import sweep_of
    from saeval.demo.run import (
        display_sweep,
        findings,
        first_position_sentence,
        headline_comparison,
        headline_scale,
        target_figures,
    )

    scale = headline_scale(scales)
    comparison = headline_comparison(result.folder, scale)
    out.print(table(comparison))
    sweep = None if result.report is None else sweep_of(result.report)
    target_figures(result.folder, sweep)
    if sweep is not None:
        out.print(table(display_sweep(sweep)))
    lines = findings(comparison, scale, sweep)
    sentence = None if first_position is None else first_position_sentence(sweep, first_position)
    for line in [*lines, *([sentence] if sentence else []), *more]:
        out.print(f"[bold]{escape(line)}[/]", highlight=False, soft_wrap=True)
    if result.reused:
        out.print(f"baseline reused from the cache for: {', '.join(result.reused)}", soft_wrap=True)
    out.print(f"results: {result.folder}", highlight=False, soft_wrap=True)
    for path in result.files:
        out.print(f"  {path.name}", highlight=False, soft_wrap=True)
