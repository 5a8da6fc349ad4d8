"""The steer-file dialects (seed, fork, lm-eval, lm-eval's ``.pt``): their columns, and how each
dialect's actions map onto saeval's. What each dialect means is told in
``saeval.spec.steer_file``; what each action computes, in ``saeval.spec.row_formulas``. An action
saeval cannot honour is refused with its reason, never run with another meaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    """What a row does at its hook point (``saeval.spec.row_formulas`` gives each formula)."""

    ADD = "add"
    CLAMP = "clamp"
    ABLATE = "ablate"
    CLAMP_ACTIVE = "clamp_active"
    ADD_THROUGH_SAE = "add_through_sae"
    PROJECT = "project"


VECTOR_ACTIONS = (Action.ADD, Action.PROJECT)  # what a steering vector without an SAE can do
CLAMPS = (Action.CLAMP, Action.ABLATE, Action.CLAMP_ACTIVE)  # actions that set a latent's value


@dataclass(frozen=True)
class Dialect:
    """The columns of one steer-file dialect and how its actions map onto saeval's."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    latent: str  # the column holding the latent index
    release: str  # the column holding the SAE release
    action: str  # the column holding the action
    hook: str | None  # the column holding a hook override, if the dialect has one
    actions: Mapping[str, Action]
    refused: Mapping[str, str]  # actions of the dialect that saeval cannot honour -> why
    clamp_note: str = ""  # added to the message for a clamp row without a value

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the dialect knows."""
        return self.required + self.optional

    def column(self, field: str) -> str:
        """The column holding a SteerRow field; the field's own name where the dialect agrees."""
        renamed = {
            "latent_idx": self.latent,
            "sae_release": self.release,
            "action": self.action,
            "hook": self.hook,
            "coefficient": "steering_coefficient",
        }
        return renamed.get(field) or field

    def describe(self) -> str:
        """One line naming the dialect's columns, for messages."""
        required, optional = ",".join(self.required), ",".join(self.optional)
        return f"{self.name} columns: {required}, optional {optional}"


SEED = Dialect(
    name="seed",
    required=("latent_idx", "steering_coefficient", "sae_release", "sae_id"),
    optional=("description", "action", "hook", "threshold", "vector", "head_index", "positions"),
    latent="latent_idx",
    release="sae_release",
    action="action",
    hook="hook",
    actions={a.value: a for a in Action},
    refused={},
)
VECTOR_REQUIRED = ("steering_coefficient", "vector", "hook")  # a seed file of vector rows only
FORK = Dialect(
    name="fork",
    required=("latent_idx", "steering_coefficient", "sae_release", "sae_id"),
    optional=("hook_action", "clamp_value", "description", "positions"),
    latent="latent_idx",
    release="sae_release",
    action="hook_action",
    hook=None,
    # The fork's clamp sets the latent only where it is > 0 (clamp_original); clamp_cond, on its
    # main branch, only where it exceeds clamp_value: both are clamp_active.
    actions={"add": Action.ADD, "clamp": Action.CLAMP_ACTIVE, "clamp_cond": Action.CLAMP_ACTIVE},
    refused={
        "print": "the fork prints SAE activations there (a debugging aid, not steering); "
        "remove the row",
        "debug": "the fork stops in the pdb debugger there (not steering); remove the row",
    },
    clamp_note=" (the fork's clamp and clamp_cond set the latent to it)",
)
LM_EVAL = Dialect(
    name="lm-eval",
    required=("loader", "sparse_model", "feature_index", "steering_coefficient", "sae_id"),
    optional=("action", "hookpoint", "head_index", "description", "positions"),
    latent="feature_index",
    release="sparse_model",
    action="action",
    hook="hookpoint",
    # lm-eval's clamp sets the projection of h - b_dec on the unit decoder direction.
    actions={"add": Action.ADD, "clamp": Action.PROJECT},
    refused={},
)
LM_EVAL_PT = Dialect(
    name="lm-eval-pt",
    required=("steering_vector", "action"),
    optional=("steering_coefficient", "bias", "head_index"),
    latent="steering_vector",
    release="steering_vector",
    action="action",
    hook=None,
    actions={"add": Action.ADD, "clamp": Action.PROJECT},
    refused={},
)
LOADERS = ("sae_lens", "sparsify")  # lm-eval's loader column
DIALECTS = (SEED, FORK, LM_EVAL)  # the CSV dialects, told apart by their header
DIALECT_NAMED = {dialect.name: dialect for dialect in (*DIALECTS, LM_EVAL_PT)}
