"""The configurations and units of an experiment run folder (standard library only).

Layout of one experiment run (besides ``run.json`` and the lm-eval files of
``saeval.records.run_folder``)::

    <run>/experiment.json               the experiment: its file, definition, units, control seeds
    <run>/baseline/                     the one shared baseline
    <run>/<intervention>@<scale>/       one folder per intervention x strength
    <run>/<intervention>/               a prompt intervention without steer files
    <run>/<intervention>~random<k>@<scale>/   its k-th random control at that strength
    <run>/controls/<intervention>~random<k>.json   what the control's seed drew
    <run>/controls/<intervention>~random<k>@<scale>.json   its matched strength (match: kl, dose)
    <run>/queue/<unit>.claim            which worker took a unit (run by run, cleared on start)
    <run>/.manifest.lock                held while a worker updates run.json
    <run>/workers/<worker>.json, .log   each worker's device, pid, timings and output
    <run>/leaderboard.{md,csv,json,png}
    <run>/interventions/<name>/comparison.{md,csv,json} (+ sweep plots): saeval run's reports

A unit is one (configuration, task): the baseline's first, then per intervention and strength
the intervention and each of its controls.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from saeval.records.run_folder import BASELINE

EXPERIMENT_FILE = "experiment.json"
CONTROLS_DIR = "controls"
QUEUE_DIR = "queue"
WORKERS_DIR = "workers"
INTERVENTIONS_DIR = "interventions"
LEADERBOARD = "leaderboard"  # leaderboard.md, .csv, .json, .png
MANIFEST_LOCK = ".manifest.lock"
CLAIM_SUFFIX = ".claim"  # queue/<unit>.claim
WORKERS_FILE = "workers"  # queue/workers: how many workers share the queue
NOTES_SUFFIX = ".notes"  # workers/<worker>.notes: a worker's messages, one a line


@dataclass(frozen=True)
class Configuration:
    """One configuration folder: the baseline, an intervention or a control at one strength."""

    name: str
    intervention: str | None = None  # None: the baseline
    scale: float | None = None
    control: int | None = None  # k of the k-th random control
    seed: int | None = None  # the control's seed
    prompt: str | None = None  # lm-eval's system_instruction (a prompt intervention)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``experiment.json``; ``prompt`` only where there is one)."""
        data = dict(vars(self))
        if self.prompt is None:
            del data["prompt"]
        return data


def scale_text(scale: float) -> str:
    """A strength as folder names write it: 2 (not 2.0), 0.5, -1."""
    return str(scale).removesuffix(".0")


def control_name(intervention: str, control: int) -> str:
    """``dogs~random1``: the k-th random control of an intervention."""
    return f"{intervention}~random{control}"


def control_file(intervention: str, control: int) -> str:
    """``dogs~random1.json``: what the k-th control drew, in ``controls/``."""
    return f"{control_name(intervention, control)}.json"


def worker_file(worker: str, suffix: str) -> str:
    """``w0.json`` (the worker's record) or ``w0.log`` (its output), in ``workers/``."""
    return f"{worker}{suffix}"


def configuration_folder(intervention: str, scale: float, control: int | None = None) -> str:
    """``dogs@2`` or ``dogs~random1@2``."""
    base = intervention if control is None else control_name(intervention, control)
    return f"{base}@{scale_text(scale)}"


def control_seed(seed: int, intervention: str, control: int) -> int:
    """A 32-bit seed for the k-th control of an intervention, from the experiment's seed."""
    digest = hashlib.sha256(f"{seed}/{intervention}/{control}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def configurations(
    scales: dict[str, tuple[float, ...]],
    controls: int,
    seed: int,
    prompts: dict[str, str] | None = None,
) -> list[Configuration]:
    """The baseline, then for each intervention (``scales`` in order) and strength the
    intervention and its ``controls`` random controls; an intervention of no strengths is a
    prompt alone (``prompts``: each prompt intervention's text), one configuration named as it."""
    prompts = prompts or {}
    found = [Configuration(BASELINE)]
    for name, strengths in scales.items():
        prompt = prompts.get(name)
        if not strengths:
            found.append(Configuration(name, name, prompt=prompt))
        for scale in strengths:
            found.append(
                Configuration(configuration_folder(name, scale), name, scale, prompt=prompt)
            )
            found += [
                Configuration(
                    configuration_folder(name, scale, k),
                    name,
                    scale,
                    k,
                    control_seed(seed, name, k),
                    prompt,
                )
                for k in range(1, controls + 1)
            ]
    return found


def units(configs: list[Configuration], tasks: tuple[str, ...]) -> list[tuple[str, str]]:
    """Every (configuration, task), in the order workers take them."""
    return [(config.name, task) for config in configs for task in tasks]
