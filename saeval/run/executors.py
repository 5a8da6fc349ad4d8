"""Where an experiment's workers run: local processes (one per device), submitit's
LocalExecutor, or a Slurm job array through submitit. Each pool starts its workers, says which
are still running (and why one stopped early) and stops them all.

- ``local``: ``python -m saeval.run.workers`` per device, in a session of its own (Ctrl-C
  reaches the parent, which stops them), output in ``<run>/workers/<worker>.log``. CPU workers
  share the cores (``torch.set_num_threads``). A worker whose parent is gone stops after its unit.
- ``submitit-local``: the same workers as submitit jobs on this machine, each GPU made the
  job's only visible one; logs in ``<run>/submitit/``.
- ``slurm``: one array task per job (``SlurmOptions``), each running one worker per GPU it was
  given (one CPU worker with ``gpus_per_job: 0``); logs in ``<run>/submitit/``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from saeval.errors import UsageError
from saeval.records.experiment_folder import WORKERS_DIR, worker_file
from saeval.run.workers import work
from saeval.spec.experiment import SlurmOptions

SUBMITIT_DIR = "submitit"
STOP_GRACE_S = 10.0
_NO_LIMIT_MIN = 7 * 24 * 60  # submitit-local's timeout (its default is 2 minutes)


@dataclass(frozen=True)
class WorkerState:
    """One worker as the pool sees it: running, finished, or stopped early (``failure``)."""

    worker: str
    running: bool
    failure: str | None = None


class Pool(Protocol):
    """Starts, watches and stops an experiment's workers."""

    def start(self) -> None:
        """Start every worker."""

    def states(self) -> list[WorkerState]:
        """Each worker's state now."""

    def stop(self) -> None:
        """Stop every worker that still runs (finished units stay recorded)."""


