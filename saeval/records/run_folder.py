"""Every name in a run folder, written and parsed here only (standard library imports only).

(``saeval.records.experiment_folder`` adds an experiment run's names.)

Layout of one run::

    <output>/<run-name>/run.json               the manifest (``saeval.records.run_record``)
    <output>/<run-name>/baseline/              lm-eval's own files, unchanged format:
        results_<stamp>.json                   every finished task of this configuration
        samples_<task>_<stamp>.jsonl           per-document records, one file per (sub)task
    <output>/<run-name>/steered/               the same for the steered model (`--scale 1`)
    <output>/<run-name>/steered@<scale>/       one folder per strength when `--scale` is not just 1
    <output>/<run-name>/comparison.{md,csv,json}
    <output>/<run-name>/.lock                  the pid of the process writing the run
    <output>/.cache/baselines/<key>/           one cached baseline task (``run.baseline_cache``):
        key.json, results.json                 its key's inputs and checksums; lm-eval's results
        samples_<task>.jsonl                   its samples, one file per (sub)task

Each configuration folder is what ``lm_eval --output_path OUT --log_samples`` writes for a
multi-task run (one results file, samples sharing its time stamp), so lm-eval's own tools read it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

MANIFEST = "run.json"
BASELINE = "baseline"
STEERED = "steered"
COMPARISON = "comparison"  # comparison.md, comparison.csv, comparison.json
LOCK_FILE = ".lock"
CACHE_DIR = ".cache/baselines"
CACHE_KEY_FILE = "key.json"
CACHE_RESULTS_FILE = "results.json"  # a cached task's samples: samples_file(task, "")
_CONFIGURATION = re.compile(r"^steered(?:@(?P<scale>[-+0-9.eE]+))?$")


def name_problem(name: str) -> str | None:
    """Why ``name`` is not one plain file or folder name (None when it is one)."""
    if name in ("", ".", ".."):
        return "is empty" if not name else f"is {name!r}"
    if "/" in name or "\\" in name:
        return "is a path, not one name (it contains / or \\)"
    if any(unicodedata.category(char) == "Cc" for char in name):
        return "contains a control character"
    return None


def stamp() -> str:
    """A time stamp for lm-eval file names (EvaluationTracker's: ISO with ':' replaced)."""
    return datetime.now().isoformat().replace(":", "-")


def results_file(stamp: str) -> str:
    """The results file name of a configuration: ``results_<stamp>.json``."""
    return f"results_{stamp}.json"


def samples_file(task: str, stamp: str) -> str:
    """The samples file name of a task: ``samples_<task>_<stamp>.jsonl`` (no stamp: none)."""
    return f"samples_{task}_{stamp}.jsonl" if stamp else f"samples_{task}.jsonl"


def file_stamp(file: Path) -> str:
    """lm-eval's time stamp of a results or samples file name ('' if it has none)."""
    stem = file.name.removesuffix(".jsonl").removesuffix(".json")
    return stem[stem.rfind("_") + 1 :] if "_" in stem else ""


def side_effects_file(task: str, stamp: str) -> str:
    """A task's KL and generation-quality file: ``side_effects_<task>_<stamp>.json``."""
    return f"side_effects_{task}_{stamp}.json"


def configuration_name(scale: float | None, scales: Iterable[float]) -> str:
    """``baseline`` (scale None), ``steered`` when the only scale is 1, else ``steered@<scale>``."""
    if scale is None:
        return BASELINE
    return STEERED if tuple(scales) == (1.0,) else f"{STEERED}@{str(scale).removesuffix('.0')}"


def configuration_scale(name: str) -> float | None:
    """The steering scale a configuration folder name encodes: `steered` is 1, `steered@2` is 2."""
    match = _CONFIGURATION.match(name)
    if match is None:
        return None
    try:
        return float(match["scale"]) if match["scale"] else 1.0
    except ValueError:
        return None


def is_configuration(name: str) -> bool:
    """Whether a folder name is a configuration's: baseline, steered or steered@<scale>."""
    return name == BASELINE or configuration_scale(name) is not None


def run_configurations(path: Path) -> dict[str, Path]:
    """The configuration folders (`baseline`, `steered`, `steered@<scale>`) of a run folder."""
    if not path.is_dir():
        return {}
    return {
        child.name: child
        for child in sorted(path.iterdir())
        if child.is_dir() and is_configuration(child.name)
    }


def is_run_folder(path: Path) -> bool:
    """Whether `path` is a saeval run folder (it holds configuration folders)."""
    return bool(run_configurations(path))
