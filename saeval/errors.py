"""The error hierarchy: a user-facing message plus an optional hint. The CLI turns these into
one red line on stderr and an exit code; the library never prints."""

from __future__ import annotations


class SaevalError(Exception):
    """A mistake the user can fix: bad input, a missing file, an impossible option."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(SaevalError):
    """Options that contradict each other or cannot be parsed (exit code 2, like Click's)."""

    exit_code = 2


class SteerFileError(SaevalError):
    """A steer file that cannot be read or holds invalid rows; `problems` lists every one."""

    def __init__(
        self, message: str, hint: str | None = None, problems: list[str] | None = None
    ) -> None:
        super().__init__(message, hint)
        self.problems: list[str] = problems if problems is not None else [message]


class ResolutionError(SaevalError):
    """An SAE, model or hook point that cannot be resolved."""


class SteeringError(SaevalError):
    """A steer plan that cannot be applied to the loaded model."""


class TaskError(SaevalError):
    """An unknown or broken lm-eval task."""


class ResultsError(SaevalError):
    """Results files that are missing, corrupt or do not match."""


class DeviceError(SaevalError):
    """A device that does not exist or ran out of memory."""


class CorpusError(SaevalError):
    """A text corpus (``saeval kl --texts``) that cannot be read."""
