"""Data parallel runs: ``accelerate launch -m saeval run STEER.csv --tasks ...`` (or ``torchrun``).

Every process of the launch runs ``saeval run`` with the same arguments. lm-eval splits each
task's documents across the ranks (rank r evaluates documents r, r + W, r + 2W, ...) and gathers
the results and samples at rank 0; on every other rank ``simple_evaluate`` returns None. Here:

- **Rank 0** runs ``saeval run`` as one process does: it alone creates, locks and writes the
  run folder (run.json, results, samples, side effects, comparison) and reads and fills the
  baseline cache. Once it has loaded the model and taken the cached baselines it tells the
  others, once (``announce``), the units to evaluate, so every rank takes the same sequence of
  ``simple_evaluate`` calls and their collectives line up. KL and generation measures are
  computed by rank 0 alone, on the gathered samples of every document: the same numbers as a
  one-process run.
- **Every other rank** (``follow``) loads the model, evaluates its share of the documents of
  each unit rank 0 announces with the same unit evaluator (``saeval.run.units``: the
  configurations of a task in one shared pass over its documents), writes nothing and prints
  nothing, and returns.

HFLM turns on its document split only with more than one GPU visible; ``split_documents``
turns it on for any accelerate launch of several processes (CPU processes with gloo, processes
sharing a GPU), with the global process index as the rank. With ``SAEVAL_RANK_LOG=FOLDER`` each
rank appends one JSON line per request batch its model evaluated to ``FOLDER/rank-<r>.jsonl``
(request kind, count, document ids and the model's forward calls): how tests show that each
rank did its share, all configurations of a task in one pass.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from saeval.errors import DeviceError
from saeval.records.run_folder import MANIFEST
from saeval.run import evaluation
from saeval.run.config import RunConfig, RunResult, SilentEvents
from saeval.run.lm_eval_output import quiet_lm_eval
from saeval.run.units import Unit, UnitEvaluator

if TYPE_CHECKING:
    from saeval.spec.steer_rows import AnyRow
    from saeval.spec.tasks import TaskSet
    from saeval.steering.lm_eval_model import SteeredHFLM

T = TypeVar("T")
RANK_LOG = "SAEVAL_RANK_LOG"
_WORLD_SIZE = (
    "WORLD_SIZE",
    "PMI_SIZE",
    "OMPI_COMM_WORLD_SIZE",
    "MV2_COMM_WORLD_SIZE",
)  # accelerate's
_REQUEST_KINDS = ("loglikelihood", "loglikelihood_rolling", "generate_until")


@dataclass(frozen=True)
class Ranks:
    """This process's place in a data parallel launch (rank 0 of 1 without one)."""

    rank: int
    world_size: int

    @property
    def main(self) -> bool:
        """Whether this process writes the run folder and reports."""
        return self.rank == 0


def launched_size() -> int:
    """The number of processes the launcher started (1 without a launcher); no imports."""
    for name in _WORLD_SIZE:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


@functools.cache
def current() -> Ranks:
    """This process's rank; under a launch of several processes the process group is set up
    here (as HFLM sets it up: accelerate, a timeout no evaluation reaches)."""
    size = launched_size()
    if size <= 1:
        return Ranks(0, 1)
    from datetime import timedelta

    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    accelerator = Accelerator(kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(weeks=52))])
    if accelerator.num_processes != size:
        raise DeviceError(
            f"the launcher started {size} processes but accelerate found no way to connect them "
            f"(distributed type {accelerator.distributed_type})",
            hint="on CPUs set ACCELERATE_USE_CPU=1: ACCELERATE_USE_CPU=1 accelerate launch "
            "--multi_gpu --num_processes 2 -m saeval run ... (accelerate launch --cpu starts one "
            "process)",
        )
    return Ranks(accelerator.process_index, accelerator.num_processes)


def is_main() -> bool:
    """Whether this process is rank 0 (always, without a data parallel launch)."""
    return current().main


def split_documents(lm: SteeredHFLM) -> None:
    """Make lm-eval give each rank its share of documents under any launch of several
    processes (HFLM does only with several GPUs, and with the node-local index as the rank)."""
    accelerator = getattr(lm, "accelerator", None)
    if accelerator is not None and accelerator.num_processes > 1:
        lm._rank = accelerator.process_index
        lm._world_size = accelerator.num_processes
    folder = os.environ.get(RANK_LOG)
    if folder:
        _log_requests(lm, Path(folder) / f"rank-{lm.rank}.jsonl")


def _log_requests(lm: SteeredHFLM, path: Path) -> None:
    """Record every request batch the model evaluates (``SAEVAL_RANK_LOG``), with the number
    of forward calls the model made for it (none where a shared pass already answered it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    calls = [0]

    def count(module: Any, args: Any) -> None:
        calls[0] += 1

    lm.model.register_forward_pre_hook(count)
    for kind in _REQUEST_KINDS:
        setattr(lm, kind, _logged(getattr(lm, kind), kind, lm, path, calls))


def _logged(
    method: Callable[..., Any], kind: str, lm: SteeredHFLM, path: Path, calls: list[int]
) -> Callable[..., Any]:
    """``method`` (one of the model's request kinds), logging each batch it evaluated."""

    def evaluate(requests: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        before = calls[0]
        found = method(requests, *args, **kwargs)
        record = {
            "rank": lm.rank,
            "world_size": lm.world_size,
            "kind": kind,
            "scale": lm.scale,
            "tasks": sorted({request.task_name for request in requests}),
            "requests": len(requests),
            "doc_ids": sorted({request.doc_id for request in requests}),
            "forward_calls": calls[0] - before,
        }
        with path.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(record) + "\n")
        return found

    return evaluate


def announce(folder: Path, units: Sequence[Unit]) -> None:
    """Rank 0: tell the other ranks, once, the run folder and the units every rank evaluates
    (the pending ones without a cached baseline), in order."""
    if current().world_size > 1:
        _broadcast((str(folder), list(units)))


def follow(
    config: RunConfig, rows: Sequence[AnyRow], model_id: str, device: str, tasks: TaskSet
) -> RunResult:
    """A rank other than 0: load the model, then evaluate its share of the documents of every
    unit rank 0 announces with the same unit evaluator; write nothing."""
    lm = evaluation.steered_lm(rows, model_id, device, config.dtype, config.batch_size)
    split_documents(lm)
    nothing: tuple[str, list[Unit]] = ("", [])
    folder, units = _broadcast(nothing)
    evaluator = UnitEvaluator(lm, config, tasks, SilentEvents(), None, folder, None)
    with quiet_lm_eval(lambda done, total: None):
        evaluator.evaluate(units)
    return RunResult(Path(folder), Path(folder) / MANIFEST, {}, (), None, ())


def _broadcast(value: T) -> T:
    """Rank 0's ``value`` on every rank (the others' argument is ignored)."""
    import torch.distributed as dist

    box: list[Any] = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
