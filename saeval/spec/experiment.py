"""An experiment file (YAML): many interventions, each at several strengths, against one baseline,
with random controls, on target and capability tasks. Read and checked without a model.

Every key is checked where it is written; problems read ``exp.yaml:7 interventions.dogs: ...``
and all of them are reported at once (``SteerFileError.problems``). Steer-file paths and
``include_path`` folders are relative to the YAML's folder. README ("Experiments") documents
every key; ``saeval.spec.experiment_check`` validates the steer files and tasks it names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from saeval.spec import experiment_keys as keys
from saeval.spec.csv_records import Invalid, Problems
from saeval.spec.experiment_interventions import (
    Defaults,
    Intervention,
    check_compare_to,
    read_controls,
    read_intervention,
)
from saeval.spec.options import EvalOptions, declared
from saeval.spec.options import info as option_info
from saeval.spec.placement import parse_devices, parse_executor, slurm_minutes
from saeval.spec.positions import MODES
from saeval.spec.yaml_nodes import Entry, compose, entries, items, line_of, qualified

EXPERIMENT_SUFFIXES = (".yaml", ".yml")
DIRECTIONS = ("increase", "decrease")
MAX_EXPERIMENT_BYTES = 1_000_000


@dataclass(frozen=True)
class SlurmOptions:
    """The ``slurm:`` keys (and ``--slurm-*`` options): one array job per worker."""

    partition: str | None = None
    gpus_per_job: int = 1
    time_min: int = 60
    jobs: int = 4
    account: str | None = None
    qos: str | None = None
    cpus_per_job: int | None = None
    mem_gb: float | None = None
    setup: tuple[str, ...] = ()  # shell lines run before each job (module load ..., source ...)


@dataclass(frozen=True)
class Experiment:
    """A checked experiment file (see the module docstring and README)."""

    path: Path
    text: str
    sha256: str
    interventions: tuple[Intervention, ...]
    target: tuple[str, ...]  # tasks the steering is meant to move
    capability: tuple[str, ...]  # tasks it must not hurt
    model: str | None = None
    include_path: tuple[Path, ...] = ()
    options: EvalOptions = field(default_factory=EvalOptions)
    margin: float | None = None  # None: the reports' default
    alpha: float | None = None
    target_metric: str = "acc"
    capability_metric: str = "acc"
    target_direction: str = "increase"
    random_controls: int = 0  # per steering intervention
    control_match: str = "norm"  # what a control's strength is matched on (CONTROL_MATCHES)
    devices: tuple[str, ...] = ()  # () : the default device, one worker
    executor: str = "local"
    slurm: SlurmOptions = field(default_factory=SlurmOptions)

    @property
    def tasks(self) -> tuple[str, ...]:
        """Every task: the target tasks, then the capability tasks."""
        return self.target + self.capability

    @property
    def steer_files(self) -> tuple[Path, ...]:
        """Every intervention's steer files, each once, in order."""
        return tuple(dict.fromkeys(p for i in self.interventions for p in i.steer))


def is_experiment_file(path: str | Path) -> bool:
    """Whether a path names an experiment file (by its suffix) rather than a steer file."""
    return Path(path).suffix.lower() in EXPERIMENT_SUFFIXES


