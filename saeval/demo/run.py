"""The demo as a library: its assets, the `saeval run` it makes, and what the results show.

The demo steers Gemma 3 270M with latent 0 ("dogs") of the demo SAE, using the steer file
shipped in this package (`demo.csv`; `steers/demo.csv` in the repository is the same file for
people reading the examples). It evaluates the baseline and a sweep of strengths on the four
demo tasks: the dog-preference probe should rise, capability should fall at high strength.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from saeval.demo.lm_tasks import DEMO_TASKS
from saeval.demo.paths import DATA_DIR

if TYPE_CHECKING:
    from saeval.analysis.compare import Comparison, ComparisonRow
    from saeval.analysis.sweep import Sweep, SweepSeries
    from saeval.run.config import RunConfig

DEMO_STEER_FILE = Path(__file__).resolve().parent / "demo.csv"
LATENT_TEXTS = DATA_DIR / "latent_texts.jsonl"  # `saeval latents` on the dog latent
DEFAULT_SCALES = (0.5, 1.0, 2.0, 4.0)
PREFERENCE_TASK = "saeval_demo_dog_preference"
KNOWLEDGE_TASK = "saeval_demo_knowledge"
# One metric per task on the terminal; comparison.{md,csv,json} and the plots have them all.
DISPLAY_METRICS = ("acc", "exact_match,strip", "bits_per_byte")


@dataclass(frozen=True)
class DemoAssets:
    """Where the demo's model, SAE and lm-eval tasks live (all in the saeval cache)."""

    model_dir: Path
    sae_dir: Path
    tasks_dir: Path


def prepare_assets() -> DemoAssets:
    """Convert the model, build the SAE and write the tasks where missing; return their folders."""
    from saeval.demo.lm_tasks import demo_tasks_dir
    from saeval.demo.model import demo_model_dir
    from saeval.demo.sae import demo_sae_dir

    return DemoAssets(
        model_dir=demo_model_dir(), sae_dir=demo_sae_dir(), tasks_dir=demo_tasks_dir()
    )


def demo_config(
    assets: DemoAssets,
    *,
    output: Path,
    scales: Sequence[float],
    limit: int | None,
    device: str | None,
) -> RunConfig:
    """The `saeval run` of the demo: baseline and each strength on the four demo tasks."""
    from saeval.run.config import RunConfig

    return RunConfig(
        steer_files=(DEMO_STEER_FILE,),
        tasks=DEMO_TASKS,
        model=str(assets.model_dir),
        device=device,
        limit=limit,
        include_path=(assets.tasks_dir,),
        output=output,
        scales=tuple(scales),
    )


KL_THRESHOLD = 0.1  # nats per token: a perturbation worth naming
FIRST_POSITION_SCALE = 2.0  # where the demo also measures leaving the first position alone


def first_position_config(config: RunConfig, run_name: str) -> RunConfig | None:
    """The extra run of the demo: the knowledge task at 2x with ``positions all_but_bos`` (the
    first position, Gemma's BOS and attention sink, left alone); None without 2x in the sweep."""
    if FIRST_POSITION_SCALE not in config.scales:
        return None
    return replace(
        config,
        tasks=(KNOWLEDGE_TASK,),
        scales=(FIRST_POSITION_SCALE,),
        positions="all_but_bos",
        no_baseline=True,
        kl_docs=0,
        name=f"{run_name}-all_but_bos",
    )


