"""``saeval validate EXPERIMENT.yaml``: the experiment file, every intervention's steer files
(``saeval.spec.resolve.validate``), one base model across them, and the task names, offline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from saeval.errors import SteerFileError, TaskError
from saeval.spec.experiment import Experiment, read_experiment
from saeval.spec.resolve import Resolution, validate
from saeval.spec.tasks import validate_tasks

SCHEMA = "saeval.experiment-check/1"
MAX_EVALUATIONS = 10_000  # more: saeval run refuses to start without --allow-large (README)


@dataclass(frozen=True)
class ExperimentCheck:
    """What validating an experiment file found: its own problems, each intervention's
    resolution, and the problems found across them (model, tasks)."""

    path: str
    experiment: Experiment | None
    resolutions: dict[str, Resolution] = field(default_factory=dict)
    read_problems: tuple[str, ...] = ()  # the YAML's own
    problems_across: tuple[str, ...] = ()  # one base model, task names

    @property
    def problems(self) -> list[str]:
        """Every error, as ``file:line key: message`` (steer files' as theirs)."""
        found = [problem for r in self.resolutions.values() for problem in r.problems]
        return [*self.read_problems, *dict.fromkeys(found), *self.problems_across]

    @property
    def ok(self) -> bool:
        """No problem anywhere (unchecked checks do not fail)."""
        return not self.problems

    @property
    def unchecked(self) -> list[str]:
        """Every check that could not be made offline, each once."""
        found = [note for r in self.resolutions.values() for note in r.unchecked]
        return list(dict.fromkeys(found))

    def summary(self) -> str:
        """One line: what the experiment runs, or that it is not valid."""
        if self.experiment is None:
            return f"{self.path}: not readable: {len(self.read_problems)} problem(s)"
        verdict = "valid" if self.ok else f"{len(self.problems)} problem(s)"
        large = size_problem(self.experiment)
        note = "" if large is None else f" ({large}: saeval run needs --allow-large)"
        return f"{self.path}: {describe(self.experiment)}{note}; {verdict}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able data (schema ``saeval.experiment-check/1``)."""
        experiment = self.experiment
        return {
            "schema": SCHEMA,
            "ok": self.ok,
            "path": self.path,
            "summary": self.summary(),
            "experiment": None if experiment is None else experiment_data(experiment),
            "interventions": {name: r.to_dict() for name, r in self.resolutions.items()},
            "problems": self.problems,
            "unchecked": self.unchecked,
        }


def describe(experiment: Experiment) -> str:
    """``2 interventions x 2-3 strengths + 1 random control each; 1 target + 2 capability
    tasks: 1 baseline + 10 configurations, 33 evaluations``."""
    count, evaluations = counts(experiment)
    steering = [i for i in experiment.interventions if i.steers]
    strengths = sorted({len(i.scales or i.doses) for i in steering}) or [0]
    span = "-".join(map(str, [strengths[0], strengths[-1]] if len(strengths) > 1 else strengths))
    controls = experiment.random_controls
    prompts = len(experiment.interventions) - len(steering)
    asked = f" + {_count(prompts, 'prompt')}" if prompts else ""
    return (
        f"{_count(len(steering), 'intervention')} x {span} strengths"
        f" + {_count(controls, 'random control')} each{asked}; {len(experiment.target)} target + "
        f"{len(experiment.capability)} capability tasks: 1 baseline + "
        f"{_count(count, 'configuration')}, {_count(evaluations, 'evaluation')}"
    )


def counts(experiment: Experiment) -> tuple[int, int]:
    """The configurations (strengths, their random controls, prompts alone) and the evaluations
    (every configuration and the baseline on every task)."""
    strengths = sum(len(i.scales or i.doses) for i in experiment.interventions if i.steers)
    prompts = sum(not i.steers for i in experiment.interventions)
    configurations = strengths * (1 + experiment.random_controls) + prompts
    return configurations, (configurations + 1) * len(experiment.tasks)


def size_problem(experiment: Experiment) -> str | None:
    """``1,000,001 evaluations, above the limit of 10,000``, or None within the limit."""
    _, evaluations = counts(experiment)
    if evaluations <= MAX_EVALUATIONS:
        return None
    return f"{evaluations:,} evaluations, above the limit of {MAX_EVALUATIONS:,}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def experiment_data(experiment: Experiment) -> dict[str, Any]:
    """The experiment as JSON-able data (paths as text, the file's text left out)."""
    data = asdict(experiment)
    data.pop("text")
    return _plain(data)


def _plain(value: Any) -> Any:
    """Paths as text, tuples as lists, recursively."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return str(value) if isinstance(value, Path) else value


def validate_experiment(
    path: str | Path,
    *,
    model: str | None = None,
    include_path: Sequence[Path] | None = None,
    online: bool = False,
) -> ExperimentCheck:
    """Check an experiment file and everything it names, offline, collecting every problem;
    ``model`` and ``include_path`` replace the file's."""
    shown = str(path)
    try:
        experiment = read_experiment(path)
    except SteerFileError as error:
        return ExperimentCheck(shown, None, read_problems=tuple(error.problems))
    model = model or experiment.model
    resolutions = {
        i.name: validate([str(p) for p in i.steer], model=model, online=online)
        for i in experiment.interventions
        if i.steers
    }
    across = _model_problems(shown, model, resolutions)
    try:
        validate_tasks(
            experiment.tasks, experiment.include_path if include_path is None else include_path
        )
    except TaskError as error:
        across.append(f"{shown} tasks: {error.message}")
    return ExperimentCheck(shown, experiment, resolutions, problems_across=tuple(across))


def _model_problems(shown: str, model: str | None, resolutions: dict[str, Resolution]) -> list[str]:
    """Without ``model:``, the interventions must agree on one base model the SAEs name."""
    if model is not None:
        return []
    if not resolutions:
        return [f"{shown} model: missing; with prompt interventions alone, name the model"]
    models = {name: r.base_model for name, r in resolutions.items() if r.ok}
    named = {m for m in models.values() if m}
    if len(named) > 1:
        which = "; ".join(f"{name}: {m}" for name, m in models.items() if m)
        return [f"{shown} interventions: they steer different base models ({which})"]
    if models and not named:
        return [f"{shown} model: missing, and the SAEs do not name their base model; add model:"]
    return []
