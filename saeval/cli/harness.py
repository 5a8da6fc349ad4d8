"""`saeval harness`: lm-eval's own command line with saeval's steered model registered.

lm-eval's own ``steered`` model loads ``.pt`` steer files with ``torch.load(weights_only=False)``,
which runs whatever code a pickle names. Inside ``saeval harness`` every ``torch.load`` is
weights-only (torch's ``TORCH_FORCE_WEIGHTS_ONLY_LOAD``, which overrides an explicit
``weights_only=False``): a file that needs code is refused with one line, never run.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from saeval.spec.pt_steer_file import unpickling_error

HELP = """Run lm-eval's own CLI with saeval's [bold]sae_steered[/] model registered.

Every argument goes to lm-eval unchanged (`saeval harness --help` shows lm-eval's options):

  saeval harness --model sae_steered --model_args pretrained=MODEL,steer_path=steer.csv --tasks T

The seed's names work too: `--model sae_steered_beta --model_args base_name=MODEL,csv_path=F`.
Add `scale=2` to --model_args to multiply every coefficient. Every `.pt` file is loaded with
`torch.load(weights_only=True)`, lm-eval's own `steered` model's too: a pickle that would run
code is refused.
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
        with weights_only_loads():
            cli_evaluate()
    except pickle.UnpicklingError as error:
        raise unpickling_error(_steer_path(args), error) from None
    finally:
        sys.argv = saved


@contextmanager
def weights_only_loads() -> Iterator[None]:
    """Every ``torch.load`` in this process is ``weights_only=True`` while inside."""
    force, allow = "TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
    saved = {name: os.environ.get(name) for name in (force, allow)}
    os.environ[force] = "1"
    os.environ.pop(allow, None)  # torch refuses both at once
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _steer_path(args: list[str]) -> str:
    """The steer file named in ``--model_args`` (``steer_path=`` or ``csv_path=``), for messages."""
    for arg in args:
        for pair in arg.split(","):
            name, _, value = pair.partition("=")
            if name.strip() in ("steer_path", "csv_path") and value:
                return value
    return "a .pt file lm-eval loaded"


CONTEXT_SETTINGS = {
    "allow_extra_args": True,
    "ignore_unknown_options": True,
    "help_option_names": [],  # --help goes to lm-eval
}
