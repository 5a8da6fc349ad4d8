"""The ``interventions:`` and ``controls:`` keys of an experiment file, read without a model.

An intervention steers (``steer:`` files at ``scales:``), asks (``prompt:``, lm-eval's
``system_instruction``: a prompting baseline on the same documents), or both. A prompt
intervention may name a steering one to be paired with (``compare_to: dogs``, or
``dogs@2`` when ``dogs`` runs at several strengths). ``controls: {random: N, match: M}`` draws
N random controls per steering intervention whose strength is matched on ``M``
(``CONTROL_MATCHES``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from saeval.spec import experiment_keys as keys
from saeval.spec.csv_records import Invalid, Problems
from saeval.spec.positions import MODES
from saeval.spec.yaml_nodes import Entry, entries

RESERVED_NAMES = ("baseline", "steered")
# What a random control's strength is matched on: the norm of its add vectors (the drawn
# direction has the intervention's norm, the strength is the intervention's), the KL to the
# unsteered model or the dose ||h' - h|| / ||h|| on the calibration prompts (its strength
# searched until the KL or dose is the intervention's within 10%: saeval.run.control_match).
CONTROL_MATCHES = ("norm", "kl", "dose")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
T = TypeVar("T")
_KEYS = ("scales", "dose", "steer", "positions", "prompt", "compare_to")


@dataclass(frozen=True)
class Intervention:
    """One named steer set (one or more steer files) and the strengths it runs at, a prompt,
    or both."""

    name: str
    steer: tuple[Path, ...]  # resolved against the YAML's folder; () for a prompt alone
    scales: tuple[float, ...]  # () for a prompt alone
    line: int
    positions: str = "all"  # the positions mode of its rows with an empty positions cell
    prompt: str | None = None  # lm-eval's system_instruction for every configuration of it
    compare_to: str | None = None  # ``dogs`` or ``dogs@2``: the steering it is paired with
    doses: tuple[float, ...] = ()  # dose: strengths in activation units; scales come from them

    @property
    def steers(self) -> bool:
        """Whether it has steer files (a prompt alone does not)."""
        return bool(self.steer)


@dataclass(frozen=True)
class Defaults:
    """What an intervention takes from the file's top-level keys."""

    scales: tuple[float, ...]
    positions: str
    path: Callable[[str], Path]  # a path as written, against the YAML's folder
    doses: tuple[float, ...] = ()  # dose: instead of scales (saeval.run.dose_scale)


def read_intervention(entry: Entry, defaults: Defaults, problems: Problems) -> Intervention:
    """``name: steer.csv``, ``name: [a.csv, b.csv]`` or ``name: {steer: ..., prompt: ...,
    scales: ..., positions: ..., compare_to: ...}``."""
    check_name(entry.key)
    if not isinstance(entry.node, yaml.MappingNode):
        dosed = {"doses": defaults.doses} if defaults.doses else {}
        return _steering(entry, entry.node, defaults, defaults.scales, defaults.positions, dosed)
    where = f"interventions.{entry.key}"
    parts = {inner.key: inner for inner in entries(entry.node, where, problems)}
    unknown = sorted(set(parts) - set(_KEYS))
    if unknown:
        raise Invalid(f"unknown key {unknown[0]!r}; valid: {', '.join(_KEYS)}")
    if "scales" in parts and "dose" in parts:
        raise Invalid("give scales or dose, not both (a dose becomes a scale)")
    extra: dict[str, Any] = {}
    if "prompt" in parts:
        extra["prompt"] = _part(parts["prompt"], keys.text)
    if "compare_to" in parts:
        if "prompt" not in parts:
            raise Invalid("compare_to: pairs a prompt with a steering intervention: add prompt:")
        extra["compare_to"] = _part(parts["compare_to"], keys.text)
    if "steer" not in parts:
        if "prompt" not in parts:
            raise Invalid("needs steer: (its steer files) or prompt: (a system prompt), or both")
        given = sorted({"scales", "dose", "positions"} & set(parts))
        if given:
            raise Invalid(f"{given[0]}: applies to steer files; a prompt alone has no strength")
        return Intervention(entry.key, (), (), entry.line, **extra)
    scales = keys.scales(parts["scales"].node) if "scales" in parts else defaults.scales
    doses = () if "scales" in parts else defaults.doses
    if "dose" in parts:
        doses = _part(parts["dose"], keys.scales)
    if doses:
        extra["doses"] = doses
    positions = defaults.positions
    if "positions" in parts:
        positions = keys.choice(parts["positions"].node, tuple(MODES))
    return _steering(entry, parts["steer"].node, defaults, scales, positions, extra)


