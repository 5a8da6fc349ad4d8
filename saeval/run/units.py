"""One unit evaluator: pending (configuration, task) units on one loaded model.

Every placement calls it: ``saeval run`` (one process, ``saeval.run.runner``), an experiment's
workers (``saeval.run.workers``: local, submitit, Slurm) and each rank of a data parallel launch
(``saeval.run.data_parallel``). They differ only in which units a process takes. For pending units
(a worker's: a group of one task) the evaluator

- takes each baseline from the cache when its key matches (a damaged entry is named and
  computed again) and fills the cache with a baseline it computed;
- evaluates the others with ``lm_eval.simple_evaluate``, one configuration after the other,
  those of one task inside one shared pass (``SteeredHFLM.sharing``): the first configuration's
  requests are answered for every configuration of the task at once (each data parallel rank
  for its own documents), the others take their answers; ``--no-shared-prefix`` evaluates each
  alone;
- measures the side effects (``saeval.run.side_effects``), saves lm-eval's files and the record
  in ``run.json`` (through ``store``: the run's open store, or a worker's locked one) and
  reports each unit's start and end.

A rank other than 0 evaluates its share of documents and writes nothing (``store`` None).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Hashable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from saeval.records.run_record import Manifest
from saeval.run import evaluation
from saeval.run.baseline_cache import BaselineCache, baseline_inputs, baseline_key
from saeval.run.config import RunConfig, RunEvents
from saeval.run.lm_eval_format import TaskOutput
from saeval.run.positions_check import single_token_tasks, warning
from saeval.run.side_effects import side_effect_texts
from saeval.run.store import RunStore
from saeval.spec.positions import GENERATED
from saeval.spec.tasks import TaskSet

if TYPE_CHECKING:
    from saeval.spec.steer_rows import AnyRow
    from saeval.steering.lm_eval_model import SteeredHFLM
    from saeval.steering.plan import SteerPlan
    from saeval.steering.shared_prefix import SharedAnswers

Opened = Callable[[], AbstractContextManager[RunStore]]  # the run folder's store, to write in


@dataclass(frozen=True)
class Unit:
    """One (configuration, task) to evaluate; ``step`` its place (from 1) among ``steps``."""

    configuration: str
    task: str
    scale: float | None  # None: the baseline (or a prompt alone)
    key: Hashable = None  # its key in shared passes (None for the baseline)
    plan: SteerPlan | None = field(default=None, compare=False)  # None: the model's own
    step: int = 1
    steps: int = 1
    prompt: str | None = None  # asked with this system instruction (a prompt intervention)
    runs_at: float | None = None  # the strength it runs at, where not ``scale`` (a matched
    # control's, ``saeval.run.control_match``)

    @property
    def strength(self) -> float | None:
        """The strength the model runs at (None: unsteered)."""
        return self.scale if self.runs_at is None else self.runs_at


def by_task(units: Sequence[Unit]) -> list[list[Unit]]:
    """The units grouped by task and prompt (a prompt changes every request, so only units
    asked alike share a pass), in the order each group first appears."""
    groups: dict[tuple[str, str | None], list[Unit]] = {}
    for unit in units:
        groups.setdefault((unit.task, unit.prompt), []).append(unit)
    return list(groups.values())


def _group_of(unit: Unit) -> tuple[str, str | None]:
    """The shared pass a unit belongs to: its task and prompt."""
    return unit.task, unit.prompt


def note_resume(store: RunStore, events: RunEvents) -> None:
    """Say what a resumed run keeps, and which finished units lost files and will run again."""
    notes = store.forget_damaged()
    events.note(f"resuming {store.folder} ({len(store.manifest.completed)} results kept)")
    for note in notes:
        events.note(note)


def positions_note(lm: SteeredHFLM, rows: Sequence[AnyRow], tasks: TaskSet) -> str | None:
    """The warning for rows that steer only generated positions on tasks where that changes
    no score (``saeval.run.positions_check``), if there are such rows and tasks."""
    if not any(row.positions == GENERATED for row in rows):
        return None
    found = single_token_tasks(lm, tasks)
    return warning(found) if found else None


@dataclass
class UnitEvaluator:
    """Evaluates groups of pending units of one task on ``lm`` and saves them (see above)."""

    lm: SteeredHFLM
    config: RunConfig
    tasks: TaskSet
    events: RunEvents
    manifest: Manifest | None  # the run's record (model, packages): the cache key's inputs
    folder_name: str
    store: Opened | None  # None: a data parallel rank other than 0, which writes nothing
    failed: Callable[[Unit, Exception], None] | None = None  # None: a unit's error stops all
    between: Callable[[], None] = lambda: None  # before each unit (a SIGTERM check)
    where: tuple[str, str] | None = None  # the unit being evaluated

    def reuse(self, units: Sequence[Unit]) -> list[Unit]:
        """Save every baseline of ``units`` the cache holds (and say so); the units left."""
        left = []
        for unit in units:
            cached = self._cached(unit) if unit.scale is None else None
            if cached is None:
                left.append(unit)
                continue
            self.events.task_started(unit.configuration, unit.task, unit.step, unit.steps)
            self._guarded(unit, functools.partial(self._reused, unit, *cached))
        return left

    def announce(self, units: Sequence[Unit]) -> None:
        """Tell the events which units share passes (before any is evaluated)."""
        for group in by_task(units):
            if self._sharing(group):
                self.events.group_started(group[0].task, [u.configuration for u in group])

    def evaluate(self, units: Sequence[Unit]) -> None:
        """Evaluate ``units`` (pending, no cached baseline) in their order, those of one task
        in one shared pass (the first of them answers the requests of all), saving each unit
        the moment it finishes."""
        shared = {_group_of(group[0]): self._shared(group) for group in by_task(units)}
        for unit in units:
            if unit.plan is not None and unit.strength is not None:
                self.lm.add_variant(unit.key, unit.plan, unit.strength)
        for unit in units:
            self.between()
            passes = shared[_group_of(unit)]
            with self.lm.sharing(passes):
                self._guarded(unit, functools.partial(self._evaluated, unit))
            if passes is not None:
                passes.finished(unit.key)

    def _guarded(self, unit: Unit, work: Callable[[], None]) -> None:
        """Run ``work`` for ``unit`` (``where`` names it meanwhile); its error goes to
        ``failed`` when there is one."""
        self.where = (unit.configuration, unit.task)
        try:
            work()
        except Exception as error:
            if self.failed is None:
                raise
            self.failed(unit, error)
        self.where = None

    def _sharing(self, group: Sequence[Unit]) -> bool:
        return self.config.shared_prefix and len(group) > 1

    def _shared(self, group: Sequence[Unit]) -> SharedAnswers | None:
        """The answers the group's configurations share (none with ``--no-shared-prefix`` or
        one configuration); with ``--kl-docs`` the pass also measures their KL."""
        from saeval.steering.shared_prefix import SharedAnswers

        if not self._sharing(group):
            return None
        return SharedAnswers([unit.key for unit in group], self.config.kl_docs > 0)

    def _evaluated(self, unit: Unit) -> None:
        """Evaluate one unit at its configuration and save it (a rank other than 0: its share)."""
        config = self._asked(unit)
        if unit.plan is None:
            self.lm.set_scale(unit.scale)
        else:
            self.lm.choose(unit.key)
            self.lm.check_plan()
        if self.store is None:
            evaluation.evaluate_share(self.lm, unit.task, config, self.tasks)
            self.lm.generated.take()  # the measures are rank 0's
            return
        self.events.task_started(unit.configuration, unit.task, unit.step, unit.steps)
        started = time.perf_counter()
        output = evaluation.evaluate(self.lm, unit.task, config, self.tasks)
        seconds = time.perf_counter() - started
        inputs = self._inputs(unit)
        key = None if inputs is None else baseline_key(inputs)
        self._save(unit, output, seconds, key, None)
        if key is not None and inputs is not None:
            BaselineCache(self.config.output).put(
                key, output, inputs, self.folder_name, on_unusable=self._unusable
            )

    def _asked(self, unit: Unit) -> RunConfig:
        """The run's options, with the unit's prompt as lm-eval's system_instruction."""
        if unit.prompt is None:
            return self.config
        return replace(self.config, system_instruction=unit.prompt)

    def _unusable(self, why: str) -> None:
        self.events.note(f"baseline cache not written ({why}); the run goes on without it")

    def _inputs(self, unit: Unit) -> dict[str, Any] | None:
        """The baseline cache key's inputs of a baseline unit (None for any other)."""
        if unit.scale is not None:
            return None
        spec = next(s for s in self.tasks.specs if s.name == unit.task)
        assert self.manifest is not None, "only the rank that writes takes and fills the cache"
        return baseline_inputs(self.manifest, self._asked(unit), spec)

    def _cached(self, unit: Unit) -> tuple[str, TaskOutput, str | None] | None:
        """(key, output, the run that computed it) of a cached baseline; a damaged entry is
        named and counts as absent."""
        inputs = self._inputs(unit)
        assert inputs is not None
        key = baseline_key(inputs)

        def damaged(why: str) -> None:
            self.events.note(
                f"cached baseline {key[:12]} of {unit.task} was damaged ({why}); computing it again"
            )

        found = BaselineCache(self.config.output).get(key, on_damaged=damaged)
        if found is None:
            return None
        return key, found[0], found[1].get("run")

    def _reused(self, unit: Unit, key: str, output: TaskOutput, source: str | None) -> None:
        self.events.note(
            f"baseline {unit.task}: reused from the cache ({key[:12]}, computed by run {source})"
        )
        self._save(unit, output, 0.0, key, source)

    def _save(
        self,
        unit: Unit,
        output: TaskOutput,
        seconds: float,
        key: str | None,
        reused_from: str | None,
    ) -> None:
        """Measure the unit's side effects, save its files and record, and report it."""
        assert self.store is not None
        effects = side_effect_texts(
            self.lm, output, unit.strength, self.config.kl_docs, self.events.measured
        )
        with self.store() as store:
            store.configuration_dir(unit.configuration, unit.scale)
            record = store.save_task(
                unit.configuration, unit.task, output, seconds, key, reused_from, effects
            )
        self.events.task_finished(record)
