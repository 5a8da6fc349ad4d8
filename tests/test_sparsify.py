"""lm-eval's ``loader=sparsify`` rows: EleutherAI's sparse coders (``eai-sparsify``) from a local
folder laid out as lm-eval reads it (one subfolder per hookpoint), validated offline and steered
with their ``W_dec`` rows and ``b_dec``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from saeval.errors import ResolutionError, SteeringError
from saeval.spec.resolve import CheckOutcome, validate
from saeval.spec.steer_file import read_steer_file
from saeval.steering.plan import build_plan

HEADER = "loader,action,sparse_model,hookpoint,feature_index,steering_coefficient,sae_id\n"


@pytest.fixture(scope="module")
def coders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sparse_model folder holding a tiny SparseCoder (64 -> 128, k 8) for ``h.1``."""
    from sparsify import SparseCoder, SparseCoderConfig

    folder = tmp_path_factory.mktemp("coders")
    torch.manual_seed(0)
    coder = SparseCoder(64, SparseCoderConfig(num_latents=128, k=8))
    with torch.no_grad():
        coder.b_dec.normal_()
    coder.save_to_disk(folder / "h.1")
    return folder


def steer_file(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "sparsify.csv"
    path.write_text(HEADER + "".join(f"{row}\n" for row in rows))
    return path


def test_a_local_coder_validates_offline(coders: Path, tmp_path: Path) -> None:
    resolution = validate([steer_file(tmp_path, f"sparsify,clamp,{coders},h.1,127,2.0,")])
    assert resolution.ok, resolution.problems
    (resolved,) = resolution.rows
    assert resolved.sae is not None
    assert (resolved.sae.d_sae, resolved.sae.d_in, resolved.hook_name) == (128, 64, "h.1")
    statuses = {check.name: check.status for check in resolved.checks}
    assert statuses["sae"] is statuses["latent_idx"] is CheckOutcome.OK


def test_a_latent_beyond_the_coder_and_a_missing_coder_are_errors(
    coders: Path, tmp_path: Path
) -> None:
    steer = steer_file(
        tmp_path, f"sparsify,add,{coders},h.1,128,2.0,", f"sparsify,add,{coders},h.0,1,2.0,"
    )
    first, second = validate([steer]).problems
    assert first.startswith(f"{steer}:2 feature_index: latent 128 is out of range")
    assert second.startswith(f"{steer}:3 sparse_model: sparsify coder folder {coders}/h.0 has no")


def test_a_hub_coder_is_unchecked_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    steer = steer_file(tmp_path, "sparsify,add,EleutherAI/sae-pythia-70m-32k,layers.3,30,10.0,")
    resolution = validate([steer])
    assert resolution.ok and resolution.unchecked[0].startswith(f"{steer}:2 sparse_model: ")


def test_add_and_project_use_the_coders_w_dec_and_b_dec(coders: Path, tmp_path: Path) -> None:
    from sparsify import SparseCoder

    coder = SparseCoder.load_from_disk(coders / "h.1")
    h = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(1))
    add = build_plan(read_steer_file(steer_file(tmp_path, f"sparsify,add,{coders},h.1,7,3.0,")))
    with torch.no_grad():
        torch.testing.assert_close(add.points["h.1"].edit(h), h + 3.0 * coder.W_dec[7])
    clamp = f"sparsify,clamp,{coders},h.1,7,3.0,"
    project = build_plan(read_steer_file(steer_file(tmp_path, clamp)))
    with torch.no_grad():
        out = project.points["h.1"].edit(h)
        u = coder.W_dec[7] / coder.W_dec[7].norm()
        projection = (out - coder.b_dec) @ u
    torch.testing.assert_close(projection, torch.full_like(projection, 3.0), atol=1e-5, rtol=0)


def test_plan_errors_name_the_row(coders: Path, tmp_path: Path) -> None:
    steer = steer_file(tmp_path, f"sparsify,add,{coders},h.1,500,3.0,")
    with pytest.raises(SteeringError, match=r"sparsify\.csv:2 feature_index: latent 500"):
        build_plan(read_steer_file(steer))
    missing = steer_file(tmp_path, "sparsify,add,someone/no-such-coders,h.1,5,3.0,")
    with pytest.raises(ResolutionError, match="cannot load sparsify coder someone/no-such-coders"):
        build_plan(read_steer_file(missing))


def test_loading_sparsify_prints_nothing() -> None:
    code = "from saeval.steering.sparsify_loading import sparse_coder_class; sparse_coder_class()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == ""
