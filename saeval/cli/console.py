"""The two Rich consoles every command shares: results to stdout, messages to stderr."""

import os

from rich.console import Console

# Piped output (a log file, CI, `| less`) gets Rich's 80 columns, which folds the comparison
# tables into unreadable slivers; such output is read in an editor or pager, so use more.
PIPED_WIDTH = 160


def _console(*, stderr: bool) -> Console:
    console = Console(stderr=stderr)
    if console.is_terminal or "COLUMNS" in os.environ:
        return console
    return Console(stderr=stderr, width=PIPED_WIDTH)


out = _console(stderr=False)
err = _console(stderr=True)
