"""Experiment files: every key read and checked where it is written, and `saeval validate
EXPERIMENT.yaml` on the tiny bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import invoke
from experiment_builders import write_experiment, write_steer_files
from sae_builders import GEN_TASK, MC_TASK

from saeval.errors import SteerFileError
from saeval.spec.csv_records import Invalid
from saeval.spec.experiment import SlurmOptions, read_experiment, with_overrides
from saeval.spec.placement import parse_devices, slurm_minutes

FULL = """\
model: google/gemma-2-2b
tasks:
  target: [wmdp_bio]
  capability: mmlu_high_school_us_history, mmlu_college_computer_science
limit: 200
num_fewshot: 0
batch_size: auto
dtype: bfloat16
seed: 7
scales: [0.5, 1, 2]
margin: 0.03
alpha: 0.01
metric: {target: acc_norm}
target_direction: decrease
interventions:
  dogs: steers/dog.csv
  bio_unlearn: {steer: [steers/bio.csv, steers/dog.csv], scales: [1, 2, 4]}
controls:
  random: 3
devices: cuda:0-3
executor: slurm
slurm: {partition: gpu, gpus_per_job: 2, time: "2:00:00", jobs: 8, setup: [module load cuda]}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "steers").mkdir()
    for name in ("dog.csv", "bio.csv"):
        (tmp_path / "steers" / name).write_text("latent_idx\n")
    return tmp_path


def test_every_key_is_read(folder: Path) -> None:
    (folder / "exp.yaml").write_text(FULL)
    experiment = read_experiment(folder / "exp.yaml")
    assert experiment.model == "google/gemma-2-2b"
    assert experiment.target == ("wmdp_bio",)
    assert experiment.capability == (
        "mmlu_high_school_us_history",
        "mmlu_college_computer_science",
    )
    options = experiment.options
    assert (options.limit, options.num_fewshot, options.batch_size) == (200, 0, "auto")
    assert (options.dtype, options.seed) == ("bfloat16", 7)
    dogs, bio = experiment.interventions
    assert dogs.steer == (folder / "steers" / "dog.csv",) and dogs.scales == (0.5, 1.0, 2.0)
    assert bio.steer == (folder / "steers" / "bio.csv", folder / "steers" / "dog.csv")
    assert bio.scales == (1.0, 2.0, 4.0) and bio.line == 17
    assert experiment.steer_files == (folder / "steers/dog.csv", folder / "steers/bio.csv")
    assert (experiment.margin, experiment.alpha) == (0.03, 0.01)
    assert (experiment.target_metric, experiment.capability_metric) == ("acc_norm", "acc")
    assert experiment.target_direction == "decrease" and experiment.random_controls == 3
    assert experiment.devices == ("cuda:0", "cuda:1", "cuda:2", "cuda:3")
    assert experiment.executor == "slurm"
    assert experiment.slurm == SlurmOptions(
        partition="gpu", gpus_per_job=2, time_min=120, jobs=8, setup=("module load cuda",)
    )


def test_a_plain_task_list_makes_every_task_a_capability_task(folder: Path) -> None:
    (folder / "exp.yaml").write_text("tasks: [a, b]\ninterventions: {dogs: steers/dog.csv}\n")
    experiment = read_experiment(folder / "exp.yaml")
    assert (experiment.target, experiment.capability) == ((), ("a", "b"))
    assert experiment.interventions[0].scales == (1.0,) and experiment.devices == ()
    (folder / "two.yaml").write_text(
        "tasks: [a]\ninterventions: {dogs: steers/dog.csv}\ndevices: cpu,cpu\nmodel: steers\n"
    )
    two = read_experiment(folder / "two.yaml")
    assert two.devices == ("cpu", "cpu")  # two CPU workers, not one
    assert two.model == str(folder / "steers")  # a folder next to the YAML is a local model


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("tasks: [a]\n", "exp.yaml interventions: missing; every experiment file needs it"),
        ("tasks: [a]\nlimit: 0\ninterventions: {d: steers/dog.csv}\n", "exp.yaml:2 limit: "),
        ("tasks: [a]\nscales: [1, .nan]\ninterventions: {d: steers/dog.csv}\n", ":2 scales: "),
        ("tasks: [a]\nscales: [1, 1]\ninterventions: {d: steers/dog.csv}\n", "listed twice"),
        ("tasks: [a]\ninterventions: {d: steers/no.csv}\n", ":2 interventions.d: steer file"),
        ("tasks: [a]\ninterventions: {base line: steers/dog.csv}\n", "interventions.base line"),
        ("tasks: [a]\ninterventions: {baseline: steers/dog.csv}\n", "'baseline' is reserved"),
        ("tasks: [a]\ninterventions:\n  d: {steer: steers/dog.csv, scale: 2}\n", "valid: scales"),
        ("tasks: {target: [a], capability: [a]}\ninterventions: {d: steers/dog.csv}\n", "both"),
        ("tasks: {target: [a], other: [b]}\ninterventions: {d: steers/dog.csv}\n", "tasks.other"),
        ("tasks: [a]\ncontrols: {random: -1}\ninterventions: {d: steers/dog.csv}\n", "random"),
        ("tasks: [a]\ndevices: gpu0\ninterventions: {d: steers/dog.csv}\n", "unknown device"),
        ("tasks: [a]\ndevices: [cuda:1, cuda:0-1]\ninterventions: {d: steers/dog.csv}\n", "twice"),
        ("tasks: [a]\nexecutor: k8s\ninterventions: {d: steers/dog.csv}\n", "unknown executor"),
        ("tasks: [a]\nslurm: {time: soon}\ninterventions: {d: steers/dog.csv}\n", "slurm.time"),
        ("tasks: [a]\nbatch: 8\ninterventions: {d: steers/dog.csv}\n", ":2 batch: unknown key"),
        ("tasks: [a]\ntasks: [b]\ninterventions: {d: steers/dog.csv}\n", ":2 tasks: given twice"),
        ("tasks: [a\ninterventions: {d: steers/dog.csv}\n", "not valid YAML"),
        ("", "exp.yaml:1: the file is empty"),
    ],
)
def test_each_problem_names_the_file_line_and_key(folder: Path, text: str, problem: str) -> None:
    (folder / "exp.yaml").write_text(text)
    with pytest.raises(SteerFileError) as raised:
        read_experiment(folder / "exp.yaml")
    assert any(problem in found for found in raised.value.problems), raised.value.problems
    assert all(found.startswith(str(folder / "exp.yaml")) for found in raised.value.problems)