def first_position_sentence(report: Sweep | None, folder: Path) -> str | None:
    """'knowledge at 2x: 0.53 with every position steered, 0.55 leaving the first position
    alone' from the sweep and the extra run's folder (None if either lacks the number)."""
    from saeval.analysis.results_io import load_side
    from saeval.records.run_folder import configuration_name

    series = None if report is None else _acc_series(report, KNOWLEDGE_TASK)
    points = () if series is None else series.points
    every = next((p.value for p in points if p.scale == FIRST_POSITION_SCALE), None)
    side = load_side(folder / configuration_name(FIRST_POSITION_SCALE, (FIRST_POSITION_SCALE,)))
    task = side.tasks.get(KNOWLEDGE_TASK)
    skipped = None if task is None else task.metrics.get("acc,none")
    if every is None or skipped is None:
        return None
    return (
        f"knowledge at {FIRST_POSITION_SCALE:g}x: {every:.2f} with every position steered, "
        f"{skipped.value:.2f} leaving the first position alone (positions all_but_bos)"
    )


def target_figures(folder: Path, report: Sweep | None) -> list[Path]:
    """Draw the sweep's figures again with the preference probe as the target task (the
    capability margin does not apply to it, and the summary puts it first)."""
    if report is None:
        return []
    from saeval.analysis.figure_style import task_facts
    from saeval.analysis.report_files import write_plots
    from saeval.analysis.results_io import load_side
    from saeval.records.run_folder import BASELINE

    baseline = load_side(folder / BASELINE, label=BASELINE)
    return write_plots(report, folder, task_facts(baseline, (PREFERENCE_TASK,)))


def headline_scale(scales: Sequence[float]) -> float:
    """The strength shown in detail: the one closest to the steer file's own coefficient (1x)."""
    return min(scales, key=lambda scale: abs(scale - 1.0))


def headline_comparison(folder: Path, scale: float) -> Comparison:
    """Baseline vs the steered model at `scale` in a run folder, with flips and paired tests."""
    from saeval.analysis.compare import compare
    from saeval.analysis.results_io import load_run

    sides = load_run(folder)
    return compare(sides.baseline, sides.steered[scale])


def display_sweep(report: Sweep) -> Sweep:
    """The sweep restricted to one metric per task (the numbers are unchanged)."""
    series = tuple(s for s in report.series if s.metric in DISPLAY_METRICS)
    return replace(report, series=series)


def findings(comparison: Comparison, scale: float, report: Sweep | None) -> list[str]:
    """Plain sentences on what the demo shows: the preference shift and the capability curve."""
    lines = []
    preference = _row(comparison, PREFERENCE_TASK)
    if preference is not None:
        lines.append(_preference_sentence(preference, scale))
    lines.extend(_steerability_lines(report) if report is not None else [])
    curve = _curve(report, KNOWLEDGE_TASK) if report is not None else None
    knowledge = _row(comparison, KNOWLEDGE_TASK)
    if curve is not None:
        lines.append(f"knowledge (acc) against strength: {curve}")
        lines.extend(_kl_lines(report, KNOWLEDGE_TASK) if report is not None else [])
        lines.extend(_dose_lines(report, KNOWLEDGE_TASK) if report is not None else [])
    elif knowledge is not None:
        lines.append(f"knowledge (acc): {knowledge.a:.2f} -> {knowledge.b:.2f} at {scale:g}x")
    return lines


def _row(comparison: Comparison, task: str) -> ComparisonRow | None:
    """The acc row of a task, if the comparison has it."""
    return next((r for r in comparison.rows if r.task == task and r.metric == "acc"), None)


def _preference_sentence(row: ComparisonRow, scale: float) -> str:
    """'dog option chosen 25% -> 50% at 1x: 11 answers moved to it, 0 away (McNemar p = ...)'."""
    from saeval.analysis.number_text import fmt_p

    text = f"dog option chosen: {row.a:.0%} -> {row.b:.0%} at {scale:g}x"
    if row.wrong_to_right is not None and row.right_to_wrong is not None:
        text += f"; {row.wrong_to_right} answers moved to it, {row.right_to_wrong} away"
    return f"{text} ({row.test} p = {fmt_p(row.p)})"


def _acc_series(report: Sweep, task: str) -> SweepSeries | None:
    """The sweep's acc series of ``task``, if it has one."""
    return next((s for s in report.series if s.task == task and s.metric == "acc"), None)


