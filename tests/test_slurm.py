"""`--executor slurm`: the sbatch script submitit writes carries the partition, GPUs, time and
array size asked for (a fake sbatch on PATH records it; no cluster needed)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from saeval.errors import UsageError
from saeval.run.executors import make_pool
from saeval.spec.experiment import SlurmOptions


def _tool(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """srun and sbatch on PATH; sbatch copies the script it is given to ``submitted.sh``."""
    tools = tmp_path / "bin"
    tools.mkdir()
    copy = tmp_path / "submitted.sh"
    _tool(tools, "srun", "exit 0")
    _tool(tools, "sbatch", f'cp "$1" {copy}\necho "Submitted batch job 4242"')
    monkeypatch.setenv("PATH", f"{tools}:{Path('/usr/bin')}:{Path('/bin')}")
    return copy


def test_the_sbatch_script_carries_partition_gpus_time_and_array_size(
    fake_slurm: Path, tmp_path: Path
) -> None:
    run = tmp_path / "results" / "exp"
    run.mkdir(parents=True)
    options = SlurmOptions(
        partition="gpu", gpus_per_job=2, time_min=90, jobs=3, account="lab", mem_gb=64,
        setup=("module load cuda",),
    )  # fmt: skip
    pool = make_pool("slurm", run, ("cuda",), options, pending=10)
    pool.start()
    script = fake_slurm.read_text()
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --time=90",
        "#SBATCH --array=0-2%3",
        "#SBATCH --account=lab",
        "#SBATCH --mem=64GB",
        "#SBATCH --job-name=saeval-exp",
    ):
        assert line in script.splitlines(), script
    assert "module load cuda" in script and "submitit.core._submit" in script
    assert [job.job_id for job in pool.jobs.values()] == ["4242_0", "4242_1", "4242_2"]  # type: ignore[attr-defined]
    assert pool.planned == {f"job{i}": ("cuda:0", "cuda:1") for i in range(3)}  # type: ignore[attr-defined]


def test_the_array_is_never_larger_than_the_units_left(fake_slurm: Path, tmp_path: Path) -> None:
    pool = make_pool("slurm", tmp_path, ("cpu",), SlurmOptions(gpus_per_job=0, jobs=8), pending=2)
    pool.start()
    script = fake_slurm.read_text()
    assert "#SBATCH --array=0-1%2" in script and "--gpus-per-node" not in script
    assert pool.planned == {"job0": ("cpu",), "job1": ("cpu",)}  # type: ignore[attr-defined]


def test_without_slurm_on_the_machine_the_error_says_where_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError, match="cannot submit to Slurm here") as raised:
        make_pool("slurm", tmp_path, ("cuda",), SlurmOptions(), pending=4)
    assert "login node" in (raised.value.hint or "")
