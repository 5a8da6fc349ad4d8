"""Assertions shared by the CLI tests."""

from __future__ import annotations

from typer.testing import Result


def assert_one_line_error(result: Result, *needles: str) -> None:
    """Exit 1 through the error boundary: one `error: ...` line naming every needle, no traceback.

    An exception that escapes the command also exits 1 under CliRunner, with no output; the
    boundary's own exit is a SystemExit.
    """
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    if lines[-1].startswith("hint: "):
        lines.pop()
    assert lines[-1].startswith("error: "), result.stderr
    assert not any(line.startswith("error: ") for line in lines[:-1])
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[-1], lines[-1]
