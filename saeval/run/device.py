"""Check a --device against the machine before any model is loaded."""

from __future__ import annotations

from saeval.errors import DeviceError


def check_device(device: str | None) -> str:
    """The torch device to use; DeviceError for one this machine does not have."""
    import torch

    if device is None:
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    kind, _, index = device.partition(":")
    if kind == "cpu" and not index:
        return device
    if kind == "mps" and not index:
        if not torch.backends.mps.is_available():
            raise DeviceError(
                "device mps is not available on this machine", hint="use --device cpu"
            )
        return device
    if kind != "cuda" or (index and not index.isdigit()):
        raise DeviceError(f"unknown device {device!r}", hint="use cpu, cuda, cuda:N or mps")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise DeviceError(
            f"device {device} requested but no CUDA GPU is visible", hint="use --device cpu"
        )
    if index and int(index) >= count:
        visible = ", ".join(f"cuda:{i}" for i in range(count))
        raise DeviceError(f"device {device} does not exist; visible GPUs: {visible}")
    return device if index else "cuda:0"
