"""Where an experiment runs, as written in its file or on the command line: devices, executors
and Slurm's time limits. Parsed without torch: whether a device exists is checked at run time."""

from __future__ import annotations

import re
from collections.abc import Sequence

from saeval.spec.csv_records import Invalid

EXECUTORS = ("local", "submitit-local", "slurm")
_DEVICE = re.compile(r"^(?:cpu|mps|cuda(?::(?P<first>\d+)(?:-(?P<last>\d+))?)?)$")
_SLURM_TIME = re.compile(r"^(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+)(?::(?P<c>\d+))?)?$")


def parse_devices(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``"cuda:0-3"`` -> cuda:0 ... cuda:3; ``"cpu,cpu"`` -> two CPU workers; a list of such
    strings likewise. A GPU named twice is refused (two workers would share it)."""
    parts = [spec] if isinstance(spec, str) else list(spec)
    devices: list[str] = []
    for part in parts:
        for name in (piece.strip() for piece in str(part).split(",")):
            devices += _expand(name)
    if not devices:
        raise Invalid("no device given; expected e.g. cuda:0,cuda:1, cuda:0-3 or cpu,cpu")
    gpus = [device for device in devices if device.startswith("cuda")]
    twice = sorted({device for device in gpus if gpus.count(device) > 1})
    if twice:
        raise Invalid(f"{', '.join(twice)} given twice; each GPU takes one worker")
    return tuple(devices)


def _expand(name: str) -> list[str]:
    """One device name, or the devices of a ``cuda:A-B`` range."""
    match = _DEVICE.match(name)
    if match is None:
        raise Invalid(f"unknown device {name!r}; expected cpu, mps, cuda, cuda:N or cuda:A-B")
    if match["last"] is None:
        return [name]
    first, last = int(match["first"]), int(match["last"])
    if last < first:
        raise Invalid(f"device range {name!r} runs backwards; write cuda:{last}-{first}")
    return [f"cuda:{index}" for index in range(first, last + 1)]


def parse_executor(name: str) -> str:
    """An executor name: local (worker processes here), submitit-local or slurm."""
    if name not in EXECUTORS:
        raise Invalid(f"unknown executor {name!r}; expected one of {', '.join(EXECUTORS)}")
    return name


def slurm_minutes(text: str | int) -> int:
    """A Slurm time limit in whole minutes, read as sbatch reads ``--time``: 90 (minutes),
    "90:30" (minutes:seconds), "1:30:00" (hours:minutes:seconds), "2-12" (days-hours),
    "2-12:30" and "2-12:30:00"; seconds round up."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 1:
            raise Invalid(f"{text} minutes; a time limit is at least 1 minute")
        return text
    match = _SLURM_TIME.match(str(text).strip())
    if match is None:
        raise Invalid(
            f"{text!r} is not a time; expected minutes (90), hours:minutes:seconds (1:30:00) "
            "or days-hours:minutes:seconds (1-12:00:00)"
        )
    numbers = [int(part) for part in (match["a"], match["b"], match["c"]) if part is not None]
    if match["days"] is not None:
        hours, minutes, seconds = [*numbers, 0, 0][:3]
        hours += int(match["days"]) * 24
    elif len(numbers) == 3:
        hours, minutes, seconds = numbers
    else:
        hours, (minutes, seconds) = 0, [*numbers, 0][:2]
    total = hours * 60 + minutes + -(-seconds // 60)
    if total < 1:
        raise Invalid(f"{text!r} is under a minute; a time limit is at least 1 minute")
    return total
