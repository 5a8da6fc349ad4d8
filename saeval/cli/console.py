"""The two Rich consoles every command shares: results to stdout, messages to stderr."""

from rich.console import Console

out = Console()
err = Console(stderr=True)
