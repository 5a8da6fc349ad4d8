"""The README's promises: its set-up commands exist, its CLI reference is what `--help` prints."""

from __future__ import annotations

import re
from pathlib import Path

from saeval.cli.reference import END, START, render_reference

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_cli_reference_matches_help() -> None:
    section = README[README.index(START) : README.index(END) + len(END)]
    assert section == render_reference(), "run `.venv/bin/python -m saeval.cli.reference`"


def test_setup_commands_are_the_makefile_targets_ci_uses() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert README.index("make demo") < README.index("## ")
    assert README.index("make test") < README.index("## ")
    for target in ("demo", "test", "bench"):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_steer_file_the_readme_names_exists() -> None:
    for name in set(re.findall(r"steers/[\w.-]+\.csv", README)):
        assert (ROOT / name).is_file(), name
