"""One run folder: its manifest, configuration folders and completion records.

Every file is written to a temporary file in the same folder and moved into place with
``os.replace`` (``saeval.atomic``). A (configuration, task) counts as finished once its record
is in ``run.json``; files of an unfinished task are overwritten when ``--resume`` reruns it.
Names of folders and files come from ``saeval.run.layout``, formats from
``saeval.run.lm_eval_format`` and the manifest schema from ``saeval.run.manifest``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from saeval.analysis.results_io import read_json
from saeval.atomic import write_atomic
from saeval.errors import ResultsError
from saeval.run.layout import MANIFEST, results_file, samples_file, stamp
from saeval.run.lm_eval_format import TaskOutput, dump_json, merge_results
from saeval.run.manifest import (
    ConfigurationRecord,
    ErrorRecord,
    Manifest,
    Status,
    TaskRecord,
    now,
)


class RunStore:
    """One run folder: its manifest, configuration folders and completion records."""

    def __init__(self, folder: Path, manifest: Manifest) -> None:
        self.folder = folder
        self.manifest = manifest

    @classmethod
    def create(cls, folder: Path, manifest: Manifest) -> RunStore:
        """Make a new run folder and write its first manifest."""
        try:
            folder.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise ResultsError(
                f"{folder} already exists",
                hint="add --resume to continue it, or pick another --name",
            ) from None
        store = cls(folder, manifest)
        store.save()
        return store

    @classmethod
    def open(cls, folder: Path) -> RunStore:
        """Open an existing run folder (for --resume)."""
        path = folder / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ResultsError(f"{folder} is not a saeval run folder (no {MANIFEST})") from None
        except (OSError, json.JSONDecodeError) as error:
            raise ResultsError(f"{path}: cannot read the manifest ({error})") from None
        return cls(folder, Manifest.from_dict(data, path))

    def save(self) -> None:
        """Rewrite run.json atomically."""
        self.manifest.updated = now()
        text = json.dumps(self.manifest.to_dict(), indent=2) + "\n"
        write_atomic(self.folder / MANIFEST, text)

    def set_status(self, status: Status) -> None:
        """Record the run's status."""
        self.manifest.status = status.value
        self.save()

    def add_error(self, error: BaseException, where: tuple[str, str] | None, trace: str) -> None:
        """Record an error (with its traceback) against a (configuration, task)."""
        configuration, task = where or (None, None)
        self.manifest.errors.append(
            ErrorRecord(now(), configuration, task, type(error).__name__, str(error), trace)
        )
        self.save()

    def record(self, configuration: str, task: str) -> TaskRecord | None:
        """The completion record of (configuration, task), if it finished."""
        for record in self.manifest.completed:
            if record.configuration == configuration and record.task == task:
                return record
        return None

    def forget_missing(self) -> list[TaskRecord]:
        """Drop the records whose results or samples files are gone, so a resume reruns them."""
        missing = [record for record in self.manifest.completed if not self._on_disk(record)]
        if missing:
            self.manifest.completed = [r for r in self.manifest.completed if r not in missing]
            self.save()
        return missing

    def _on_disk(self, record: TaskRecord) -> bool:
        """Whether every file of a finished (configuration, task) is still there."""
        folder = self.folder / record.configuration
        return all((folder / name).is_file() for name in [record.results, *record.samples])

    def configuration_dir(self, configuration: str, scale: float | None) -> Path:
        """The configuration's folder (made, and registered in the manifest, on first use)."""
        if configuration not in self.manifest.configurations:
            self.manifest.configurations[configuration] = ConfigurationRecord(scale, stamp())
            self.save()
        path = self.folder / configuration
        path.mkdir(exist_ok=True)
        return path

    def save_task(
        self,
        configuration: str,
        task: str,
        output: TaskOutput,
        seconds: float,
        baseline_key: str | None = None,
        reused_from: str | None = None,
    ) -> TaskRecord:
        """Write a finished task's samples, merge its results, then record it in run.json."""
        folder = self.folder / configuration
        when = self.manifest.configurations[configuration].stamp
        names = []
        for subtask, text in output.samples.items():
            names.append(samples_file(subtask, when))
            write_atomic(folder / names[-1], text)
        results_name = results_file(when)
        merged = merge_results(self._results(folder / results_name), output.results)
        write_atomic(folder / results_name, dump_json(merged))
        record = TaskRecord(
            configuration,
            task,
            round(seconds, 3),
            now(),
            results_name,
            names,
            baseline_key,
            reused_from,
        )
        self.manifest.completed.append(record)
        self.save()
        return record

    @staticmethod
    def _results(path: Path) -> dict[str, Any]:
        """The configuration's results so far ({} before its first task)."""
        return read_json(path) if path.exists() else {}
