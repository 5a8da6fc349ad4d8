"""The rows of an experiment's leaderboard (``saeval.analysis.leaderboard``): the evaluated
configurations it reads, the paired effects it reports, and one row per intervention (or
control) at one strength."""

from __future__ import annotations

from dataclasses import dataclass

from saeval.analysis.compare import NO_TEST, ComparisonRow
from saeval.analysis.results import ResultSet


@dataclass(frozen=True)
class Entry:
    """One evaluated configuration: an intervention (``control`` None) or its k-th control."""

    intervention: str
    scale: float
    results: ResultSet
    control: int | None = None
    prompt: str | None = None  # asked with this system prompt (a prompt intervention)
    steers: bool = True  # False: a prompt alone (``scale`` is then 0)

    @property
    def label(self) -> str:
        """``dogs`` or ``dogs~random1``."""
        return label(self.intervention, self.control)


def label(intervention: str, control: int | None) -> str:
    """How reports name an intervention (``dogs``) or its k-th random control (``dogs~random1``)."""
    return intervention if control is None else f"{intervention}~random{control}"


@dataclass(frozen=True)
class Effect:
    """A paired delta with its confidence interval and test; ``task`` names a single task."""

    delta: float
    ci_low: float | None
    ci_high: float | None
    p: float | None
    test: str = NO_TEST
    n: int | None = None
    p_holm: float | None = None
    task: str | None = None

    @classmethod
    def of(cls, row: ComparisonRow, task: str | None = None) -> Effect:
        """The effect a comparison row measured."""
        return cls(row.delta, row.ci_low, row.ci_high, row.p, row.test, row.n_paired, task=task)


@dataclass(frozen=True)
class BoardRow:
    """One intervention (or control) at one strength."""

    intervention: str
    control: int | None
    scale: float
    target: Effect | None  # pooled over the target tasks; None without target tasks
    capability: Effect | None  # pooled over the capability tasks
    worst: Effect | None  # the capability task with the largest loss
    non_inferior: bool | None  # capability within the margin (one-sided, after Holm)
    p_non_inferior: float | None = None
    p_non_inferior_holm: float | None = None
    versus: Effect | None = None  # a control's row: the intervention minus this control; a
    # prompt's row with compare_to: the steering configuration it names minus the prompt
    sweet_spot: bool = False
    kl: float | None = None  # KL(unsteered || steered) per token, over the tasks that measured it
    dose: float | None = None  # mean ||h' - h|| / ||h|| (saeval.analysis.dose), likewise pooled
    prompt: str | None = None  # the system prompt it was asked with
    steers: bool = True  # False: a prompt alone

    @property
    def label(self) -> str:
        """``dogs`` or ``dogs~random1``."""
        return label(self.intervention, self.control)
