"""The suite runs apart from the user's machine state (tests/conftest.py): the saeval and
`datasets` caches are folders of this run, and no terminal width leaks into output."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import invoke

from saeval.cli import console
from saeval.demo.paths import cache_root


def test_the_saeval_cache_is_not_the_users() -> None:
    home_cache = Path.home() / ".cache" / "saeval"
    assert cache_root() != home_cache and not cache_root().is_relative_to(home_cache)


def test_the_datasets_cache_is_not_the_users() -> None:
    from datasets import config

    assert not Path(config.HF_DATASETS_CACHE).is_relative_to(Path.home() / ".cache")
    assert Path(config.HF_DATASETS_CACHE).parent == cache_root().parent


def test_output_width_is_what_a_test_asks_for_and_nothing_else() -> None:
    assert "COLUMNS" not in os.environ
    before = console.out.width, console.err.width
    assert before == (console.PIPED_WIDTH, console.PIPED_WIDTH)
    narrow = invoke("--help", columns=60)
    assert narrow.exit_code == 0, narrow.output
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 60
    assert (console.out.width, console.err.width) == before  # restored after the call