def _curve(report: Sweep, task: str) -> str | None:
    """'0.73 (baseline), 0.72 (0.5x), 0.69 (1x), ...' for a task's acc series."""
    series = _acc_series(report, task)
    if series is None:
        return None
    points = [f"{point.value:.2f} ({point.scale:g}x)" for point in series.points]
    return ", ".join([f"{series.baseline:.2f} (baseline)", *points])


def _kl_lines(report: Sweep, task: str) -> list[str]:
    """KL to the unsteered model against strength on a task's prompts, and where it first
    exceeds KL_THRESHOLD nats per token."""
    series = _acc_series(report, task)
    points = [p for p in series.points if p.kl is not None] if series is not None else []
    if not points:
        return []
    curve = ", ".join(f"{point.kl:.3g} ({point.scale:g}x)" for point in points)
    lines = [f"KL(unsteered || steered) per token on its prompts: {curve}"]
    above = [p.scale for p in points if p.kl is not None and p.kl > KL_THRESHOLD and p.scale > 0]
    where = f"first at {min(above):g}x" if above else "at no strength measured"
    lines.append(f"KL exceeds {KL_THRESHOLD:g} nats/token {where}")
    return lines


def _dose_lines(report: Sweep, task: str) -> list[str]:
    """The dog latent's dose (mean ||h' - h|| / ||h||, p95) at each strength on a task's prompts."""
    series = _acc_series(report, task)
    points = [p for p in series.points if p.dose is not None] if series is not None else []
    if not points:
        return []
    curve = ", ".join(f"{p.dose:.3g} (p95 {p.dose_p95:.3g}) at {p.scale:g}x" for p in points)
    return [f"dose ||h' - h|| / ||h|| on its prompts (every position but the first): {curve}"]


def _steerability_lines(report: Sweep) -> list[str]:
    """The dog-preference probe's per-document steerability over the positive strengths."""
    from saeval.analysis.number_text import fmt_ci, fmt_number

    entries = [e for e in report.steerability if e.task == PREFERENCE_TASK and not e.negative]
    return [
        f"dog preference, per-document slope of log P(dog option) over scales "
        f"{','.join(f'{scale:g}' for scale in entry.scales)}: median "
        f"{fmt_number(entry.median_slope, signed=True)} "
        f"{fmt_ci(entry.median_ci_low, entry.median_ci_high)} per unit scale; anti-steerable "
        f"{entry.anti_steerable} of {entry.n} documents ({entry.anti_fraction:.0%}, 95% CI "
        f"{entry.anti_ci_low:.0%}-{entry.anti_ci_high:.0%})"
        for entry in entries
    ]


def latent_sentence(assets: DemoAssets, device: str | None) -> str:
    """`saeval latents` for the dog latent on the built-in texts, as one sentence."""
    from saeval.analysis.number_text import fmt_number
    from saeval.run.latents import measure_latents
    from saeval.spec.corpus import read_texts

    report = measure_latents(
        (DEMO_STEER_FILE,), read_texts(LATENT_TEXTS), model=str(assets.model_dir), device=device
    )
    row = report.rows[0]
    stats = row.stats
    top = stats.snippets[0] if stats.snippets else None
    where = f'; strongest on "{top.token.strip()}" in "…{top.before}{top.token}…"' if top else ""
    return (
        f"dog latent {stats.latent_idx} on {report.texts} built-in texts ({stats.tokens} "
        f"tokens): max activation {fmt_number(stats.max_activation)}, p99 "
        f"{fmt_number(stats.p99)}, fires on {stats.frequency:.0%} of tokens{where}; "
        f"||W_dec|| {fmt_number(stats.w_dec_norm)}, mean ||h|| {fmt_number(stats.mean_h_norm)}; "
        f"2x max activation is coefficient {fmt_number(stats.coefficient_2x_max)} "
        f"(demo.csv uses {fmt_number(row.row.coefficient)})"
    )
