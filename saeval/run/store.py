"""One run folder: its manifest, configuration folders and completion records.

Every file is written to a temporary file in the same folder and moved into place with
``os.replace`` (``saeval.atomic``). A (configuration, task) counts as finished once its record
is in ``run.json``; files of an unfinished task are overwritten when ``--resume`` reruns it.
Names of folders and files come from ``saeval.records.run_folder``, formats from
``saeval.run.lm_eval_format`` and the manifest schema from ``saeval.records.run_record``. Each
results, samples and side-effects file's sha256 goes into run.json as it is written
(``saeval.records.checksums``); ``--resume`` reruns what no longer matches it.

A store that writes holds the folder's lock (``saeval.run.lock``) until ``close``. Every name
``run.json`` gives (configuration folders, their time stamps, results and samples files) must be
one plain name inside the run folder: a manifest pointing elsewhere is refused when it is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from saeval.atomic import write_atomic
from saeval.errors import ResultsError
from saeval.records.checksums import MISSING, file_problem, relative_name, sha256_of
from saeval.records.json_file import json_text, read_results_json
from saeval.records.run_folder import (
    MANIFEST,
    name_problem,
    results_file,
    samples_file,
    side_effects_file,
    stamp,
)
from saeval.records.run_record import (
    ConfigurationRecord,
    ErrorRecord,
    Manifest,
    RunStatus,
    TaskRecord,
    now,
    read_manifest,
)
from saeval.run.lm_eval_format import TaskOutput, dump_json, merge_results
from saeval.run.lock import RunLock


class RunStore:
    """One run folder: its manifest, configuration folders and completion records."""

    def __init__(self, folder: Path, manifest: Manifest, lock: RunLock | None = None) -> None:
        self.folder = folder
        self.manifest = manifest
        self.lock = lock

    @classmethod
    def create(cls, folder: Path, manifest: Manifest) -> RunStore:
        """Make a new run folder, lock it and write its first manifest."""
        try:
            folder.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise ResultsError(
                f"{folder} already exists",
                hint="add --resume to continue it, or pick another --name",
            ) from None
        except OSError as error:
            raise ResultsError(f"cannot create {folder} ({error.strerror or error})") from None
        store = cls(folder, manifest, RunLock.acquire(folder))
        try:
            store.save()
        except OSError as error:
            store.close()
            raise ResultsError(
                f"cannot write {folder / MANIFEST} ({error.strerror or error})"
            ) from None
        return store

    @classmethod
    def open(cls, folder: Path, *, lock: bool = False) -> RunStore:
        """Open an existing run folder; ``lock`` (for --resume) locks it before reading."""
        path = folder / MANIFEST
        if not path.is_file():
            raise ResultsError(f"{folder} is not a saeval run folder (no {MANIFEST})")
        held = RunLock.acquire(folder) if lock else None
        try:
            manifest = read_manifest(folder)
            _check_names(folder, manifest, path)
        except BaseException:
            if held is not None:
                held.release()
            raise
        return cls(folder, manifest, held)

    def close(self) -> None:
        """Release the folder's lock (when this store holds it)."""
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save(self) -> None:
        """Rewrite run.json atomically."""
        self.manifest.updated = now()
        write_atomic(self.folder / MANIFEST, json_text(self.manifest.to_dict()))

    def set_status(self, status: RunStatus) -> None:
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

    def record_end(
        self,
        status: RunStatus,
        error: BaseException | None = None,
        where: tuple[str, str] | None = None,
        trace: str = "",
    ) -> str | None:
        """Record how a run stopped (and the error that stopped it) without raising OSError.

        Returns why run.json could not be written (a full disk, say), else None, so that the
        error that stopped the run still reaches the user as one line.
        """
        try:
            if error is not None:
                self.add_error(error, where, trace)
            self.set_status(status)
        except OSError as failure:
            return f"{self.folder / MANIFEST} could not be updated ({failure.strerror or failure})"
        return None

    def record(self, configuration: str, task: str) -> TaskRecord | None:
        """The completion record of (configuration, task), if it finished."""
        for record in self.manifest.completed:
            if record.configuration == configuration and record.task == task:
                return record
        return None

    def forget_damaged(self) -> list[str]:
        """Drop the records whose files are missing or fail their sha256, so a resume reruns
        them; returns what to tell the user (``files missing, running again: steered/mmlu``).
        A damaged results file is removed with every record of its configuration (it holds
        all of that configuration's tasks)."""
        self._settle_replaced()
        dropped: dict[int, str] = {}  # index in completed -> the problem
        for index, record in enumerate(self.manifest.completed):
            problem = None if index in dropped else self._damage(record)
            if problem is None:
                continue
            dropped[index] = problem
            if problem.startswith(record.results):
                self._drop_results(record.configuration, record.results)
                for other, kept in enumerate(self.manifest.completed):
                    if kept.configuration == record.configuration and other not in dropped:
                        dropped[other] = problem
        records = self.manifest.completed
        if dropped:
            self.manifest.completed = [r for i, r in enumerate(records) if i not in dropped]
            self.save()
        missing = [i for i, problem in dropped.items() if problem.endswith(MISSING)]
        notes = []
        if missing:
            rerun = ", ".join(f"{records[i].configuration}/{records[i].task}" for i in missing)
            notes.append(f"files missing, running again: {rerun}")
        damaged = [
            f"{records[i].configuration}/{records[i].task} ({problem})"
            for i, problem in dropped.items()
            if i not in missing
        ]
        if damaged:
            notes.append(f"files damaged, running again: {'; '.join(damaged)}")
        return notes

    def _damage(self, record: TaskRecord) -> str | None:
        """Why a finished (configuration, task) cannot be kept: its results file first."""
        folder = self.folder / record.configuration
        for name in [record.results, *record.samples, *record.side_effects]:
            expected = self.manifest.file_sha256.get(relative_name(record.configuration, name))
            if expected is not None:
                problem = file_problem(folder / name, expected)
            else:  # recorded by an older saeval: only its presence can be checked
                problem = None if (folder / name).is_file() else MISSING
            if problem is not None:
                return f"{name} {problem}"
        return None

    def _drop_results(self, configuration: str, name: str) -> None:
        """Remove a damaged results file, so the configuration's tasks start it anew."""
        (self.folder / configuration / name).unlink(missing_ok=True)
        self.manifest.file_sha256.pop(relative_name(configuration, name), None)

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
        side_effects: Mapping[str, str] | None = None,
    ) -> TaskRecord:
        """Write a finished task's samples (and side-effect files: (sub)task -> JSON text),
        merge its results, then record it in run.json."""
        folder = self.folder / configuration
        when = self.manifest.configurations[configuration].stamp
        names = [samples_file(subtask, when) for subtask in output.samples]
        extra = [side_effects_file(subtask, when) for subtask in side_effects or {}]
        texts = [*output.samples.values(), *(side_effects or {}).values()]
        for name, text in zip([*names, *extra], texts, strict=True):
            self._write(configuration, name, text)
        results_name = results_file(when)
        merged = merge_results(self._results(folder / results_name), output.results)
        self._replace(configuration, results_name, dump_json(merged))
        record = TaskRecord(
            configuration,
            task,
            round(seconds, 3),
            now(),
            results_name,
            names,
            baseline_key,
            reused_from,
            extra,
        )
        self.manifest.completed.append(record)
        self.save()
        return record

    def _write(self, configuration: str, name: str, text: str) -> None:
        """Write one file of a configuration atomically and note its sha256 for run.json."""
        data = text.encode("utf-8")
        write_atomic(self.folder / configuration / name, data)
        self.manifest.file_sha256[relative_name(configuration, name)] = sha256_of(data)

    def _replace(self, configuration: str, name: str, text: str) -> None:
        """Rewrite a file that finished tasks already rely on (a configuration's results): run.json
        first names both its old and its new sha256, so a kill between the two writes leaves a
        file that still verifies; the old one is forgotten once the new file is in place."""
        key = relative_name(configuration, name)
        data = text.encode("utf-8")
        old = self.manifest.file_sha256.get(key)
        if old is not None:
            self.manifest.file_sha256_replaced[key] = old
        self.manifest.file_sha256[key] = sha256_of(data)
        self.save()
        write_atomic(self.folder / configuration / name, data)
        self.manifest.file_sha256_replaced.pop(key, None)

    def _settle_replaced(self) -> None:
        """After a kill inside ``_replace``: a results file holding its old content is that
        content's (its sha256 becomes the recorded one again)."""
        for key, old in self.manifest.file_sha256_replaced.items():
            if file_problem(self.folder / key, old) is None:
                self.manifest.file_sha256[key] = old
        self.manifest.file_sha256_replaced.clear()

    @staticmethod
    def _results(path: Path) -> dict[str, Any]:
        """The configuration's results so far ({} before its first task)."""
        return read_results_json(path) if path.exists() else {}


