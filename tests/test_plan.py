"""The steer plan on a tiny GPT-2 and tiny sae_lens SAEs: each action's exact effect on the
hooked activation, what the plan keeps of each SAE, and the errors that name rows."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from builders import build_tiny_model
from sae_builders import HOOK_NAME, KINDS, build_sae, dual_sae, save_sae, write_steer_csv
from sae_lens import SAE
from torch import Tensor, nn

import saeval.steering.sae_loading
from saeval.errors import ResolutionError, SteeringError
from saeval.spec.steer_file import Action, SteerRow, read_steer_file
from saeval.steering.clamp import sliced_sae
from saeval.steering.hooks import attach, locate
from saeval.steering.plan import SteerPlan, build_plan, plan_from_saes

RELEASE = "tiny-release"
ATOL = 1e-4


def row(latent: int, coefficient: float = 1.0, action: str = "add", **fields: Any) -> SteerRow:
    """A steer row on the tiny SAE (line numbers count from the header's line 1)."""
    line = fields.pop("line", 2)
    return SteerRow(
        file="steer.csv",
        line=line,
        latent_idx=latent,
        coefficient=coefficient,
        sae_release=fields.pop("sae_release", RELEASE),
        sae_id=fields.pop("sae_id", ""),
        action=Action(action),
        **fields,
    )


def plan_for(sae: SAE, *rows: SteerRow) -> SteerPlan:
    return plan_from_saes(rows, {(RELEASE, ""): sae})


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return build_tiny_model("gpt2")


@contextmanager
def recording(model: nn.Module, hook_name: str) -> Iterator[list[Tensor]]:
    """Record the activation at ``hook_name`` as later hooks see it (after any steering)."""
    seen: list[Tensor] = []
    site = locate(model, hook_name)
    handle = site.module.register_forward_hook(lambda m, a, out: seen.append(out.detach()))
    try:
        yield seen
    finally:
        handle.remove()


def activation(
    model: nn.Module, input_ids: Tensor, plan: SteerPlan | None, scale: float = 1.0
) -> Tensor:
    """The activation at HOOK_NAME with the plan's edits attached (or none)."""
    edits = {} if plan is None else plan.edits(scale)
    with torch.no_grad(), attach(model, edits), recording(model, HOOK_NAME) as seen:
        model(input_ids)
    return seen[0]


def logits(model: nn.Module, input_ids: Tensor, plan: SteerPlan | None = None) -> Tensor:
    with torch.no_grad(), attach(model, {} if plan is None else plan.edits()):
        return model(input_ids).logits


# ---- add -----------------------------------------------------------------------------------


def test_add_rows_sum_into_one_vector_applied_at_every_position(
    model: nn.Module, input_ids: Tensor
) -> None:
    first, second = build_sae(seed=1), build_sae(seed=2)
    rows = [row(3, 2.5), row(70, -1.5, line=3), row(3, 4.0, sae_release="other", line=4)]
    plan = plan_from_saes(rows, {(RELEASE, ""): first, ("other", ""): second})
    expected = 2.5 * first.W_dec[3] - 1.5 * first.W_dec[70] + 4.0 * second.W_dec[3]
    assert list(plan.points) == [HOOK_NAME]
    point = plan.points[HOOK_NAME]
    assert point.add_vector is not None and not point.clamps
    torch.testing.assert_close(point.add_vector, expected.detach())
    baseline = activation(model, input_ids, None)
    steered = activation(model, input_ids, plan)
    torch.testing.assert_close(steered - baseline, expected.detach().expand_as(baseline))


def test_scale_multiplies_the_add_vector(model: nn.Module, input_ids: Tensor) -> None:
    plan = plan_for(build_sae(), row(3, 2.0))
    baseline = activation(model, input_ids, None)
    once = activation(model, input_ids, plan, scale=1.0) - baseline
    for scale in (-1.0, 0.5, 3.0):
        scaled = activation(model, input_ids, plan, scale=scale) - baseline
        torch.testing.assert_close(scaled, scale * once, atol=1e-5, rtol=1e-5)


def test_zero_coefficient_changes_no_logit(model: nn.Module, input_ids: Tensor) -> None:
    plan = plan_for(build_sae(), row(3, 0.0), row(9, 0.0, line=3))
    assert torch.equal(logits(model, input_ids, plan), logits(model, input_ids))


def test_scale_zero_changes_no_logit(model: nn.Module, input_ids: Tensor) -> None:
    plan = plan_for(build_sae(), row(3, 5.0))
    with torch.no_grad(), attach(model, plan.edits(0.0)):
        assert torch.equal(model(input_ids).logits, logits(model, input_ids))


def test_detaching_restores_baseline_logits_bit_for_bit(
    model: nn.Module, input_ids: Tensor
) -> None:
    baseline = logits(model, input_ids)
    plan = plan_for(build_sae(), row(3, 50.0), row(5, 2.0, "clamp", line=3))
    assert not torch.allclose(logits(model, input_ids, plan), baseline)
    assert torch.equal(logits(model, input_ids), baseline)


def test_row_hook_overrides_the_sae_hook(model: nn.Module, input_ids: Tensor) -> None:
    sae = build_sae()
    plan = plan_for(sae, row(3, 2.0, hook="blocks.0.hook_resid_post"))
    assert list(plan.points) == ["blocks.0.hook_resid_post"]


def test_hf_module_name_hook_edits_the_same_activation(model: nn.Module, input_ids: Tensor) -> None:
    """lm-eval's dialect names the decoder layer (``h.1`` in GPT-2) instead of the TL hook."""
    sae = build_sae()
    by_tl_name = activation(model, input_ids, plan_for(sae, row(3, 2.0)))
    by_module = activation(model, input_ids, plan_for(sae, row(3, 2.0, hook="h.1")))
    torch.testing.assert_close(by_module, by_tl_name, atol=0, rtol=0)


# ---- clamp and ablate ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", [*KINDS, "gated"])
def test_clamp_is_h_plus_target_minus_latent_times_decoder_row(
    kind: str, model: nn.Module, input_ids: Tensor
) -> None:
    """The definition, with f computed by the ORIGINAL full SAE, on random weights."""
    sae = _gated() if kind == "gated" else build_sae(kind)
    plan = plan_for(sae, row(5, 1.5, "clamp"), row(40, -0.5, "clamp", line=3))
    baseline = activation(model, input_ids, None)
    with torch.no_grad():
        acts = sae.encode(baseline)[..., [5, 40]]
        expected = (torch.tensor([1.5, -0.5]) - acts) @ sae.W_dec[[5, 40]]
    steered = activation(model, input_ids, plan)
    torch.testing.assert_close(steered - baseline, expected, atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("rescale", [False, True])
def test_clamp_replaces_the_latent_in_sae_lens_decode(
    rescale: bool, model: nn.Module, input_ids: Tensor
) -> None:
    """h + decode(f with the latents at their targets) - decode(f), also for a TopK SAE that
    decodes through unit-norm rows (rescale_acts_by_decoder_norm)."""
    sae = build_sae("topk", rescale_acts_by_decoder_norm=rescale)
    plan = plan_for(sae, row(5, 1.5, "clamp"), row(40, 0.0, "ablate", line=3))
    baseline = activation(model, input_ids, None)
    with torch.no_grad():
        acts = sae.encode(baseline)
        clamped = acts.clone()
        clamped[..., 5], clamped[..., 40] = 1.5, 0.0
        expected = sae.decode(clamped) - sae.decode(acts)
    steered = activation(model, input_ids, plan)
    torch.testing.assert_close(steered - baseline, expected, atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_clamp_sets_the_latent_to_its_target(
    kind: str, model: nn.Module, input_ids: Tensor
) -> None:
    sae = dual_sae(kind)
    plan = plan_for(sae, row(1, 150.0, "clamp"), row(4, 170.0, "clamp", line=3))
    for scale in (1.0, 2.0):
        steered = activation(model, input_ids, plan, scale=scale)
        with torch.no_grad():
            reencoded = sae.encode(steered)[..., [1, 4]]
        target = scale * torch.tensor([150.0, 170.0]).expand_as(reencoded)
        torch.testing.assert_close(reencoded, target, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_ablate_sets_the_latent_to_zero(kind: str, model: nn.Module, input_ids: Tensor) -> None:
    sae = dual_sae(kind)
    baseline = activation(model, input_ids, None)
    with torch.no_grad():
        assert bool((sae.encode(baseline)[..., 2] > 1).all())
    steered = activation(model, input_ids, plan_for(sae, row(2, 0.0, "ablate")))
    with torch.no_grad():
        reencoded = sae.encode(steered)[..., 2]
    torch.testing.assert_close(reencoded, torch.zeros_like(reencoded), atol=ATOL, rtol=0)


def test_add_then_clamp_on_one_hook_both_apply(model: nn.Module, input_ids: Tensor) -> None:
    sae = dual_sae()
    plan = plan_for(sae, row(6, 30.0), row(1, 150.0, "clamp", line=3))
    steered = activation(model, input_ids, plan)
    baseline = activation(model, input_ids, None)
    with torch.no_grad():
        before, after = sae.encode(baseline), sae.encode(steered)
    torch.testing.assert_close(
        after[..., 6] - before[..., 6], torch.full_like(before[..., 6], 30.0)
    )
    torch.testing.assert_close(after[..., 1], torch.full_like(after[..., 1], 150.0))


@pytest.mark.parametrize("kind", ["standard", "jumprelu", "gated"])
def test_sliced_sae_encodes_like_the_full_sae(kind: str) -> None:
    sae = _gated() if kind == "gated" else build_sae(kind)
    index = torch.tensor([7, 0, 99])
    small = sliced_sae(sae, index)
    assert type(small) is type(sae) and small.cfg.d_sae == 3
    h = torch.randn(2, 5, 64)
    with torch.no_grad():
        torch.testing.assert_close(small.encode(h), sae.encode(h)[..., index])


def _gated() -> SAE:
    from sae_lens import GatedSAE, GatedSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    sae = GatedSAE(GatedSAEConfig(d_in=64, d_sae=128, metadata=SAEMetadata(hook_name=HOOK_NAME)))
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.normal_(0, 0.3)
    return sae


# ---- what the plan keeps -------------------------------------------------------------------


def test_plan_keeps_vectors_and_sliced_encoders_only() -> None:
    d_in, d_sae, k = 64, 4096, 2
    sae = build_sae("jumprelu", d_sae=d_sae)
    full_bytes = sum(t.numel() * 4 for t in sae.state_dict().values())
    plan = plan_for(sae, row(3, 1.0), row(5, 2.0, "clamp", line=3), row(9, 0, "ablate", line=4))
    sliced = d_in * k * 2 + k * 2 + d_in  # W_enc, W_dec, b_enc, threshold, b_dec
    kept = d_in + sliced + d_in * k + k  # add vector, encoder, decoder rows, targets
    assert plan.nbytes() == 4 * kept
    assert plan.nbytes() < full_bytes / 100


@pytest.mark.parametrize("kind", KINDS)
def test_loaded_sae_is_freed_after_the_plan_is_built(kind: str) -> None:
    refs: list[weakref.ref[SAE]] = []

    def load(key: tuple[str, str]) -> SAE:
        sae = build_sae(kind)
        refs.append(weakref.ref(sae))
        return sae

    from saeval.steering.plan import plan_rows

    plan = plan_rows([row(3, 1.0), row(5, 2.0, "clamp", line=3)], load)
    gc.collect()
    assert refs and refs[0]() is None
    full_encoder = kind == "topk"  # TopK latents compete: the whole encoder stays
    assert (plan.nbytes() > 128 * 64 * 4) == full_encoder


def test_each_distinct_sae_is_loaded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = save_sae(build_sae(seed=1), tmp_path / "first")
    second = save_sae(build_sae(seed=2), tmp_path / "second")
    steer = write_steer_csv(
        tmp_path / "steer.csv",
        [(3, 1.0, first, ""), (4, 2.0, first, ""), (5, 1.0, second, ""), (6, 1.0, first, "")],
    )
    loads: list[tuple[str, str]] = []
    real = saeval.steering.sae_loading.load_sae

    def counting(release: str, sae_id: str, **kwargs: Any) -> SAE:
        loads.append((release, sae_id))
        return real(release, sae_id, **kwargs)

    monkeypatch.setattr(saeval.steering.sae_loading, "load_sae", counting)
    plan = build_plan(read_steer_file(steer))
    assert sorted(loads) == sorted([(str(first), ""), (str(second), "")])
    assert len(plan.saes) == 2 and plan.saes[0].d_sae == 128
    assert plan.model_id == "tiny"
    loaded = SAE.load_from_disk(first)
    expected = loaded.W_dec[3] + 2 * loaded.W_dec[4] + loaded.W_dec[6]
    expected = expected + SAE.load_from_disk(second).W_dec[5]
    vector = plan.points[HOOK_NAME].add_vector
    assert vector is not None
    torch.testing.assert_close(vector, expected.detach())


# ---- edits follow the activation -----------------------------------------------------------


def test_edit_keeps_the_activation_dtype_and_device() -> None:
    plan = plan_for(build_sae(), row(3, 2.0), row(5, 1.0, "clamp", line=3))
    edit = plan.edits()[HOOK_NAME]
    h = torch.randn(2, 3, 64)
    for dtype in (torch.bfloat16, torch.float32):
        out = edit(h.to(dtype))
        assert out.dtype == dtype and out.shape == h.shape
    point = plan.points[HOOK_NAME]
    assert {key[1] for key in point._add_cache} == {torch.bfloat16, torch.float32}


# ---- errors --------------------------------------------------------------------------------


def test_d_in_mismatch_names_the_rows(model: nn.Module, input_ids: Tensor) -> None:
    plan = plan_for(build_sae(d_in=32), row(3, 1.0, line=7))
    with pytest.raises(SteeringError, match=r"steer\.csv:7.*d_in=32.*width 64"):
        activation(model, input_ids, plan)


def test_latent_out_of_range_names_the_row() -> None:
    with pytest.raises(SteeringError, match=r"steer\.csv:4 latent_idx: latent 128 .*d_sae=128"):
        plan_for(build_sae(), row(3, 1.0), row(128, 1.0, line=4))


def test_clamp_through_per_token_normalisation_is_refused() -> None:
    sae = build_sae(normalize_activations="layer_norm")
    with pytest.raises(SteeringError, match=r"steer\.csv:2 action: .*layer_norm"):
        plan_for(sae, row(3, 1.0, "clamp"))
    assert plan_for(sae, row(3, 1.0)).points[HOOK_NAME].add_vector is not None


def test_saes_disagreeing_on_d_in_at_one_hook_are_refused() -> None:
    rows = [row(3, 1.0), row(3, 1.0, sae_release="other", line=3)]
    saes = {(RELEASE, ""): build_sae(), ("other", ""): build_sae(d_in=32)}
    with pytest.raises(SteeringError, match=r"steer\.csv:2, steer\.csv:3: .*disagree on d_in"):
        plan_from_saes(rows, saes)


def test_clamp_on_hook_z_reads_the_flattened_heads(model: nn.Module, input_ids: Tensor) -> None:
    """A hook_z SAE sees (n_heads, d_head) in TransformerLens and the flat o_proj input here."""
    hook = "blocks.0.attn.hook_z"
    sae = build_sae(hook_name=hook, reshape_activations="hook_z")
    plan = plan_for(sae, row(5, 1.5, "clamp"))
    baseline = _o_proj_input(model, input_ids, None, hook)
    steered = _o_proj_input(model, input_ids, plan, hook)
    with torch.no_grad():
        heads = baseline.unflatten(-1, (4, 16))
        expected = (1.5 - sae.encode(heads)[..., 5:6]) * sae.W_dec[5]
    torch.testing.assert_close(steered - baseline, expected, atol=ATOL, rtol=1e-4)


def _o_proj_input(model: nn.Module, input_ids: Tensor, plan: SteerPlan | None, hook: str) -> Tensor:
    """The input of the attention output projection, after any steering edit."""
    seen: list[Tensor] = []
    with torch.no_grad(), attach(model, {} if plan is None else plan.edits()):
        module = locate(model, hook).module
        handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
        try:
            model(input_ids)
        finally:
            handle.remove()
    return seen[0]


# ---- loading -------------------------------------------------------------------------------


def test_local_folders_load_from_disk_and_hub_saes_fail_offline_with_a_hint(
    tmp_path: Path,
) -> None:
    folder = save_sae(build_sae("jumprelu"), tmp_path / "releases" / "layer_1")
    assert saeval.steering.sae_loading.sae_dir(str(folder), "") == folder
    assert saeval.steering.sae_loading.sae_dir(str(tmp_path / "releases"), "layer_1") == folder
    loaded = saeval.steering.sae_loading.load_sae(str(folder), "")
    assert loaded.cfg.architecture() == "jumprelu" and loaded.cfg.d_sae == 128
    assert saeval.steering.sae_loading.sae_dir("someone/tiny-saes", "layer_1") is None
    with pytest.raises(ResolutionError) as caught:
        saeval.steering.sae_loading.load_sae("someone/tiny-saes", "layer_1")
    assert caught.value.hint == saeval.steering.sae_loading.OFFLINE_HINT


def test_unknown_release_is_a_resolution_error() -> None:
    with pytest.raises(ResolutionError, match="unknown SAE release 'no-such-release'"):
        saeval.steering.sae_loading.load_sae("no-such-release", "x")
