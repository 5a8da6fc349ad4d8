"""The run folder `saeval run` writes into: a new one, or the one ``--resume`` continues.

A run's ``spec`` holds every option that determines its numbers; a resumed run must match it.
Local SAE folders enter it by fingerprint (``sae_folders``), so a resume after their
``cfg.json`` or weights changed is refused instead of mixing two SAEs in one run; so do the
vector files that steer rows name (``vector_files``, by sha256).

The store returned holds the run folder's lock (``saeval.run.lock``): a second process that
starts or resumes the same run is refused before it writes anything. ``--output`` that is a
file, or a folder that cannot be written, is one error before any model is loaded.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saeval.errors import ResultsError, UsageError
from saeval.records.run_record import Manifest, ModelRecord, RunStatus, SteerFileRecord, spec_sha256
from saeval.run.data_parallel import current
from saeval.run.environment import command_line, folder_fingerprint, software
from saeval.run.store import RunStore
from saeval.spec.options import EvalOptions, recorded

if TYPE_CHECKING:
    from saeval.run.config import RunConfig
    from saeval.spec.sae_facts import ResolvedSae
    from saeval.spec.steer_file import SteerFile
    from saeval.spec.tasks import TaskSet


def open_run_folder(
    config: RunConfig,
    steer: Sequence[SteerFile],
    saes: list[ResolvedSae],
    model_id: str,
    device: str,
    tasks: TaskSet,
) -> RunStore:
    """A new run folder, or the one --resume continues (its spec must match)."""
    spec = _spec(config, steer, model_id, device, tasks) | _sae_folders(saes)
    spec |= _vector_files(steer)
    digest = spec_sha256(spec)
    check_output(config.output, create=not config.resume)
    if config.resume:
        store = RunStore.open(_resume_folder(config, digest), lock=True)
        try:
            _check_same_spec(store, spec)
        except BaseException:
            store.close()
            raise
        store.manifest.command = command_line()
        return store
    manifest = Manifest(
        name="",
        spec=spec,
        spec_sha256=digest,
        command=command_line(),
        steer_files=[_steer_file_record(f) for f in steer],
        saes=[sae.to_dict() for sae in saes],
        model=ModelRecord(id=model_id, dtype=config.dtype, device=device),
        tasks=[asdict(spec) for spec in tasks.specs],
        scales=list(config.scales),
        **_option_fields(spec),
        **software(),
    )
    folder = config.output / (config.name or _default_name(config, steer))
    manifest.name = folder.name
    return RunStore.create(folder, manifest)


def check_output(output: Path, *, create: bool) -> None:
    """ResultsError unless ``output`` is (or, with ``create``, can be made) a writable folder."""
    if output.exists() and not output.is_dir():
        raise ResultsError(
            f"--output {output} is a file, not a folder",
            hint="--output names the folder that holds the run folders (made if missing)",
        )
    if not create and not output.exists():
        return  # --resume: nothing to continue there (said by _resume_folder)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ResultsError(
            f"--output {output}: cannot create the folder ({error.strerror or error})",
            hint="pick a folder you can write in",
        ) from None
    if not os.access(output, os.W_OK | os.X_OK):
        raise ResultsError(
            f"--output {output} is not writable (read-only file system or no permission)",
            hint="pick a folder you can write in",
        )


def _spec(
    config: RunConfig, steer: Sequence[SteerFile], model_id: str, device: str, tasks: TaskSet
) -> dict[str, Any]:
    """Everything that determines a run's numbers (a resumed run must match it)."""
    return {
        "steer_sha256": [file.sha256 for file in steer],
        "model": model_id,
        "device_kind": device.partition(":")[0],
        "tasks": list(config.tasks),
        "task_sha256": [spec.config_sha256 for spec in tasks.specs],
        "include_path": [str(Path(p).resolve()) for p in config.include_path],
        "scales": list(config.scales),
        "no_baseline": config.no_baseline,
        **recorded(config),  # every declared evaluation option (saeval.spec.options)
        **({"positions": config.positions} if config.positions != "all" else {}),
        **({"data_parallel": ranks} if (ranks := current().world_size) > 1 else {}),
    }


