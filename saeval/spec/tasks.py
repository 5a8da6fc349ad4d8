"""Check lm-eval task names before any model is loaded, and fingerprint what each task runs.

lm-eval's ``TaskManager`` indexes every built-in task YAML (6-8 s); with ``--include-path`` and
names that all live there, only that folder is indexed (near 0 s). The fingerprint of a task
(its resolved YAML, those of its subtasks, the local data files they read and the Python files
their ``!function`` tags import) is part of the baseline cache key: edit a task, its data or its
``utils.py`` and the cached baseline no longer matches.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saeval.errors import TaskError

if TYPE_CHECKING:
    from lm_eval.tasks import TaskManager

_HINT = "list the available tasks with `lm_eval ls tasks`; local task YAMLs need --include-path DIR"


@dataclass(frozen=True)
class TaskSpec:
    """One requested task, group or tag, as lm-eval's index knows it."""

    name: str
    kind: str  # "task" | "group" | "tag"
    version: str | None  # the YAML's metadata.version
    config_sha256: str  # resolved YAML(s) of the task and its subtasks + local data files
    yaml_path: str | None


@dataclass(frozen=True)
class TaskSet:
    """Validated tasks plus the TaskManager that knows them (reused for every evaluation)."""

    specs: tuple[TaskSpec, ...]
    manager: TaskManager

    @property
    def names(self) -> list[str]:
        """The task names in the order requested."""
        return [spec.name for spec in self.specs]


def split_task_names(tasks: str | Sequence[str]) -> list[str]:
    """``"a,b"`` or ``["a", "b,c"]`` -> unique non-empty names in order."""
    parts = [tasks] if isinstance(tasks, str) else list(tasks)
    names = [name.strip() for part in parts for name in part.split(",")]
    return list(dict.fromkeys(name for name in names if name))


def validate_tasks(names: Sequence[str], include_path: Sequence[Path] = ()) -> TaskSet:
    """Check every name against lm-eval's task index; raise TaskError with close matches."""
    if not names:
        raise TaskError("no tasks given", hint="pass --tasks NAME[,NAME...]")
    for folder in include_path:
        if not Path(folder).is_dir():
            raise TaskError(f"--include-path {folder} is not a folder")
    manager = _manager(names, include_path)
    index = manager.task_index
    unknown = [name for name in names if name not in index]
    if unknown:
        raise TaskError(_unknown_message(unknown, manager.all_tasks), hint=_HINT)
    return TaskSet(tuple(_spec(name, index) for name in names), manager)


def _manager(names: Sequence[str], include_path: Sequence[Path]) -> TaskManager:
    """The include-path-only index when it closes over every name, else the full one."""
    from lm_eval.tasks import TaskManager

    paths = [str(Path(p).resolve()) for p in include_path]
    if paths:
        local = TaskManager(include_path=paths, include_defaults=False)
        if all(_closed(name, local.task_index) for name in names):
            return local
    return TaskManager(include_path=paths or None)


def _closed(name: str, index: Mapping[str, Any]) -> bool:
    """True when ``name`` and everything it refers to are in ``index``."""
    if name not in index:
        return False
    return all(child in index for child, _ in _walk(name, index))


def _unknown_message(unknown: Sequence[str], known: Sequence[str]) -> str:
    """``unknown task 'x' (did you mean a, b?)`` for each unknown name."""
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        suggestion = f" (did you mean {', '.join(close)}?)" if close else ""
        parts.append(f"'{name}'{suggestion}")
    noun = "task" if len(unknown) == 1 else "tasks"
    return f"unknown {noun} {'; '.join(parts)}"


def _spec(name: str, index: Mapping[str, Any]) -> TaskSpec:
    """The TaskSpec of a name known to ``index``."""
    entry = index[name]
    cfg = entry.cfg or {}
    version = (cfg.get("metadata") or {}).get("version")
    return TaskSpec(
        name=name,
        kind=_kind(entry),
        version=None if version is None else str(version),
        config_sha256=_fingerprint(name, index),
        yaml_path=None if entry.yaml_path is None else str(entry.yaml_path),
    )


def _kind(entry: Any) -> str:
    """lm-eval's index kind as a word."""
    from lm_eval.tasks._index import Kind

    return {Kind.GROUP: "group", Kind.TAG: "tag"}.get(entry.kind, "task")


def _walk(name: str, index: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """Every (name, entry) that ``name`` refers to, depth first, each once (unknown -> None)."""
    seen: set[str] = set()
    stack = [name]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        entry = index.get(current)
        yield current, entry
        if entry is not None:
            stack.extend(_children(entry))


def _children(entry: Any) -> list[str]:
    """Names a group lists (strings, or the ``task`` of inline dicts) or a tag's members."""
    kind = _kind(entry)
    if kind == "tag":
        return sorted(entry.tags)
    listed = (entry.cfg or {}).get("task") if kind == "group" else None
    items = listed if isinstance(listed, list) else []
    names = [item.get("task") if isinstance(item, dict) else item for item in items]
    return [name for name in names if isinstance(name, str)]


def _fingerprint(name: str, index: Mapping[str, Any]) -> str:
    """sha256 over the resolved configs of ``name`` and its subtasks and their local data."""
    digest = hashlib.sha256()
    for child, entry in sorted(_walk(name, index), key=lambda pair: pair[0]):
        cfg = None if entry is None else entry.cfg
        digest.update(json.dumps([child, cfg], sort_keys=True, default=str).encode())
        for local_file in _local_data_files(cfg or {}) + _function_files(cfg or {}):
            digest.update(local_file.encode())
            digest.update(_file_sha256(Path(local_file)).encode())
    return digest.hexdigest()


def _local_data_files(cfg: Mapping[str, Any]) -> list[str]:
    """The ``dataset_kwargs.data_files`` (and a file ``dataset_path``) that exist on disk."""
    kwargs = cfg.get("dataset_kwargs") or {}
    found = [
        cfg.get("dataset_path"),
        kwargs.get("data_files") if isinstance(kwargs, dict) else None,
    ]
    return sorted(item for item in _strings(found) if Path(item).is_file())


def _function_files(cfg: Mapping[str, Any]) -> list[str]:
    """The local Python files the config's ``!function`` tags import.

    lm-eval's index keeps ``!function utils.process_docs`` unresolved, as the string
    ``<YAML folder>/utils.process_docs``; its module file is ``<YAML folder>/utils.py``.
    """
    modules = {_function_module(item) for item in _strings(cfg)}
    return sorted(str(module) for module in modules if module is not None)


def _function_module(value: str) -> Path | None:
    """``/dir/pkg.utils.fn`` -> ``/dir/pkg/utils.py`` when that file exists, else None."""
    head, dot, _ = value.rpartition(".")
    path = Path(head)
    if not dot or not path.is_absolute():
        return None
    module = path.parent / f"{path.name.replace('.', '/')}.py"
    return module if module.is_file() else None


def _strings(value: Any) -> Iterator[str]:
    """Every string inside nested dicts and lists."""
    found = [value]
    while found:
        item = found.pop()
        if isinstance(item, dict):
            found.extend(item.values())
        elif isinstance(item, list):
            found.extend(item)
        elif isinstance(item, str):
            yield item


def _file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