def read_experiment(path: str | Path) -> Experiment:
    """Read and check an experiment file; SteerFileError lists every problem as
    ``file:line key: message``."""
    path = Path(path)
    problems = Problems(str(path))
    try:
        data = path.read_bytes()
    except OSError as error:
        problems.fatal(None, None, f"cannot read the experiment file ({error.strerror or error})")
    if len(data) > MAX_EXPERIMENT_BYTES:
        problems.fatal(None, None, f"is {len(data)} bytes; an experiment file is at most 1 MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        problems.fatal(None, None, f"is not UTF-8 text ({error.reason} at byte {error.start})")
    root = compose(text, problems)
    problems.raise_if_any()
    if root is None:
        problems.fatal(1, None, "the file is empty; it needs at least tasks: and interventions:")
    reader = _Reader(path.parent, problems)
    values = reader.read(root)
    problems.raise_if_any()
    digest = hashlib.sha256(data).hexdigest()
    return Experiment(path=path, text=text, sha256=digest, **values)


class _Reader:
    """Walks the top-level mapping, one handler per key."""

    def __init__(self, folder: Path, problems: Problems) -> None:
        self.folder = folder
        self.problems = problems
        self.values: dict[str, Any] = {}
        self.options: dict[str, Any] = {}
        self.default_scales: tuple[float, ...] = (1.0,)
        self.default_doses: tuple[float, ...] = ()  # dose: instead of scales (run/dose_scale.py)
        self.default_positions = "all"
        self.handlers: dict[str, Callable[[Entry], None]] = {
            "model": lambda e: self._set("model", self._model(keys.text(e.node))),
            "tasks": self._tasks,
            "include_path": self._include_path,
            "scales": lambda e: setattr(self, "default_scales", keys.scales(e.node)),
            "dose": lambda e: setattr(self, "default_doses", keys.scales(e.node)),
            "positions": lambda e: setattr(
                self, "default_positions", keys.choice(e.node, tuple(MODES))
            ),
            "margin": lambda e: self._set("margin", keys.margin(e.node)),
            "alpha": lambda e: self._set("alpha", keys.alpha(e.node)),
            "metric": self._metric,
            "target_direction": lambda e: self._set(
                "target_direction", keys.choice(e.node, DIRECTIONS)
            ),
            "interventions": lambda e: None,  # read last: `scales` and `positions` are defaults
            "controls": lambda e: self.values.update(read_controls(e, self.problems)),
            "devices": lambda e: self._set(
                "devices", parse_devices([keys.text(item) for item in items(e.node)])
            ),
            "executor": lambda e: self._set("executor", parse_executor(keys.text(e.node))),
            "slurm": self._slurm,
            **_option_handlers(self.options),
        }

    def read(self, root: yaml.Node) -> dict[str, Any]:
        """The Experiment fields the file gives (problems recorded on the way)."""
        found = {entry.key: entry for entry in entries(root, "", self.problems)}
        for key, entry in found.items():
            handler = self.handlers.get(key)
            if handler is None:
                self._unknown(entry, "", self.handlers)
                continue
            try:
                handler(entry)
            except Invalid as problem:
                self.problems.add(entry.line, key, str(problem))
        for required in ("tasks", "interventions"):
            if required not in found:
                self.problems.add(None, required, "missing; every experiment file needs it")
        if "scales" in found and "dose" in found:
            self.problems.add(found["dose"].line, "dose", "give scales or dose, not both")
        if "interventions" in found:
            self._interventions(found["interventions"])
        match = self.values.get("control_match")
        if match in ("kl", "dose") and self.options.get("kl_docs") == 0:
            self.problems.add(
                found["controls"].line,
                "controls.match",
                f"{match} matches on the {'KL' if match == 'kl' else 'dose'} of the first kl_docs "
                "documents, and kl_docs is 0; set kl_docs: 1 or more, or match: norm",
            )
        return self.values | {"options": EvalOptions(**self.options)}

    def _set(self, name: str, value: Any) -> None:
        self.values[name] = value

    def _unknown(self, entry: Entry, where: str, known: Any) -> None:
        valid = ", ".join(sorted(known))
        self.problems.add(entry.line, qualified(where, entry.key), f"unknown key; valid: {valid}")

    def _tasks(self, entry: Entry) -> None:
        """A list (every task a capability task) or ``{target: [...], capability: [...]}``."""
        if not isinstance(entry.node, yaml.MappingNode):
            self.values["target"], self.values["capability"] = (), keys.texts(entry.node)
            return
        families: dict[str, tuple[str, ...]] = {"target": (), "capability": ()}
        for inner in entries(entry.node, "tasks", self.problems):
            if inner.key not in families:
                self._unknown(inner, "tasks", families)
                continue
            try:
                families[inner.key] = keys.texts(inner.node)
            except Invalid as problem:
                self.problems.add(inner.line, f"tasks.{inner.key}", str(problem))
        both = [name for name in families["target"] if name in families["capability"]]
        if both:
            self.problems.add(
                entry.line, "tasks", f"{', '.join(both)} is both a target and a capability task"
            )
        if not families["target"] and not families["capability"]:
            self.problems.add(entry.line, "tasks", "no task given; list target: and capability:")
        self.values["target"], self.values["capability"] = (
            families["target"],
            families["capability"],
        )

    def _include_path(self, entry: Entry) -> None:
        folders = []
        for item in items(entry.node):
            folder = self._path(keys.text(item))
            if not folder.is_dir():
                self.problems.add(line_of(item), "include_path", f"{folder} is not a folder")
            folders.append(folder)
        self.values["include_path"] = tuple(folders)

    def _metric(self, entry: Entry) -> None:
        """One metric for every task, or ``{target: M, capability: M}``."""
        if not isinstance(entry.node, yaml.MappingNode):
            name = keys.text(entry.node)
            self.values["target_metric"] = self.values["capability_metric"] = name
            return
        for inner in entries(entry.node, "metric", self.problems):
            if inner.key not in ("target", "capability"):
                self._unknown(inner, "metric", ("target", "capability"))
                continue
            try:
                self.values[f"{inner.key}_metric"] = keys.text(inner.node)
            except Invalid as problem:
                self.problems.add(inner.line, f"metric.{inner.key}", str(problem))

    def _slurm(self, entry: Entry) -> None:
        parsers: dict[str, Callable[[yaml.Node], Any]] = {
            "partition": keys.text,
            "gpus_per_job": lambda node: keys.whole(node, 0),
            "time": lambda node: slurm_minutes(keys.scalar(node)),
            "jobs": lambda node: keys.whole(node, 1),
            "account": keys.text,
            "qos": keys.text,
            "cpus_per_job": lambda node: keys.whole(node, 1),
            "mem_gb": keys.number,
            "setup": lambda node: tuple(keys.text(item) for item in items(node)),
        }
        found: dict[str, Any] = {}
        for inner in entries(entry.node, "slurm", self.problems):
            if inner.key not in parsers:
                self._unknown(inner, "slurm", parsers)
                continue
            try:
                found["time_min" if inner.key == "time" else inner.key] = parsers[inner.key](
                    inner.node
                )
            except Invalid as problem:
                self.problems.add(inner.line, f"slurm.{inner.key}", str(problem))
        self.values["slurm"] = SlurmOptions(**found)

    def _interventions(self, entry: Entry) -> None:
        found = []
        defaults = Defaults(
            self.default_scales, self.default_positions, self._path, self.default_doses
        )
        for inner in entries(entry.node, "interventions", self.problems):
            try:
                found.append(read_intervention(inner, defaults, self.problems))
            except Invalid as problem:
                self.problems.add(inner.line, f"interventions.{inner.key}", str(problem))
        if not found and isinstance(entry.node, yaml.MappingNode):
            self.problems.add(entry.line, "interventions", "no intervention given")
        check_compare_to(found, self.problems)
        self.values["interventions"] = tuple(found)

    def _model(self, name: str) -> str:
        """A local model folder (relative to the YAML, ``~`` expanded) as its path, else the
        Hugging Face id or alias as written."""
        folder = self._path(name)
        return str(folder) if folder.is_dir() else name

    def _path(self, name: str) -> Path:
        """A path as written, against the YAML's folder when relative (``~`` expanded)."""
        path = Path(name).expanduser()
        return path if path.is_absolute() else self.folder / path


def _option_handlers(options: dict[str, Any]) -> dict[str, Callable[[Entry], None]]:
    """The evaluation options an experiment file may set, with ``saeval run``'s names and
    checks (``saeval.spec.options``)."""

    def handler(name: str, parse: Callable[[yaml.Node], Any]) -> Callable[[Entry], None]:
        return lambda entry: options.__setitem__(name, parse(entry.node))

    keyed = [(item.name, option_info(item).key) for item in declared()]
    return {name: handler(name, parse) for name, parse in keyed if parse is not None}


def with_overrides(experiment: Experiment, **changes: Any) -> Experiment:
    """The experiment with command-line options replacing its keys (None: keep the file's)."""
    given = {name: value for name, value in changes.items() if value is not None}
    options = {item.name: given.pop(item.name) for item in declared() if item.name in given}
    slurm = {name: given.pop(name) for name in list(given) if name.startswith("slurm_")}
    updated = replace(experiment, options=replace(experiment.options, **options), **given)
    if slurm:
        fields = {name.removeprefix("slurm_"): value for name, value in slurm.items()}
        updated = replace(updated, slurm=replace(updated.slurm, **fields))
    return updated