def cpu_threads(devices: Sequence[str]) -> int:
    """Threads per CPU worker: the cores shared out among them (at least 1)."""
    workers = sum(device == "cpu" for device in devices)
    return max(1, (os.cpu_count() or 1) // max(workers, 1))


class LocalPool:
    """One ``python -m saeval.run.workers`` process per device."""

    def __init__(self, folder: Path, devices: Sequence[str], prefix: str = "w") -> None:
        self.folder = folder
        self.workers = {f"{prefix}{index}": device for index, device in enumerate(devices)}
        self.threads = cpu_threads(devices)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        """Start one worker per device, each in a session of its own."""
        (self.folder / WORKERS_DIR).mkdir(exist_ok=True)
        for worker, device in self.workers.items():
            command = [sys.executable, "-m", "saeval.run.workers", str(self.folder), worker]
            command += [device, "--parent", str(os.getpid())]
            if device == "cpu":
                command += ["--threads", str(self.threads)]
            with open(self.folder / WORKERS_DIR / worker_file(worker, ".log"), "ab") as log:
                self.processes[worker] = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )

    def states(self) -> list[WorkerState]:
        """Each worker: running, or its exit (a signal or a non-zero code is a failure)."""
        found = []
        for worker, process in self.processes.items():
            code = process.poll()
            found.append(WorkerState(worker, code is None, None if not code else _exit(code)))
        return found

    def stop(self) -> None:
        """SIGTERM every running worker, then SIGKILL what is left after a grace period."""
        running = [p for p in self.processes.values() if p.poll() is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def wait(self) -> None:
        """Block until every worker has exited."""
        for process in self.processes.values():
            process.wait()


def _exit(code: int) -> str:
    """``stopped by SIGKILL`` or ``exit code 1``."""
    if code < 0:
        try:
            return f"stopped by {signal.Signals(-code).name}"
        except ValueError:
            return f"stopped by signal {-code}"
    return f"exit code {code}"


def run_job(folder: str, worker: str, devices: Sequence[str]) -> int:
    """A submitit job: one worker on its one device, or a local pool over several GPUs."""
    if len(devices) == 1:
        import torch

        if devices[0] == "cpu":
            torch.set_num_threads(cpu_threads(devices))
        return work(Path(folder), worker, devices[0])
    pool = LocalPool(Path(folder), devices, prefix=f"{worker}.")
    pool.start()
    pool.wait()
    return 0


class SubmititPool:
    """Workers as submitit jobs: on this machine (LocalExecutor) or a Slurm job array."""

    def __init__(
        self, executor: Any, jobs: Mapping[str, Sequence[str]], folder: Path, *, array: bool
    ) -> None:
        self.executor = executor
        self.planned = jobs  # worker -> the devices it runs on
        self.folder = folder
        self.array = array  # one Slurm job array, else one job per worker
        self.jobs: dict[str, Any] = {}

    def start(self) -> None:
        """Submit every worker (one array for Slurm)."""
        names = list(self.planned)
        folders = [str(self.folder)] * len(names)
        devices = [self.planned[name] for name in names]
        if self.array:
            submitted = self.executor.map_array(run_job, folders, names, devices)
        else:
            submitted = []
            for name, folder, job_devices in zip(names, folders, devices, strict=True):
                gpus = [int(d.partition(":")[2] or 0) for d in job_devices if d.startswith("cuda")]
                self.executor.update_parameters(gpus_per_node=len(gpus), visible_gpus=gpus)
                local = tuple("cuda" if d.startswith("cuda") else d for d in job_devices)
                submitted.append(self.executor.submit(run_job, folder, name, local))
        self.jobs = dict(zip(names, submitted, strict=True))

    def states(self) -> list[WorkerState]:
        """Each job: running until done; a job whose function raised (or was killed) failed."""
        found = []
        for name, job in self.jobs.items():
            if not job.done():
                found.append(WorkerState(name, True))
                continue
            failure = None
            try:
                exception = job.exception()
            except Exception as error:  # submitit: the job died without a result
                exception = error
            if exception is not None:
                failure = " ".join(str(exception).split())[-300:]
            found.append(WorkerState(name, False, failure))
        return found

    def stop(self) -> None:
        """Cancel every job (scancel on Slurm)."""
        for job in self.jobs.values():
            job.cancel(check=False)


def local_executor(folder: Path) -> Any:
    """submitit's LocalExecutor writing into ``<run>/submitit``."""
    import submitit

    executor = submitit.LocalExecutor(folder=folder / SUBMITIT_DIR)
    executor.update_parameters(timeout_min=_NO_LIMIT_MIN)
    return executor


def slurm_executor(folder: Path, options: SlurmOptions, jobs: int) -> Any:
    """submitit's SlurmExecutor for a ``jobs``-task array with the ``slurm:`` options."""
    import submitit

    executor = submitit.SlurmExecutor(folder=folder / SUBMITIT_DIR)
    parameters: dict[str, Any] = {
        "job_name": f"saeval-{folder.name}",
        "time": options.time_min,
        "gpus_per_node": options.gpus_per_job or None,
        "array_parallelism": jobs,
    }
    optional = {
        "partition": options.partition,
        "account": options.account,
        "qos": options.qos,
        "cpus_per_task": options.cpus_per_job,
        "mem": None if options.mem_gb is None else f"{options.mem_gb:g}GB",
        "setup": list(options.setup) or None,
    }
    parameters |= {key: value for key, value in optional.items() if value is not None}
    executor.update_parameters(**parameters)
    return executor


def make_pool(
    executor: str, folder: Path, devices: Sequence[str], slurm: SlurmOptions, pending: int
) -> Pool:
    """The pool of one run: ``devices`` for local executors, ``slurm.jobs`` array tasks
    (never more than ``pending`` units) for Slurm."""
    if executor == "local":
        return LocalPool(folder, devices)
    if executor == "submitit-local":
        one_each = {f"w{i}": (device,) for i, device in enumerate(devices)}
        return SubmititPool(_submitit(local_executor, folder), one_each, folder, array=False)
    if executor == "slurm":
        jobs = max(1, min(slurm.jobs, pending))
        gpus = tuple(f"cuda:{i}" for i in range(slurm.gpus_per_job)) or ("cpu",)
        planned = {f"job{i}": gpus for i in range(jobs)}
        array = _submitit(slurm_executor, folder, slurm, jobs)
        return SubmititPool(array, planned, folder, array=True)
    raise UsageError(f"unknown executor {executor!r}", hint="use local, submitit-local or slurm")


def _submitit(factory: Any, *args: Any) -> Any:
    """An executor from ``factory``; UsageError naming the extra when submitit is missing, and
    when Slurm's ``srun`` is not on this machine."""
    try:
        return factory(*args)
    except ImportError:
        raise UsageError(
            "--executor submitit-local and slurm need submitit",
            hint="pip install 'saeval[slurm]'",
        ) from None
    except RuntimeError as error:
        raise UsageError(
            f"cannot submit to Slurm here: {error}",
            hint="run saeval on a machine of the cluster (a login node), or use --executor local",
        ) from None
