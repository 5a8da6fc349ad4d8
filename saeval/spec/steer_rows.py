"""The records a steer file is read into: ``SteerRow`` (one SAE latent), ``VectorRow`` (a
steering vector from a file, no SAE), and ``SteerFile`` (the rows plus what a manifest records).
``saeval.spec.steer_file`` reads them from CSV, ``saeval.spec.pt_steer_file`` from lm-eval's
``.pt`` files.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from saeval.spec.csv_records import location
from saeval.spec.dialects import DIALECT_NAMED, Action

SaeKey = tuple[str, str]  # (sae_release, sae_id); a sparsify coder: (sparse_model, hookpoint)


@dataclass(frozen=True)
class SteerRow:
    """One steering instruction: what to do to one latent of one SAE."""

    file: str  # the path as the user gave it (for messages)
    line: int  # 1-based physical line number where the row starts
    latent_idx: int  # >= 0
    coefficient: float  # add: multiple of W_dec[latent_idx]; clamp: target value; ablate: 0.0
    sae_release: str  # sae_lens release, Hugging Face repo id, or local SAE directory
    sae_id: str  # may be "" for a local directory
    action: Action = Action.ADD
    hook: str | None = None  # TransformerLens hook name; lm-eval dialect: HF module name
    description: str = ""
    dialect: str = "seed"  # "seed" | "fork" | "lm-eval"
    threshold: float | None = None  # clamp_active: moves only where f_i(h) > threshold (None: 0)
    loader: str = "sae_lens"  # "sae_lens", or "sparsify" (lm-eval dialect: EleutherAI's coders)
    dialect_action: str = ""  # the dialect's name for the action where it differs ("clamp")
    positions: str | None = None  # a mode of saeval.spec.positions; None: the run's default

    def where(self, column: str | None = None) -> str:
        """Where this row is, for messages: ``steers/dog.csv:3 latent_idx``."""
        return location(self.file, self.line, column)

    def column(self, field: str) -> str:
        """The column of this row's dialect that holds ``field`` (lm-eval: ``feature_index``)."""
        return DIALECT_NAMED[self.dialect].column(field)

    @property
    def sae_key(self) -> SaeKey:
        """Which SAE the row steers: a sparsify coder lives in its hookpoint's folder."""
        if self.loader == "sparsify":
            return (self.sae_release, self.hook or "")
        return (self.sae_release, self.sae_id)

    @property
    def written_action(self) -> str:
        """The action as the steer file names it (the fork's ``clamp`` is ``clamp_active``)."""
        return self.dialect_action or self.action.value


@dataclass(frozen=True)
class VectorRow:
    """A steering vector from a file (CAA, repeng, difference of means, lm-eval's ``.pt``),
    added (``add``) or projected onto (``project``) at one hook point, without an SAE."""

    file: str
    line: int  # the CSV line; 0 for an entry of a .pt file (``entry`` locates it)
    vector: str  # the vector file as written; for a .pt steer file, that file
    hook: str
    coefficient: float
    action: Action = Action.ADD  # add or project
    head_index: int | None = None  # only this attention head's d_head slice of attn.hook_z
    entry: str | None = None  # the .pt steer file's key holding the vector (lm-eval's hookpoint)
    description: str = ""
    dialect: str = "seed"  # "seed" | "lm-eval-pt"
    dialect_action: str = ""  # the dialect's name for the action where it differs ("clamp")
    positions: str | None = None  # a mode of saeval.spec.positions; None: the run's default

    def where(self, column: str | None = None) -> str:
        """``steer.csv:3 vector``, or ``steer.pt[layers.3] bias`` for an entry of a .pt file."""
        if self.entry is None:
            return location(self.file, self.line, column)
        place = f"{self.file}[{self.entry}]"
        return place if column is None else f"{place} {column}"

    def column(self, field: str) -> str:
        """The column (or .pt key) holding ``field``; the SAE's columns name the vector."""
        if self.dialect == "seed" and field in ("latent_idx", "sae_release", "sae_id"):
            return "vector"
        return DIALECT_NAMED[self.dialect].column(field)

    @property
    def written_action(self) -> str:
        """The action as the steer file names it (lm-eval's ``clamp`` is ``project``)."""
        return self.dialect_action or self.action.value


AnyRow = SteerRow | VectorRow


def with_default_positions(steer: SteerFile, mode: str) -> SteerFile:
    """``steer`` with ``mode`` in every row whose positions cell is empty."""
    rows = tuple(row if row.positions else replace(row, positions=mode) for row in steer.rows)
    return replace(steer, rows=rows)


def mode_of(row: AnyRow) -> str:
    """The positions mode ``row`` steers at (``all`` where neither row nor run chose one)."""
    return row.positions or "all"


@dataclass(frozen=True)
class SteerFile:
    """A checked steer file: its rows plus the text and hash a run manifest records."""

    path: Path
    text: str  # the CSV text; for a .pt file, one line per entry describing it
    sha256: str
    dialect: str
    rows: tuple[AnyRow, ...]
