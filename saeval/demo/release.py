"""The demo SAE as a catalog release: registered into ``saeval.spec.catalog`` by ``saeval``."""

from __future__ import annotations

from pathlib import Path

from saeval.demo import paths
from saeval.demo.sae import D_SAE
from saeval.spec.catalog import register_release
from saeval.spec.sae_facts import BuiltinSae, Release, SaeFacts


def _folder() -> Path:
    """The demo SAE's folder, built on first use (needs the demo model)."""
    from saeval.demo.sae import demo_sae_dir

    return demo_sae_dir()


def demo_release() -> Release:
    """The ``saeval-demo`` release: one SAE, built on first load, not at lookup."""
    facts = SaeFacts(
        d_sae=D_SAE,
        hook_name=paths.DEMO_HOOK_NAME,
        model_name=paths.DEMO_MODEL_ID,
        source="saeval built-in demo SAE",
    )
    return Release(
        name=paths.DEMO_RELEASE,
        repo_id="",
        model=paths.DEMO_MODEL_ID,
        conversion_func=None,
        saes_map={paths.DEMO_SAE_ID: ""},
        builtin={paths.DEMO_SAE_ID: BuiltinSae(facts=facts, folder=_folder)},
    )


def register() -> None:
    """Make the demo release known to every catalog lookup."""
    register_release(demo_release())
