"""What a run records about the software and the loaded model: versions, revisions, command line.

These facts go into the run manifest and the baseline cache key; none of them changes while a
process runs.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saeval.records.run_record import ModelRecord

if TYPE_CHECKING:
    from saeval.steering.lm_eval_model import SteeredHFLM

PACKAGES = ("saeval", "lm_eval", "sae_lens", "transformers", "torch")


def software() -> dict[str, Any]:
    """Package versions, Python version, platform and git revision (manifest fields)."""
    return {
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_revision": git_revision(),
    }


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape the numbers."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision() -> str | None:
    """The commit checked out in the working directory, if it is a git checkout."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def command_line() -> str:
    """The command line of this process."""
    import shlex

    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


def model_facts(lm: SteeredHFLM, model_id: str, device: str, batch_size: str) -> ModelRecord:
    """Revision, loaded dtype and device name of the loaded model."""
    import torch

    name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else device
    return ModelRecord(
        id=model_id,
        revision=model_revision(lm, model_id),
        dtype=str(lm.model.dtype).removeprefix("torch."),
        device=device,
        device_name=name,
        batch_size=batch_size,
    )


def model_revision(lm: SteeredHFLM, model_id: str) -> str | None:
    """The hub commit of the loaded weights, or a fingerprint of a local model folder."""
    commit = getattr(lm.model.config, "_commit_hash", None)
    if commit:
        return str(commit)
    folder = Path(model_id)
    return folder_fingerprint(folder) if folder.is_dir() else None


def folder_fingerprint(folder: Path) -> str:
    """`local:<sha256>` of a local model or SAE folder, cheap even for GBs of weights.

    Every file's relative path, size and mtime, plus the full contents of the small text files
    (configs, tokenizers); weight files are not read, so rewriting one changes its mtime.
    """
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        if path.suffix in (".json", ".txt", ".model", ".jinja"):
            digest.update(path.read_bytes())
    return f"local:{digest.hexdigest()}"


def collect_env_once() -> None:
    """Make lm-eval collect torch's environment report once per process, not once per task.

    Every ``simple_evaluate`` call stores ``torch.utils.collect_env.get_pretty_env_info()`` in its
    results (about 1 s of subprocesses); it cannot change while this process runs.
    """
    import functools

    from torch.utils import collect_env

    if not hasattr(collect_env.get_pretty_env_info, "cache_info"):
        collect_env.get_pretty_env_info = functools.cache(collect_env.get_pretty_env_info)
