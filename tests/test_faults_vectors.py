"""Damaged vector files never give a number: every reader validates by its library's own rules
(safetensors' header checks, numpy's size check, torch's weights-only unpickler), and every
failure is one line naming the file."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import invoke
from sae_builders import MC_TASK
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from saeval.errors import ResolutionError
from saeval.spec.vector_files import vector_facts


def raw_safetensors(path: Path, header: dict[str, object], data: bytes) -> Path:
    """A safetensors file written byte by byte, whatever its header says."""
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def facts_error(path: Path) -> str:
    with pytest.raises(ResolutionError) as caught:
        vector_facts(path)
    assert "\n" not in caught.value.message
    return caught.value.message


def test_a_good_safetensors_vector_reads_as_the_library_reads_it(tmp_path: Path) -> None:
    values = np.array([3.0, -4.0, 12.0], dtype=np.float32)
    path = tmp_path / "v.safetensors"
    save_file({"v": values}, str(path))
    with safe_open(str(path), framework="numpy") as stored:
        expected = float(np.linalg.norm(stored.get_tensor("v").astype(np.float64)))
    facts = vector_facts(path)
    assert (facts.width, facts.norm, facts.dtype) == (3, expected, "float32")
    assert expected == 13.0


def test_offsets_that_disagree_with_the_shape_are_refused_as_the_library_refuses_them(
    tmp_path: Path,
) -> None:
    # shape [2] of F32 is 8 bytes, but the offsets say bytes 8..16: the old reader took the
    # last 8 bytes (|v| = 8000) and steered with them.
    data = np.array([1.0, 2.0], "<f4").tobytes() + np.array([4800.0, 6400.0], "<f4").tobytes()
    header = {"v": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}
    path = raw_safetensors(tmp_path / "v.safetensors", header, data)
    with pytest.raises(SafetensorError), safe_open(str(path), framework="numpy") as stored:
        stored.get_tensor("v")
    message = facts_error(path)
    assert message.startswith(f"{path}: not a valid safetensors file")
    assert "offset" in message


def test_a_shape_larger_than_its_data_is_refused(tmp_path: Path) -> None:
    header = {"v": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 8]}}
    path = raw_safetensors(tmp_path / "v.safetensors", header, b"\0" * 8)
    assert facts_error(path).startswith(f"{path}: not a valid safetensors file")


def test_an_offset_beyond_the_file_is_refused(tmp_path: Path) -> None:
    header = {"v": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
    path = raw_safetensors(tmp_path / "v.safetensors", header, b"\0" * 8)
    assert facts_error(path).startswith(f"{path}: truncated")


def _npy_claiming(path: Path, shape: str) -> Path:
    """A float32 .npy of 8 values whose header claims ``shape`` (header length unchanged)."""
    np.save(path, np.arange(8, dtype=np.float32))
    raw = path.read_bytes()
    start, end = raw.index(b"{"), raw.index(b"\n")
    header = raw[start:end].replace(b"(8,)", shape.encode()).rstrip(b" ")
    path.write_bytes(raw[:start] + header.ljust(end - start) + raw[end:])
    return path


def test_an_npy_header_claiming_a_terabyte_is_refused_before_allocating(tmp_path: Path) -> None:
    path = _npy_claiming(tmp_path / "v.npy", "(1000000000000,)")
    message = facts_error(path)
    assert message.startswith(f"{path}: not a numeric .npy file numpy can read")


def test_an_npy_header_claiming_more_values_than_the_file_holds_is_refused(
    tmp_path: Path,
) -> None:
    path = _npy_claiming(tmp_path / "v.npy", "(9,)")
    assert facts_error(path) == (
        f"{path}: not a numeric .npy file numpy can read (its header describes more values "
        "than the file holds)"
    )


@pytest.mark.parametrize("content", [b"", os.urandom(300)], ids=["empty", "random"])
def test_a_pt_of_random_bytes_is_not_called_code(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "v.pt"
    path.write_bytes(content)
    message = facts_error(path)
    assert message.startswith(f"{path}: not a file torch.load can read")
    assert "could run code" not in message


def test_run_refuses_a_damaged_vector_before_loading_the_model(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    header = {"v": {"dtype": "F32", "shape": [64], "data_offsets": [256, 512]}}
    vector = raw_safetensors(tmp_path / "v.safetensors", header, b"\0" * 512)
    steer = tmp_path / "steer.csv"
    steer.write_text(f"vector,hook,steering_coefficient\n{vector},h.1,1\n")
    args = ["run", str(steer), "--model", str(tiny_bundle / "model"), "--device", "cpu"]
    args += ["--include-path", str(tiny_bundle / "tasks"), "--tasks", MC_TASK, "--limit", "2"]
    result = invoke(*args, "--output", str(tmp_path / "out"), "--name", "r")
    assert result.exit_code == 1, result.output
    assert "not a valid safetensors file" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "r" / "baseline").exists()


def test_a_good_pt_vector_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "v.pt"
    torch.save(torch.tensor([3.0, 4.0]), path)
    assert vector_facts(path).norm == 5.0