def _option_fields(spec: dict[str, Any]) -> dict[str, Any]:
    """The manifest's own fields that repeat an evaluation option of the spec (limit, seeds,
    ...), for readers of run.json that look there."""
    options = recorded(EvalOptions())
    return {item.name: spec[item.name] for item in fields(Manifest) if item.name in options}


def _steer_file_record(steer: SteerFile) -> SteerFileRecord:
    """What run.json keeps of one steer file, with each row's positions mode."""
    from saeval.spec.steer_rows import mode_of

    positions = [mode_of(row) for row in steer.rows]
    return SteerFileRecord(str(steer.path), steer.sha256, steer.dialect, steer.text, positions)


def _sae_folders(saes: list[ResolvedSae]) -> dict[str, Any]:
    """``{"sae_folders": {path: fingerprint}}`` for local SAEs ({} without: old spec)."""
    folders = sorted({str(Path(sae.path).resolve()) for sae in saes if sae.kind == "local"})
    if not folders:
        return {}
    return {"sae_folders": {folder: folder_fingerprint(Path(folder)) for folder in folders}}


def _vector_files(steer: Sequence[SteerFile]) -> dict[str, Any]:
    """``{"vector_files": {path: sha256}}`` for the vector files rows name ({} without)."""
    import hashlib

    from saeval.spec.steer_file import VectorRow

    paths = {
        str(Path(row.vector).resolve())
        for steer_file in steer
        for row in steer_file.rows
        if isinstance(row, VectorRow) and row.entry is None  # a .pt file's own hash is in spec
    }
    if not paths:
        return {}
    return {
        "vector_files": {
            path: hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in sorted(paths)
        }
    }


def _resume_folder(config: RunConfig, digest: str) -> Path:
    """The run --resume continues: --name, else the newest unfinished run with the same spec."""
    if config.name:
        return config.output / config.name
    candidates = []
    for manifest in config.output.glob("*/run.json"):
        with contextlib.suppress(OSError, ValueError, ResultsError):
            store = RunStore.open(manifest.parent)
            if store.manifest.spec_sha256 == digest and store.manifest.status != RunStatus.COMPLETE:
                candidates.append((store.manifest.updated, manifest.parent))
    if not candidates:
        raise ResultsError(
            f"no unfinished run of this command in {config.output}",
            hint="name the run with --name, or drop --resume to start a new one",
        )
    return max(candidates)[1]


def _check_same_spec(store: RunStore, spec: dict[str, Any]) -> None:
    """ResultsError for another model's run; UsageError naming every other option that differs."""
    before = store.manifest.spec
    if before.get("model") != spec["model"]:
        raise ResultsError(
            f"{store.folder} is a run of {before.get('model')}, not {spec['model']}",
            hint=f"resume it with --model {before.get('model')}, or drop --resume to start a "
            "new run",
        )
    changed = sorted(key for key in set(before) | set(spec) if before.get(key) != spec.get(key))
    if changed:
        details = "; ".join(f"{key}: {before.get(key)!r} -> {spec.get(key)!r}" for key in changed)
        raise UsageError(
            f"{store.folder} was run with other options ({details})",
            hint="resume with the same options, or start a new run without --resume",
        )


def _default_name(config: RunConfig, steer: Sequence[SteerFile]) -> str:
    """``<steer file stem>-<YYYYmmdd-HHMMSS>``, with a counter if that folder exists."""
    base = f"{steer[0].path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    for counter in itertools.count(1):
        name = base if counter == 1 else f"{base}-{counter}"
        if not (config.output / name).exists():
            return name
    raise AssertionError("unreachable")
