"""The three steer.csv dialects (seed, fork, lm-eval): their columns, and how each dialect's
actions map onto saeval's. What each dialect means, and why some of its actions are refused, is
told in ``saeval.spec.steer_file``; an action saeval cannot honour is refused with its reason,
never run with another meaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    """What a row does to its latent: add its decoder row, clamp it, or ablate it."""

    ADD = "add"
    CLAMP = "clamp"
    ABLATE = "ablate"


@dataclass(frozen=True)
class Dialect:
    """The columns of one steer.csv dialect and how its actions map onto saeval's."""

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
    optional=("description", "action", "hook"),
    latent="latent_idx",
    release="sae_release",
    action="action",
    hook="hook",
    actions={a.value: a for a in Action},
    refused={},
)
FORK = Dialect(
    name="fork",
    required=("latent_idx", "steering_coefficient", "sae_release", "sae_id"),
    optional=("hook_action", "clamp_value", "description"),
    latent="latent_idx",
    release="sae_release",
    action="hook_action",
    hook=None,
    actions={"add": Action.ADD},
    refused={
        "clamp": "the fork clamps only where the latent is already active, saeval clamps at "
        "every position; write the row in the seed dialect with action=clamp if that is meant",
        "clamp_cond": "the fork clamps the hard-coded latent 15864 wherever this latent "
        "exceeds clamp_value, a conditional clamp saeval does not have",
        "print": "the fork prints SAE activations there (a debugging aid, not steering); "
        "remove the row",
        "debug": "the fork stops in the pdb debugger there (not steering); remove the row",
    },
    clamp_note=" (clamp_value is only the threshold of the fork's clamp_cond)",
)
LM_EVAL = Dialect(
    name="lm-eval",
    required=("loader", "sparse_model", "feature_index", "steering_coefficient", "sae_id"),
    optional=("action", "hookpoint", "head_index", "description"),
    latent="feature_index",
    release="sparse_model",
    action="action",
    hook="hookpoint",
    actions={"add": Action.ADD},
    refused={
        "clamp": "lm-eval clamps the projection of h - b_dec on the decoder direction, saeval "
        "clamps the SAE latent; write the row in the seed dialect with action=clamp if that "
        "is meant",
    },
)
DIALECTS = (SEED, FORK, LM_EVAL)
DIALECT_NAMED = {dialect.name: dialect for dialect in DIALECTS}
