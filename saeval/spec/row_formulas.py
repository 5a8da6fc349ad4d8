"""What each row computes, in the formula's words, and where a dialect's author computed
something else than saeval's default (one note each, shown by ``saeval validate``).

``h`` is the activation at the hook point, ``f_i`` the SAE encoder's latent ``i``, ``W_dec[i]``
its decoder row as sae_lens loads it (a sparsify coder's ``W_dec`` row), ``c`` the coefficient
times ``--scale``, ``enc``/``dec`` the whole SAE.
"""

from __future__ import annotations

from collections.abc import Sequence

from saeval.spec.dialects import Action
from saeval.spec.positions import ALL, phrase
from saeval.spec.steer_rows import AnyRow, SteerRow, VectorRow

_SAE_FORMULAS = {
    Action.ADD: "h += c·W_dec[i]",
    Action.CLAMP: "h += (c - f_i(h))·W_dec[i]",
    Action.ABLATE: "h -= f_i(h)·W_dec[i]",
    Action.CLAMP_ACTIVE: "h += (c - f_i(h))·W_dec[i] where f_i(h) > {t}",
    Action.ADD_THROUGH_SAE: "h += dec(enc(h + c·W_dec[i])) - dec(enc(h))",
    Action.PROJECT: "h += (c - (h - b_dec)·u)·u, u = W_dec[i]/|W_dec[i]|",
}
_VECTOR_FORMULAS = {
    Action.ADD: "h += c·v",
    Action.PROJECT: "h += (c - (h - b)·u)·u, u = v/|v|",
}
FORK_ADD = (
    "the fork added c·W_dec[i] to its SAE's input, so its model saw "
    "h + dec(enc(h + c·W_dec[i])) - dec(enc(h)); saeval's add is h += c·W_dec[i]; for the "
    "fork's numbers write the row in the seed dialect with action=add_through_sae"
)
FORK_CLAMP_COND = (
    "clamp_cond is the fork's main branch (set this latent where it exceeds clamp_value); its "
    "DontMergeIntoEleuther branch set the hard-coded latent 15864 there instead"
)
LM_EVAL_ADD = (
    "lm-eval's own steered model cannot run CSV add rows (it sets bias = b_dec, then asserts "
    "there is none); saeval adds c·W_dec[i], what lm-eval's add means"
)
LM_EVAL_SHARED_HOOKPOINT = (
    "lm-eval keeps only the last row of each hookpoint; saeval applies every row"
)


def formula(row: AnyRow) -> str:
    """What ``row`` does to ``h``, in the formula's words (``h += c·W_dec[i]``), and where
    when its positions mode is not ``all`` (``... at generated positions``)."""
    where = "" if row.positions in (None, ALL) else f" {phrase(row.positions)}"
    if isinstance(row, VectorRow):
        text = _VECTOR_FORMULAS[row.action]
        if row.entry is None:
            text = text.replace("(h - b)", "h")  # a vector file has no bias
        head = "" if row.head_index is None else f" on head {row.head_index}'s slice"
        return f"{text}{head}{where}"
    t = "0" if row.threshold is None else f"{row.threshold:g}"
    return _SAE_FORMULAS[row.action].format(t=t) + where


def notes(rows: Sequence[AnyRow]) -> list[tuple[str, ...]]:
    """Per row, where the dialect's author computed something else than saeval does."""
    hooked: dict[tuple[str, str], int] = {}
    for row in rows:
        if isinstance(row, SteerRow) and row.dialect == "lm-eval":
            key = (row.file, row.hook or f"{row.sae_release} {row.sae_id}")
            hooked[key] = hooked.get(key, 0) + 1
    found: list[tuple[str, ...]] = []
    for row in rows:
        found.append(() if isinstance(row, VectorRow) else tuple(_notes(row, hooked)))
    return found


def _notes(row: SteerRow, hooked: dict[tuple[str, str], int]) -> list[str]:
    """The notes of one SAE row."""
    if row.dialect == "fork":
        if row.action is Action.ADD:
            return [FORK_ADD]
        return [FORK_CLAMP_COND] if row.dialect_action == "clamp_cond" else []
    if row.dialect != "lm-eval":
        return []
    shared = hooked[(row.file, row.hook or f"{row.sae_release} {row.sae_id}")] > 1
    return [LM_EVAL_ADD] * (row.action is Action.ADD) + [LM_EVAL_SHARED_HOOKPOINT] * shared
