"""Names and locations of the embedded demo (model, SAE, tasks); no heavy imports."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

DEMO_MODEL_ID = "google/gemma-3-270m"
DEMO_LAYER = 6
DEMO_HOOK_NAME = f"blocks.{DEMO_LAYER}.hook_resid_post"
DEMO_RELEASE = "saeval-demo"
DEMO_SAE_ID = f"gemma-3-270m/{DEMO_HOOK_NAME}"
INSTALL_HINT = "pip install 'saeval[demo]'"

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"
TASKS_SOURCE_DIR = PACKAGE_DIR / "tasks"


def cache_root() -> Path:
    """The folder holding saeval's demo assets: `$SAEVAL_CACHE` or `~/.cache/saeval`."""
    configured = os.environ.get("SAEVAL_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "saeval"


def publish_dir(target: Path, build: Callable[[Path], None], *, keep_existing: bool) -> Path:
    """Build a folder in a temporary sibling and move it into place as `target` in one rename.

    Readers see the old folder or the new one, never a half-written one. If `target` exists
    once the build is done (a concurrent build won), `keep_existing` keeps it; otherwise it is
    moved aside and deleted.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-new-", dir=target.parent))
    old = target.parent / f".{target.name}-old-{staging.name.rsplit('-', 1)[-1]}"
    try:
        build(staging)
        staging.chmod(0o755)
        if target.exists():
            if keep_existing:
                return target
            target.rename(old)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return target