def _part(entry: Entry, parse: Callable[[yaml.Node], T]) -> T:
    """One key of an intervention, parsed; its problem names the key."""
    try:
        return parse(entry.node)
    except Invalid as problem:
        raise Invalid(f"{entry.key}: {problem}") from None


def _steering(
    entry: Entry,
    node: yaml.Node,
    defaults: Defaults,
    scales: tuple[float, ...],
    positions: str,
    extra: dict[str, Any],
) -> Intervention:
    """An intervention with steer files, which must exist."""
    paths = tuple(defaults.path(name) for name in keys.texts(node))
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise Invalid(f"steer file {missing[0]} does not exist (paths are relative to the YAML)")
    if not paths:
        raise Invalid("no steer file given")
    if extra.get("doses"):  # the scales are measured when the experiment runs (run/dose_scale.py)
        scales = ()
    return Intervention(entry.key, paths, scales, entry.line, positions, **extra)


def check_name(name: str) -> None:
    """An intervention name is one plain folder-name part: letters, digits, ``_ . -``."""
    if name in RESERVED_NAMES:
        raise Invalid(f"{name!r} is reserved (a configuration folder of saeval run)")
    if not _NAME.match(name):
        raise Invalid(
            f"name {name!r} must start with a letter or digit and hold only letters, digits, "
            "'_', '.' and '-' (it names folders)"
        )


def check_compare_to(interventions: Sequence[Intervention], problems: Problems) -> None:
    """Every ``compare_to`` names another steering intervention (and one of its strengths,
    where it runs at several)."""
    by_name = {i.name: i for i in interventions}
    for intervention in interventions:
        if intervention.compare_to is None:
            continue
        try:
            compared_with(intervention, by_name)
        except Invalid as problem:
            where = f"interventions.{intervention.name}.compare_to"
            problems.add(intervention.line, where, str(problem))


def compared_with(
    intervention: Intervention, by_name: dict[str, Intervention]
) -> tuple[str, float]:
    """The (steering intervention, strength) a prompt intervention's ``compare_to`` names."""
    text = intervention.compare_to or ""
    name, at, strength = text.rpartition("@") if "@" in text else (text, "", "")
    other = by_name.get(name)
    steering = sorted(i.name for i in by_name.values() if i.steers and i is not intervention)
    if other is None or not other.steers or other is intervention:
        valid = ", ".join(steering) or "none (no other intervention has steer files)"
        raise Invalid(f"{text!r} is not a steering intervention of this file; valid: {valid}")
    shown = ", ".join(f"{name}@{scale:g}" for scale in other.scales)
    if not at:
        if len(other.scales) > 1:
            raise Invalid(f"{name} runs at several strengths: name one of {shown}")
        return name, other.scales[0]
    try:
        scale = float(strength)
    except ValueError:
        scale = float("nan")
    if scale not in other.scales:
        raise Invalid(f"{name} does not run at strength {strength!r}; valid: {shown}")
    return name, scale


def read_controls(entry: Entry, problems: Problems) -> dict[str, Any]:
    """``controls: {random: N, match: norm|kl|dose}``: the Experiment fields it sets."""
    found: dict[str, Any] = {}
    parsers: dict[str, tuple[str, Callable[[yaml.Node], Any]]] = {
        "random": ("random_controls", lambda node: keys.whole(node, 0, 100)),
        "match": ("control_match", lambda node: keys.choice(node, CONTROL_MATCHES)),
    }
    for inner in entries(entry.node, "controls", problems):
        if inner.key not in parsers:
            valid = ", ".join(parsers)
            problems.add(inner.line, f"controls.{inner.key}", f"unknown key; valid: {valid}")
            continue
        field_name, parse = parsers[inner.key]
        try:
            found[field_name] = parse(inner.node)
        except Invalid as problem:
            problems.add(inner.line, f"controls.{inner.key}", str(problem))
    return found
