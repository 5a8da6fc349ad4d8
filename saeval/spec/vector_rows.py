"""Seed-dialect rows that name a steering vector file instead of an SAE latent.

``vector`` names a ``.safetensors`` (one tensor), ``.npy`` or ``.pt`` (one tensor, read with
``torch.load(weights_only=True)``) file holding a 1-D vector ``v``, as written by CAA, repeng or a
difference of means; a relative path is relative to the current folder, as a local SAE folder
is. ``hook`` is required (a vector has no SAE to say where it belongs); ``action`` is ``add``
(``h += c·v``) or ``project`` (``h += (c - h·u)·u``, ``u = v/|v|``); ``head_index`` applies either
to one head's slice of ``blocks.L.attn.hook_z``. ``latent_idx``, ``sae_release``, ``sae_id`` and
``threshold`` stay empty.
"""

from __future__ import annotations

from collections.abc import Mapping

from saeval.spec import cells
from saeval.spec.csv_records import Invalid, Problems
from saeval.spec.dialects import SEED, VECTOR_ACTIONS, Action
from saeval.spec.positions import positions_mode
from saeval.spec.steer_rows import VectorRow

VECTOR_SUFFIXES = (".safetensors", ".npy", ".pt", ".pth")
HOOK_Z = ".attn.hook_z"  # the hook kind whose activation holds every head's d_head slice


def vector_row(cells_of: Mapping[str, str], line: int, problems: Problems) -> VectorRow | None:
    """The vector row of one record, or None after recording its problems."""
    before = len(problems.items)
    vector = cells_of["vector"]
    if not vector.lower().endswith(VECTOR_SUFFIXES):
        problems.add(
            line,
            "vector",
            f"{vector!r} is not a vector file; expected {', '.join(VECTOR_SUFFIXES)}",
        )
    for column in ("latent_idx", "sae_release", "sae_id", "threshold"):
        if cells_of.get(column):
            problems.add(
                line,
                column,
                "a vector row steers along its vector file, not an SAE latent; leave "
                "latent_idx, sae_release, sae_id and threshold empty (or the vector empty)",
            )
    acting = problems.check(line, "action", _vector_action, cells_of.get("action", ""))
    coefficient = problems.check(
        line,
        "steering_coefficient",
        lambda t: cells.coefficient(t, acting, SEED),
        cells_of["steering_coefficient"],
    )
    head = problems.check(line, "head_index", cells.head_index, cells_of.get("head_index", ""))
    mode = problems.check(line, "positions", positions_mode, cells_of.get("positions", ""))
    hook = cells_of.get("hook", "")
    if not hook:
        problems.add(
            line, "hook", "empty; a vector row names its hook point, e.g. blocks.6.hook_resid_post"
        )
    elif head is not None and not hook.endswith(HOOK_Z):
        problems.add(line, "head_index", head_hook_message(hook))
    if len(problems.items) > before or acting is None or coefficient is None:
        return None
    return VectorRow(
        file=problems.file,
        line=line,
        vector=vector,
        hook=hook,
        coefficient=coefficient,
        action=acting,
        head_index=head,
        description=cells_of.get("description", ""),
        positions=mode,
    )


def _vector_action(text: str) -> Action:
    """add or project: the other actions need an SAE's encoder."""
    acting = cells.action(text, SEED)
    if acting not in VECTOR_ACTIONS:
        raise Invalid(
            f"{text!r} needs an SAE encoder, which a vector file does not have; valid for a "
            "vector: add, project"
        )
    return acting


def head_hook_message(hook: str) -> str:
    """Why a head index cannot apply at ``hook``."""
    return (
        f"one head's slice needs per-head activations, which {hook!r} does not have; give the "
        "hook as blocks.L.attn.hook_z (the heads' flattened outputs) or leave head_index empty"
    )