def test_every_problem_is_reported_at_once(folder: Path) -> None:
    (folder / "exp.yaml").write_text("tasks: [a]\nlimit: -2\ndtype: f8\ninterventions: {}\n")
    with pytest.raises(SteerFileError) as raised:
        read_experiment(folder / "exp.yaml")
    assert [problem.split(": ")[0].split(" ")[-1] for problem in raised.value.problems] == [
        "limit",
        "dtype",
        "interventions",
    ]


def test_command_line_options_replace_the_files_keys(folder: Path) -> None:
    (folder / "exp.yaml").write_text(FULL)
    experiment = with_overrides(
        read_experiment(folder / "exp.yaml"),
        limit=3,
        devices=("cpu", "cpu"),
        executor=None,
        slurm_partition="debug",
        slurm_time_min=5,
    )
    assert experiment.options.limit == 3 and experiment.options.seed == 7
    assert experiment.devices == ("cpu", "cpu") and experiment.executor == "slurm"
    assert (experiment.slurm.partition, experiment.slurm.time_min, experiment.slurm.jobs) == (
        "debug",
        5,
        8,
    )


def test_devices_and_slurm_times_parse_as_their_tools_do() -> None:
    assert parse_devices("cuda:0-2,cpu") == ("cuda:0", "cuda:1", "cuda:2", "cpu")
    assert parse_devices(["cpu", "cpu"]) == ("cpu", "cpu")
    assert [slurm_minutes(t) for t in (90, "90", "90:30", "1:30:00", "2-1", "1-0:0:1")] == [
        90,
        90,
        91,
        90,
        49 * 60,
        24 * 60 + 1,
    ]
    with pytest.raises(Invalid, match="runs backwards"):
        parse_devices("cuda:3-1")


def test_validate_an_experiment_checks_its_steer_files_and_tasks(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    path = write_experiment(tmp_path, tiny_bundle)
    result = invoke("validate", str(path))
    assert result.exit_code == 0, result.output
    assert "intervention adds" in result.stdout and "intervention clamps" in result.stdout
    assert (
        "2 interventions x 2 strengths + 1 random control each; 1 target + 1 capability tasks: "
        "1 baseline + 8 configurations, 18 evaluations; valid"
    ) in " ".join(result.stdout.split())
    data = json.loads(invoke("validate", str(path), "-f", "json").stdout)
    assert data["schema"] == "saeval.experiment-check/1" and data["ok"]
    assert data["experiment"]["target"] == [MC_TASK] and set(data["interventions"]) == {
        "adds",
        "clamps",
    }


def test_validate_an_experiment_lists_every_problem(tiny_bundle: Path, tmp_path: Path) -> None:
    write_steer_files(tmp_path, tiny_bundle)
    (tmp_path / "steers" / "bad.csv").write_text(
        f"latent_idx,steering_coefficient,sae_release,sae_id\n999,1,{tiny_bundle / 'sae'},\n"
    )
    path = write_experiment(
        tmp_path,
        tiny_bundle,
        tasks=[GEN_TASK, "no_such_task"],
        interventions={"adds": "steers/adds.csv", "bad": "steers/bad.csv"},
    )
    result = invoke("validate", str(path))
    assert result.exit_code == 1
    assert "bad.csv:2 latent_idx" in result.stderr
    assert f"{path} tasks: " in result.stderr and "no_such_task" in result.stderr
    assert "error: 2 problems in" in result.stderr
    again = invoke("validate", str(path), str(path))
    assert again.exit_code == 2 and "one experiment file alone" in again.stderr
