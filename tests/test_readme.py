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


def test_the_module_map_names_every_module() -> None:
    """README's Architecture section names every module of the package under its layer."""
    section = README[README.index("## Architecture\n") : README.index("## Development\n")]
    layers = {part.split("/`", 1)[0]: part for part in section.split("- `saeval/")[1:]}
    missing = []
    for path in sorted((ROOT / "saeval").rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        layer = path.parent.name
        if layer == "saeval":
            named = f"`saeval/{path.name}`" in section
        else:
            named = f"`{path.stem}`" in layers.get(layer, "")
        if not named:
            missing.append(str(path.relative_to(ROOT)))
    assert missing == []
