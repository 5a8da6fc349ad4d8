"""Generate the README's CLI reference from `--help`, so the documentation cannot drift.

`python -m saeval.cli.reference` rewrites the section of README.md between the two markers;
a test fails when the section differs from what the commands print.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

START = "<!-- cli-reference:start -->"
END = "<!-- cli-reference:end -->"
# `saeval harness --help` is lm-eval's own help (every argument goes to lm-eval's CLI).
COMMANDS = ("validate", "saes", "run", "compare", "demo", "latents")


def help_text(*args: str) -> str:
    """What `saeval ARGS --help` prints on a plain 100-column terminal."""
    env = {**os.environ, "TERMINAL_WIDTH": "100", "NO_COLOR": "1", "TERM": "dumb"}
    env.pop("FORCE_COLOR", None)
    result = subprocess.run(
        [sys.executable, "-m", "saeval", *args, "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return "\n".join(line.rstrip() for line in result.stdout.strip().splitlines())


def render_reference() -> str:
    """The whole reference section: `saeval --help`, then each command's help."""
    parts = [START, "", "```text", "$ saeval --help", help_text(), "```"]
    for command in COMMANDS:
        parts += ["", "```text", f"$ saeval {command} --help", help_text(command), "```"]
    return "\n".join([*parts, "", END])


def replace_section(readme: str, section: str) -> str:
    """README text with the reference section replaced by `section`."""
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    return head + section + tail


def main() -> None:
    """Rewrite README.md's CLI reference in place."""
    readme = Path("README.md")
    readme.write_text(replace_section(readme.read_text(), render_reference()))


if __name__ == "__main__":
    main()
