"""The interventions beyond add and clamp, each against its definition: clamp_active,
add_through_sae, project (SAE rows, lm-eval's clamp), vector rows from every file format, and
the fork dialect's and lm-eval's ``.pt`` files read, validated and run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import invoke
from sae_builders import KINDS, build_sae, dual_sae, save_sae
from sae_lens import SAE

from saeval.errors import SteerFileError
from saeval.spec.resolve import validate
from saeval.spec.steer_file import Action, SteerRow, VectorRow, read_steer_file
from saeval.steering.interventions import Projection
from saeval.steering.plan import SteerPlan, build_plan, plan_from_saes

RELEASE = "tiny-release"
LATENT = 1


def row(latent: int, coefficient: float, action: Action, **fields: Any) -> SteerRow:
    return SteerRow("steer.csv", 2, latent, coefficient, RELEASE, "", action=action, **fields)


def plan_for(sae: SAE, *rows: SteerRow) -> SteerPlan:
    return plan_from_saes(rows, {(RELEASE, ""): sae})


def edit(plan: SteerPlan, h: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    (point,) = plan.points.values()
    with torch.no_grad():
        return point.edit(h, scale)


def activations(seed: int = 0) -> torch.Tensor:
    return torch.randn(4, 9, 64, generator=torch.Generator().manual_seed(seed))


def sometimes_firing(kind: str) -> SAE:
    """A dual SAE (re-encoding gives back a clamp's target) whose latent 1 fires only at some
    positions of ``activations()``."""
    sae = dual_sae(kind)
    with torch.no_grad():
        # standard/jumprelu: fires where h·W_dec[1] > 0 (> 0.5); topk: competes with latent 16
        sae.b_enc[LATENT] = 116.0 if kind == "topk" else 0.0
    return sae


# ---- clamp_active --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_clamp_active_sets_firing_positions_and_leaves_the_rest_bit_identical(kind: str) -> None:
    sae, h = sometimes_firing(kind), activations()
    with torch.no_grad():
        fires = sae.encode(h)[..., LATENT] > 0
    assert 0.1 < float(fires.float().mean()) < 0.9
    out = edit(plan_for(sae, row(LATENT, 150.0, Action.CLAMP_ACTIVE)), h)
    moved = (out != h).any(-1)
    assert torch.equal(moved, fires)
    assert torch.equal(out[~fires], h[~fires])  # bit for bit
    with torch.no_grad():
        reencoded = sae.encode(out)[..., LATENT][fires]
    torch.testing.assert_close(reencoded, torch.full_like(reencoded, 150.0), atol=1e-3, rtol=1e-5)


def test_clamp_active_with_a_threshold_moves_only_positions_above_it() -> None:
    sae, h = sometimes_firing("standard"), activations(1)
    with torch.no_grad():
        f = sae.encode(h)[..., LATENT]
    threshold = float(f[f > 0].median()) + 1e-4
    out = edit(plan_for(sae, row(LATENT, -2.0, Action.CLAMP_ACTIVE, threshold=threshold)), h)
    above = f > threshold
    assert 0 < int(above.sum()) < int((f > 0).sum())
    assert torch.equal((out != h).any(-1), above)
    with torch.no_grad():
        reencoded = sae.encode(out)[..., LATENT][above]
    torch.testing.assert_close(reencoded, torch.zeros_like(reencoded))  # ReLU(-2) = 0


def test_clamp_active_scales_its_target_not_its_threshold() -> None:
    sae, h = sometimes_firing("jumprelu"), activations(2)
    plan = plan_for(sae, row(LATENT, 60.0, Action.CLAMP_ACTIVE, threshold=0.7))
    out = edit(plan, h, scale=2.0)
    with torch.no_grad():
        f = sae.encode(h)[..., LATENT]
        reencoded = sae.encode(out)[..., LATENT]
    torch.testing.assert_close(reencoded[f > 0.7], torch.full_like(f[f > 0.7], 120.0))
    assert torch.equal(out[f <= 0.7], h[f <= 0.7])


# ---- add_through_sae and project -----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_add_through_sae_is_the_saes_difference(kind: str) -> None:
    sae, h = build_sae(kind, seed=4), activations(3)
    rows = [row(3, 4.0, Action.ADD_THROUGH_SAE), row(70, -2.0, Action.ADD_THROUGH_SAE)]
    out = edit(plan_for(sae, *rows), h, scale=0.5)
    with torch.no_grad():
        v = 0.5 * (4.0 * sae.W_dec[3] - 2.0 * sae.W_dec[70])
        expected = h + sae.decode(sae.encode(h + v)) - sae.decode(sae.encode(h))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, h + v, atol=1e-3)  # not the plain add


def test_project_sets_the_projection_of_h_minus_b_dec_on_the_unit_decoder_row() -> None:
    sae, h = build_sae(seed=5), activations(4)
    plan = plan_for(sae, row(9, 3.0, Action.PROJECT))
    out = edit(plan, h, scale=2.0)
    with torch.no_grad():
        u = sae.W_dec[9] / sae.W_dec[9].norm()
        b = sae.b_dec
    projection = (out - b) @ u
    torch.testing.assert_close(projection, torch.full_like(projection, 6.0), atol=1e-5, rtol=0)
    change = out - h
    torch.testing.assert_close(
        change - (change @ u).unsqueeze(-1) * u, torch.zeros_like(h), atol=1e-5, rtol=0
    )


def test_lm_eval_clamp_rows_become_projections_with_b_dec(tmp_path: Path) -> None:
    sae = build_sae(seed=6)
    folder = save_sae(sae, tmp_path / "sae")
    steer = tmp_path / "lm.csv"
    steer.write_text(
        "loader,action,sparse_model,hookpoint,feature_index,steering_coefficient,sae_id\n"
        f"sae_lens,clamp,{folder},h.1,12,5.0,\n"
    )
    (steer_row,) = read_steer_file(steer).rows
    assert isinstance(steer_row, SteerRow)
    assert (steer_row.action, steer_row.written_action) == (Action.PROJECT, "clamp")
    (intervention,) = build_plan(read_steer_file(steer)).points["h.1"].interventions
    assert isinstance(intervention, Projection) and intervention.bias is not None
    with torch.no_grad():
        torch.testing.assert_close(intervention.bias, sae.b_dec)
        torch.testing.assert_close(intervention.direction, sae.W_dec[12] / sae.W_dec[12].norm())


# ---- vector rows ---------------------------------------------------------------------------


def write_vector(path: Path, vector: torch.Tensor) -> Path:
    """``vector`` saved in the format ``path``'s suffix names."""
    from safetensors.torch import save_file

    if path.suffix == ".safetensors":
        save_file({"direction": vector}, path)
    elif path.suffix == ".npy":
        np.save(path, vector.float().numpy())
    else:
        torch.save(vector, path)
    return path


@pytest.mark.parametrize("suffix", [".safetensors", ".npy", ".pt"])
@pytest.mark.parametrize("action", ["add", "project"])
def test_vector_rows_from_every_format(suffix: str, action: str, tmp_path: Path) -> None:
    vector = torch.randn(64, generator=torch.Generator().manual_seed(7))
    path = write_vector(tmp_path / f"caa{suffix}", vector)
    steer = tmp_path / "vectors.csv"
    steer.write_text(f"vector,hook,steering_coefficient,action\n{path},h.1,2.5,{action}\n")
    (vector_row,) = read_steer_file(steer).rows
    assert isinstance(vector_row, VectorRow) and vector_row.hook == "h.1"
    h = activations(5)
    out = edit(build_plan(read_steer_file(steer)), h)
    if action == "add":
        torch.testing.assert_close(out, h + 2.5 * vector)
    else:
        u = vector / vector.norm()
        torch.testing.assert_close(out @ u, torch.full_like(out @ u, 2.5), atol=1e-5, rtol=0)
    (resolved,) = validate([steer]).rows
    assert resolved.vector is not None and resolved.vector.width == 64
    assert resolved.vector.norm == pytest.approx(float(vector.norm()), rel=1e-6)


def test_bfloat16_safetensors_vector_is_read_without_torch(tmp_path: Path) -> None:
    from saeval.spec.vector_files import read_vector

    vector = torch.randn(64, generator=torch.Generator().manual_seed(8)).to(torch.bfloat16)
    values, dtype = read_vector(write_vector(tmp_path / "v.safetensors", vector))
    assert dtype == "bfloat16"
    np.testing.assert_array_equal(values, vector.float().numpy())


def test_validate_shows_a_vectors_norm_and_hook(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    write_vector(tmp_path / "caa.npy", torch.full((64,), 0.5))  # norm 4
    Path("v.csv").write_text(
        "vector,hook,steering_coefficient\ncaa.npy,blocks.1.hook_resid_post,8\n"
    )
    result = invoke("validate", "v.csv", "--model", "gpt2")
    assert result.exit_code == 0, result.output
    assert "|v| = 4" in result.stdout and "blocks.1.hook_resid_post" in result.stdout
    assert "h += c·v" in result.stdout
    data = json.loads(invoke("validate", "v.csv", "-f", "json").stdout)
    (resolved,) = data["rows"]
    assert (resolved["vector"]["width"], resolved["vector"]["norm"]) == (64, 4.0)
    assert [check["name"] for check in resolved["checks"]] == ["vector", "hook"]


def test_a_vector_of_the_wrong_width_for_the_model_is_an_error(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    write_vector(tmp_path / "caa.npy", torch.ones(32))
    steer = tmp_path / "v.csv"
    steer.write_text(f"vector,hook,steering_coefficient\n{tmp_path}/caa.npy,h.1,1\n")
    model = str(tiny_bundle / "model")
    (problem,) = validate([steer], model=model).problems
    assert problem == f"{steer}:2 vector: 32 wide, but {model} has hidden_size=64"


# ---- lm-eval's .pt files -------------------------------------------------------------------


class _Payload:
    """Unpickling this would create ``marker`` (what a malicious file would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_a_pt_file_that_needs_unpickling_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    steer = tmp_path / "evil.pt"
    entry = {"steering_vector": torch.zeros(64), "action": "add", "bias": _Payload(marker)}
    torch.save({"h.1": entry}, steer)
    with pytest.raises(SteerFileError, match=r"evil\.pt: refused: .*posix\.system") as raised:
        read_steer_file(steer)
    assert "\n" not in raised.value.message
    result = invoke("validate", str(steer))
    assert result.exit_code == 1 and "refused" in result.stderr and "Traceback" not in result.output
    assert not marker.exists()


def test_pt_entries_are_checked_with_their_keys(tmp_path: Path) -> None:
    steer = tmp_path / "bad.pt"
    torch.save(
        {
            "h.0": {"steering_vector": torch.zeros(64), "action": "steer"},
            "h.1": {"steering_vector": torch.ones(64), "action": "add", "bias": torch.ones(64)},
            "h.2": {"steering_vector": torch.ones(8), "action": "add", "head_index": 1},
        },
        steer,
    )
    with pytest.raises(SteerFileError) as raised:
        read_steer_file(steer)
    assert [p.split(":")[0] for p in raised.value.problems] == [
        f"{steer}[h.0] action",
        f"{steer}[h.1] bias",
        f"{steer}[h.2] head_index",
    ]


def test_saeval_run_takes_a_pt_file(tiny_bundle: Path, tmp_path: Path) -> None:
    steer = tmp_path / "steer.pt"
    vector = torch.randn(64, generator=torch.Generator().manual_seed(9))
    torch.save(
        {"h.1": {"steering_vector": vector, "steering_coefficient": 4.0, "action": "add"}}, steer
    )
    args = ["run", str(steer), "--model", str(tiny_bundle / "model"), "--tasks", "tiny_mc"]
    args += ["--include-path", str(tiny_bundle / "tasks"), "--output", str(tmp_path / "out")]
    result = invoke(*args, "--device", "cpu", "--limit", "4", "--name", "pt")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "pt" / "run.json").read_text())
    (record,) = manifest["steer_files"]
    assert record["dialect"] == "lm-eval-pt" and "h.1: action=add" in record["text"]


# ---- the fork dialect ----------------------------------------------------------------------


def fork_file(tmp_path: Path, sae_dir: Path) -> Path:
    steer = tmp_path / "fork.csv"
    steer.write_text(
        "hook_action,latent_idx,steering_coefficient,sae_release,sae_id,clamp_value,description\n"
        f"add,3,8.0,{sae_dir},,,\n"
        f"clamp,5,-4.0,{sae_dir},,,unlearn where active\n"
        f"clamp_cond,9,2.0,{sae_dir},,0.25,\n"
    )
    return steer


def test_a_fork_file_with_clamp_and_add_rows_validates_with_notes(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)  # short paths: the table's cells do not fold
    save_sae(build_sae(), tmp_path / "sae")
    steer = fork_file(Path("."), Path("sae"))
    rows = read_steer_file(steer).rows
    assert [(r.action, r.written_action) for r in rows] == [
        (Action.ADD, "add"),
        (Action.CLAMP_ACTIVE, "clamp"),
        (Action.CLAMP_ACTIVE, "clamp_cond"),
    ]
    assert [getattr(r, "threshold", None) for r in rows] == [None, None, 0.25]
    result = invoke("validate", str(steer))
    assert result.exit_code == 0, result.output
    data = json.loads(invoke("validate", str(steer), "-f", "json").stdout)
    assert [(r["action"], r["dialect_action"]) for r in data["rows"]][1:] == [
        ("clamp_active", "clamp"),
        ("clamp_active", "clamp_cond"),
    ]
    assert data["rows"][2]["computes"] == "h += (c - f_i(h))·W_dec[i] where f_i(h) > 0.25"
    assert data["rows"][0]["notes"] and not data["rows"][1]["notes"]
    notes = [line for line in result.stdout.splitlines() if ": note: " in line]
    assert len(notes) == 2 and "action=add_through_sae" in notes[0]
    assert "15864" in notes[1]


def test_a_fork_file_runs_with_clamp_cond_at_its_clamp_value(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    from saeval.steering.lm_eval_model import SteeredHFLM

    steer = fork_file(tmp_path, tiny_bundle / "sae")
    lm = SteeredHFLM(pretrained=str(tiny_bundle / "model"), steer_path=str(steer), device="cpu")
    (point,) = lm.plan.points.values()
    (group,) = point.clamps
    assert group.thresholds is not None and group.thresholds.tolist() == [0.0, 0.25]
    ids = torch.tensor([[5, 9, 33, 120, 7]])
    with torch.no_grad(), lm.steering():
        steered = lm.model(ids).logits
    lm.set_scale(None)
    with torch.no_grad():
        assert not torch.allclose(lm.model(ids).logits, steered, atol=1e-4)


def test_a_runs_spec_holds_the_hash_of_each_vector_file(tmp_path: Path) -> None:
    """So --resume refuses a run whose vector file changed, as for a local SAE folder."""
    from saeval.run.folder import _vector_files

    path = write_vector(tmp_path / "caa.npy", torch.ones(64))
    steer = tmp_path / "v.csv"
    steer.write_text(f"vector,hook,steering_coefficient\n{path},h.1,1\n")
    before = _vector_files([read_steer_file(steer)])
    assert list(before["vector_files"]) == [str(path.resolve())]
    write_vector(path, torch.zeros(64))
    assert _vector_files([read_steer_file(steer)]) != before


def test_the_shipped_fork_clamp_example_is_a_valid_clamp_active_row() -> None:
    steer = Path(__file__).resolve().parents[1] / "steers" / "dog_fork_clamp.csv"
    resolution = validate([steer])
    assert resolution.ok, resolution.problems
    (resolved,) = resolution.rows
    assert resolved.row.action is Action.CLAMP_ACTIVE and resolved.row.written_action == "clamp"
    assert resolved.sae is not None and resolved.sae.d_sae == 16384
