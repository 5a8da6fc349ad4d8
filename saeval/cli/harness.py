"""`saeval harness`: lm-eval's own command line with saeval's steered model registered."""

from __future__ import annotations

import sys

import typer

HELP = """Run lm-eval's own CLI with saeval's [bold]sae_steered[/] model registered.

Every argument goes to lm-eval unchanged (`saeval harness --help` shows lm-eval's options):

  saeval harness --model sae_steered --model_args pretrained=MODEL,steer_path=steer.csv --tasks T

The seed's names work too: `--model sae_steered_beta --model_args base_name=MODEL,csv_path=F`.
Add `scale=2` to --model_args to multiply every coefficient.
"""


def command(ctx: typer.Context) -> None:
    """Run lm-eval's own CLI with saeval's sae_steered model registered."""
    run_lm_eval(list(ctx.args))


def run_lm_eval(args: list[str]) -> None:
    """Call ``lm_eval``'s CLI entry point on ``args`` after registering saeval's model."""
    from lm_eval.__main__ import cli_evaluate

    import saeval.steering.lm_eval_model  # noqa: F401  (registers sae_steered and sae_steered_beta)

    saved = sys.argv
    sys.argv = ["saeval harness", *args]
    try:
        cli_evaluate()
    finally:
        sys.argv = saved


CONTEXT_SETTINGS = {
    "allow_extra_args": True,
    "ignore_unknown_options": True,
    "help_option_names": [],  # --help goes to lm-eval
}