def _check_names(folder: Path, manifest: Manifest, path: Path) -> None:
    """ResultsError naming the first run.json entry that is not a plain name inside ``folder``."""
    entries: list[tuple[str, str, str]] = []  # (entry, configuration folder, name)
    for name, configuration in manifest.configurations.items():
        entries.append((f"configurations[{name!r}]", "", name))
        entries.append((f"configurations[{name!r}].stamp", name, results_file(configuration.stamp)))
    for index, record in enumerate(manifest.completed):
        entry = f"completed[{index}]"
        entries.append((f"{entry}.configuration", "", record.configuration))
        entries.append((f"{entry}.results", record.configuration, record.results))
        for number, samples in enumerate(record.samples):
            entries.append((f"{entry}.samples[{number}]", record.configuration, samples))
        for number, extra in enumerate(record.side_effects):
            entries.append((f"{entry}.side_effects[{number}]", record.configuration, extra))
    root = folder.resolve()
    for entry, parent, name in entries:
        problem = name_problem(name)  # a record's configuration is checked before its files
        if problem is None and not (root / parent / name).resolve().is_relative_to(root):
            problem = "resolves outside the run folder"
        if problem is not None:
            raise ResultsError(
                f"{path}: {entry} {name!r} {problem}; run.json may only name files in {folder}",
                hint="this manifest was edited or damaged: start a new run without --resume",
            )
