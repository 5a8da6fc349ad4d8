"""Steer files the reader must reject, with where and what the first problem says.

Data only: tests/test_steer_file.py runs these through read_steer_file, the CLI tests through
`saeval validate`. `line` and `column` locate the first problem (`file:line column: ...`);
`column` is None for a problem of the whole line or file.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BadCase:
    """One invalid steer file and the first problem reported for it."""

    name: str
    content: bytes
    line: int
    column: str | None
    fragment: str


SEED_HEADER = b"latent_idx,steering_coefficient,sae_release,sae_id,description\n"
RELEASE = b"gemma-scope-2b-pt-res-canonical,layer_20/width_16k/canonical"
FORK_HEADER = b"hook_action,latent_idx,steering_coefficient,sae_release,sae_id,clamp_value\n"
LM_EVAL_HEADER = b"loader,action,sparse_model,hookpoint,feature_index,steering_coefficient,sae_id\n"
LM_EVAL_MODEL = b"gemma-scope-2b-pt-res-canonical"
SAE_ID = b"layer_20/width_16k/canonical"


def seed_row(latent: bytes, coefficient: bytes, tail: bytes = b"dogs") -> bytes:
    """A seed-dialect row on the Gemma Scope layer-20 SAE."""
    return latent + b"," + coefficient + b"," + RELEASE + b"," + tail + b"\n"


def with_action(latent: bytes, coefficient: bytes, action: bytes) -> bytes:
    """A seed file with an `action` column and one row."""
    header = b"latent_idx,steering_coefficient,sae_release,sae_id,action\n"
    return header + latent + b"," + coefficient + b"," + RELEASE + b"," + action + b"\n"


def lm_eval_row(loader: bytes = b"sae_lens", hookpoint: bytes = b"layers.20") -> bytes:
    """An lm-eval-dialect file with one add row."""
    row = b",".join([loader, b"add", LM_EVAL_MODEL, hookpoint, b"12082", b"240.0", SAE_ID])
    return LM_EVAL_HEADER + row + b"\n"


def fork_row(action: bytes) -> bytes:
    """A fork-dialect file with one row of the given hook_action."""
    return FORK_HEADER + action + b",12082,240.0," + RELEASE + b",0.5\n"


DOG = seed_row(b"12082", b" 240.0")

BAD_CASES: list[BadCase] = [
    BadCase("empty file", b"", 1, None, "empty"),
    BadCase("only comments", b"# nothing here\n\n", 1, None, "empty"),
    BadCase("header only", SEED_HEADER, 1, None, "no rows"),
    BadCase("binary", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 3, None, "binary"),
    BadCase("utf-16", "latent_idx\n".encode("utf-16"), 1, None, "UTF-16"),
    BadCase("latin-1", SEED_HEADER + seed_row(b"1", b"2", b"caf\xe9"), 2, None, "not UTF-8"),
    BadCase("semicolons", SEED_HEADER.replace(b",", b";") + DOG, 1, None, "';'-separated"),
    BadCase("tabs", SEED_HEADER.replace(b",", b"\t") + DOG, 1, None, "tab-separated"),
    BadCase(
        "missing column",
        b"latent_idx,steering_coefficient,sae_id,description\n12082, 240.0,x,dogs\n",
        1,
        "sae_release",
        "missing column",
    ),
    BadCase(
        "misspelt column",
        SEED_HEADER.replace(b"description", b"descripton") + DOG,
        1,
        "descripton",
        "did you mean 'description'",
    ),
    BadCase("unknown header", b"index,coefficient\n1,2\n", 1, None, "matches no steer.csv"),
    BadCase(
        "mixed dialects",
        b"hook_action,loader,latent_idx\nadd,sae_lens,1\n",
        1,
        None,
        "mixes",
    ),
    BadCase(
        "duplicate column",
        b"latent_idx,latent_idx,steering_coefficient,sae_release,sae_id\n1,1,2,r,i\n",
        1,
        "latent_idx",
        "appears twice",
    ),
    BadCase("too many fields", SEED_HEADER + DOG.rstrip() + b",extra\n", 2, None, "6 fields"),
    BadCase("too few fields", SEED_HEADER + b"12082,240.0," + RELEASE + b"\n", 2, None, "4 fields"),
    BadCase("latent not a number", SEED_HEADER + seed_row(b"dog", b"1"), 2, "latent_idx", "whole"),
    BadCase(
        "latent with decimal point",
        SEED_HEADER + seed_row(b"12082.0", b"1"),
        2,
        "latent_idx",
        "decimal point",
    ),
    BadCase("negative latent", SEED_HEADER + seed_row(b"-3", b"1"), 2, "latent_idx", "negative"),
    BadCase("empty latent", SEED_HEADER + seed_row(b"", b"1"), 2, "latent_idx", "empty"),
    BadCase(
        "coefficient not a number",
        SEED_HEADER + seed_row(b"1", b"lots"),
        2,
        "steering_coefficient",
        "not a number",
    ),
    BadCase(
        "NaN coefficient",
        SEED_HEADER + seed_row(b"1", b"nan"),
        2,
        "steering_coefficient",
        "not finite",
    ),
    BadCase(
        "infinite coefficient",
        SEED_HEADER + seed_row(b"1", b"-inf"),
        2,
        "steering_coefficient",
        "not finite",
    ),
    BadCase(
        "empty add coefficient",
        SEED_HEADER + seed_row(b"1", b""),
        2,
        "steering_coefficient",
        "an add row needs",
    ),
    BadCase("unknown action", with_action(b"1", b"2", b"boost"), 2, "action", "unknown action"),
    BadCase(
        "clamp without value",
        with_action(b"1", b"", b"clamp"),
        2,
        "steering_coefficient",
        "a clamp row needs",
    ),
    BadCase(
        "ablate with coefficient",
        with_action(b"1", b"5", b"ablate"),
        2,
        "steering_coefficient",
        "ablate sets the latent to 0",
    ),
    BadCase(
        "empty release",
        SEED_HEADER + b"1,2,,layer_20/width_16k/canonical,dogs\n",
        2,
        "sae_release",
        "empty",
    ),
    BadCase(
        "duplicate latent",
        SEED_HEADER + DOG + seed_row(b"12082", b"10"),
        3,
        "latent_idx",
        "already added on line 2",
    ),
    BadCase(
        "clamped twice",
        with_action(b"7", b"5", b"clamp") + b"7,," + RELEASE + b",ablate\n",
        3,
        "latent_idx",
        "already clamped on line 2",
    ),
    BadCase(
        "unterminated quote",
        SEED_HEADER + DOG + seed_row(b"5", b"1", b'"never closed'),
        3,
        None,
        "never closed",
    ),
    BadCase(
        "line numbers count comments and CRLF",
        b"# comment\r\n" + SEED_HEADER.replace(b"\n", b"\r\n") + b"\r\n" + seed_row(b"x", b"1"),
        4,
        "latent_idx",
        "not a whole number",
    ),
    BadCase("unknown loader", lm_eval_row(loader=b"transformers"), 2, "loader", "'transformers'"),
    BadCase(
        "sparsify without hookpoint",
        lm_eval_row(loader=b"sparsify", hookpoint=b""),
        2,
        "hookpoint",
        "folder named by its hookpoint",
    ),
    BadCase(
        "TransformerLens hookpoint in lm-eval",
        lm_eval_row(hookpoint=b"blocks.20.hook_resid_post"),
        2,
        "hookpoint",
        "Hugging Face module name",
    ),
    BadCase(
        "lm-eval head_index",
        LM_EVAL_HEADER.replace(b"\n", b",head_index\n")
        + lm_eval_row()[len(LM_EVAL_HEADER) :].rstrip()
        + b",3\n",
        2,
        "head_index",
        "not supported",
    ),
    BadCase(
        "lm-eval without loader",
        b"action,sparse_model,feature_index,steering_coefficient,sae_id\nadd,m,1,2.0,i\n",
        1,
        "loader",
        "missing column",
    ),
    BadCase("fork print", fork_row(b"print"), 2, "hook_action", "'print' is not supported"),
    BadCase("fork debug", fork_row(b"debug"), 2, "hook_action", "'debug' is not supported"),
    BadCase(
        "fork clamp_cond without clamp_value",
        fork_row(b"clamp_cond").replace(b",0.5\n", b",\n"),
        2,
        "clamp_value",
        "exceeds clamp_value",
    ),
    BadCase(
        "fork ablate",
        fork_row(b"ablate"),
        2,
        "hook_action",
        "unknown action 'ablate'; valid: add",
    ),
    BadCase(
        "fork clamp without value",
        fork_row(b"clamp").replace(b",240.0,", b",,"),
        2,
        "steering_coefficient",
        "the fork's clamp and clamp_cond set the latent to it",
    ),
    BadCase(
        "lm-eval clamp without value",
        LM_EVAL_HEADER + b"sae_lens,clamp," + LM_EVAL_MODEL + b",,12082,," + SAE_ID + b"\n",
        2,
        "steering_coefficient",
        "a project row needs",
    ),
    BadCase(
        "threshold on a clamp row",
        b"latent_idx,steering_coefficient,sae_release,sae_id,action,threshold\n"
        b"1,5," + RELEASE + b",clamp,0.5\n",
        2,
        "threshold",
        "clamp_active rows only",
    ),
    BadCase(
        "vector row without hook",
        b"vector,hook,steering_coefficient,action\ncaa.safetensors,,4,add\n",
        2,
        "hook",
        "a vector row names its hook point",
    ),
    BadCase(
        "vector row clamped",
        b"vector,hook,steering_coefficient,action\ncaa.npy,blocks.6.hook_resid_post,4,clamp\n",
        2,
        "action",
        "needs an SAE encoder",
    ),
    BadCase(
        "vector row with a latent",
        b"vector,hook,steering_coefficient,latent_idx\ncaa.npy,blocks.6.hook_resid_post,4,7\n",
        2,
        "latent_idx",
        "not an SAE latent",
    ),
    BadCase(
        "head_index off hook_z",
        b"vector,hook,steering_coefficient,head_index\ncaa.npy,blocks.6.hook_resid_post,4,1\n",
        2,
        "head_index",
        "blocks.L.attn.hook_z",
    ),
]
