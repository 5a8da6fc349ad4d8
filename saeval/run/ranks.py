"""Data parallel runs: ``accelerate launch -m saeval run STEER.csv --tasks ...`` (or ``torchrun``).

Every process of the launch runs ``saeval run`` with the same arguments. lm-eval splits each
task's documents across the ranks (rank r evaluates documents r, r + W, r + 2W, ...) and gathers
the results and samples at rank 0; on every other rank ``simple_evaluate`` returns None. Here:

- **Rank 0** runs ``saeval run`` as one process does: it alone creates, locks and writes the
  run folder (run.json, results, samples, side effects, comparison) and reads and fills the
  baseline cache. It decides what runs and tells the others (``share``): the pending
  (configuration, task) evaluations, then for each one whether it is evaluated (not a cached
  baseline), so every rank takes the same sequence of ``simple_evaluate`` calls and their
  collectives line up. KL and generation measures are computed by rank 0 alone, on the
  gathered samples of every document: the same numbers as a one-process run.
- **Every other rank** (``follow``) loads the model, evaluates its share of each evaluation rank
  0 announces, writes nothing and prints nothing, and returns.

HFLM turns on its document split only with more than one GPU visible; ``split_documents``
turns it on for any accelerate launch of several processes (CPU processes with gloo, processes
sharing a GPU), with the global process index as the rank. With ``SAEVAL_RANK_LOG=FOLDER`` each
rank appends one JSON line per request batch its model evaluated to ``FOLDER/rank-<r>.jsonl``
(request kind, count and document ids): how tests show that each rank did its share.
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
from saeval.run.config import RunConfig, RunResult
from saeval.run.quiet import quiet_lm_eval

if TYPE_CHECKING:
    from saeval.spec.steer_file import SteerFile
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


def share(value: T) -> T:
    """Rank 0's ``value`` on every rank (other ranks' argument is ignored)."""
    if current().world_size == 1:
        return value
    import torch.distributed as dist

    box: list[Any] = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


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
    """Record every request batch the model evaluates (``SAEVAL_RANK_LOG``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for kind in _REQUEST_KINDS:
        setattr(lm, kind, _logged(getattr(lm, kind), kind, lm, path))


def _logged(
    method: Callable[..., Any], kind: str, lm: SteeredHFLM, path: Path
) -> Callable[..., Any]:
    """``method`` (one of the model's request kinds), logging each batch before evaluating it."""

    def evaluate(requests: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        record = {
            "rank": lm.rank,
            "world_size": lm.world_size,
            "kind": kind,
            "scale": lm.scale,
            "tasks": sorted({request.task_name for request in requests}),
            "requests": len(requests),
            "doc_ids": sorted({request.doc_id for request in requests}),
        }
        with path.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(record) + "\n")
        return method(requests, *args, **kwargs)

    return evaluate


def announce(folder: Path, pending: Sequence[tuple[str, float | None, str]]) -> None:
    """Rank 0: tell the other ranks the run folder and the (configuration, scale, task)
    evaluations still to run, in order."""
    share((str(folder), list(pending)))


def follow(
    config: RunConfig, steer: Sequence[SteerFile], model_id: str, device: str, tasks: TaskSet
) -> RunResult:
    """A rank other than 0: evaluate its share of every evaluation rank 0 runs; write nothing."""
    nothing: tuple[str, list[tuple[str, float | None, str]]] = ("", [])
    folder, pending = share(nothing)
    if pending:
        rows = [row for file in steer for row in file.rows]
        lm = evaluation.steered_lm(rows, model_id, device, config.dtype, config.batch_size)
        split_documents(lm)
        with quiet_lm_eval(lambda done, total: None):
            for _configuration, scale, task in pending:
                if share(False):  # rank 0: evaluated, not taken from the baseline cache
                    lm.set_scale(scale)
                    evaluation.evaluate_share(lm, task, config, tasks)
    return RunResult(Path(folder), Path(folder) / MANIFEST, {}, (), None, ())
