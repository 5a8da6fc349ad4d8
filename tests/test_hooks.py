"""Hook points: every mapping is checked against TransformerLens on the same tiny weights.

The TransformerLens reference is a ``HookedTransformer`` built offline from the tiny Hugging
Face model: TransformerLens's own config conversion (reading a saved ``config.json``) for
GPT-2, GPT-NeoX, Llama, Mistral, Qwen2 and Qwen3, a hand-written ``HookedTransformerConfig``
for Gemma-2/3 (TransformerLens only knows their real sizes by name); the weights go through
TransformerLens's ``convert_*_weights`` without any processing (no layer-norm folding).
``HookedTransformer`` is deprecated in favour of ``TransformerBridge``, but the bridge hooks
the very Hugging Face modules under test; ``HookedTransformer`` recomputes every activation
with its own code, which makes it the independent reference.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from builders import (
    ARCHS,
    D_MODEL,
    build_tiny_model,
    save_tiny_pretrained,
    tiny_config,
)
from tl_reference import transformer_lens_model
from torch import Tensor, nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from saeval.errors import SteeringError
from saeval.spec.hook_points import (
    HOOK_KINDS,
    SUPPORTED_MODEL_TYPES,
    check_hook_name,
    supported_hooks,
)
from saeval.steering.hooks import attach, locate

pytestmark = pytest.mark.filterwarnings("ignore:HookedTransformer is deprecated")

TOLERANCE = 1e-5


class Reference:
    """A tiny HF model and the TransformerLens model built from the same weights."""

    def __init__(self, arch: str) -> None:
        self.model = build_tiny_model(arch)
        with tempfile.TemporaryDirectory(prefix="saeval-ref-") as directory:
            self.tl = transformer_lens_model(self.model, Path(directory))


@functools.cache
def reference(arch: str) -> Reference:
    """The Reference for ``arch``, built once per test session."""
    return Reference(arch)


def _affine_edit(width: int, seed: int) -> Callable[[Tensor], Tensor]:
    """A deterministic edit ``h -> 1.5 h + v`` with a fixed random ``v``."""
    shift = torch.randn(width, generator=torch.Generator().manual_seed(seed))
    return lambda h: 1.5 * h + shift


def _hook_names(model: PreTrainedModel, kind: str) -> list[str]:
    """``blocks.L.<kind>`` for every layer of ``model``."""
    n_layers = model.config.get_text_config().num_hidden_layers
    return [f"blocks.{layer}.{kind}" for layer in range(n_layers)]


@pytest.mark.parametrize("kind", HOOK_KINDS)
@pytest.mark.parametrize("arch", ARCHS)
def test_activation_matches_transformer_lens(arch: str, kind: str, input_ids: Tensor) -> None:
    """What our hook sees at every layer equals TransformerLens's cached activation."""
    ref = reference(arch)
    names = _hook_names(ref.model, kind)
    seen: dict[str, Tensor] = {}

    def recorder(name: str) -> Callable[[Tensor], Tensor]:
        def record(h: Tensor) -> Tensor:
            seen[name] = h.detach().clone()
            return h

        return record

    with torch.no_grad(), attach(ref.model, {name: recorder(name) for name in names}):
        ref.model(input_ids)
        _, cache = ref.tl.run_with_cache(input_ids)
    for name in names:
        expected = cache[name].flatten(-2) if kind == "attn.hook_z" else cache[name]
        assert seen[name].shape == expected.shape
        assert expected.abs().max() > 100 * TOLERANCE  # a comparison that can fail
        assert (seen[name] - expected).abs().max() <= TOLERANCE, name


@pytest.mark.parametrize("kind", HOOK_KINDS)
@pytest.mark.parametrize("arch", ARCHS)
def test_edit_matches_transformer_lens(arch: str, kind: str, input_ids: Tensor) -> None:
    """Editing at the last layer's hook changes logits exactly as the same TL edit does."""
    ref = reference(arch)
    name = _hook_names(ref.model, kind)[-1]
    edit = _affine_edit(
        ref.tl.cfg.n_heads * ref.tl.cfg.d_head if kind == "attn.hook_z" else D_MODEL, 1
    )

    def tl_edit(act: Tensor, hook: Any) -> Tensor:
        return edit(act.flatten(-2)).view_as(act) if kind == "attn.hook_z" else edit(act)

    with torch.no_grad():
        baseline = ref.model(input_ids).logits
        with attach(ref.model, {name: edit}):
            steered = ref.model(input_ids).logits
        expected = ref.tl.run_with_hooks(input_ids, fwd_hooks=[(name, tl_edit)])
    assert (steered - baseline).abs().max() > 1e-3
    assert (steered - expected).abs().max() <= 1e-4


@pytest.mark.parametrize("arch", ARCHS)
def test_reference_reproduces_logits(arch: str, input_ids: Tensor) -> None:
    """The TransformerLens reference computes the same function as the HF model."""
    ref = reference(arch)
    with torch.no_grad():
        assert (ref.model(input_ids).logits - ref.tl(input_ids)).abs().max() <= 1e-4


@pytest.mark.parametrize("arch", ARCHS)
def test_identity_edits_leave_logits_bit_identical(arch: str, input_ids: Tensor) -> None:
    """Identity edits on every hook of every layer change nothing, bit for bit."""
    model = build_tiny_model(arch)
    names = [name for kind in HOOK_KINDS for name in _hook_names(model, kind)]
    with torch.no_grad():
        baseline = model(input_ids).logits
        with attach(model, dict.fromkeys(names, lambda h: h)):
            steered = model(input_ids).logits
    assert torch.equal(steered, baseline)


def _hook_count(model: nn.Module) -> int:
    """Forward hooks and pre-hooks installed anywhere in ``model``."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_hooks_are_removed_after_the_context(input_ids: Tensor) -> None:
    """After the context the model has no hooks left and computes its baseline again."""
    model = build_tiny_model("llama")
    names = [name for kind in HOOK_KINDS for name in _hook_names(model, kind)]
    with torch.no_grad():
        baseline = model(input_ids).logits
        with attach(model, dict.fromkeys(names, lambda h: h + 1.0)):
            assert _hook_count(model) == len(names)
            assert not torch.equal(model(input_ids).logits, baseline)
        assert _hook_count(model) == 0
        assert torch.equal(model(input_ids).logits, baseline)


def test_hooks_are_removed_when_the_body_raises() -> None:
    """An exception inside the context still removes every hook."""
    model = build_tiny_model("gpt2")
    with pytest.raises(RuntimeError, match="boom"), attach(model, {"blocks.0.attn.hook_z": abs}):
        raise RuntimeError("boom")
    assert _hook_count(model) == 0


def test_a_bad_hook_name_installs_nothing() -> None:
    """A mapping with one unmappable hook name raises before any hook is installed."""
    model = build_tiny_model("llama")
    edits = {"blocks.0.hook_resid_post": abs, "blocks.0.hook_resid_mid": abs}
    with pytest.raises(SteeringError), attach(model, edits):
        pass
    assert _hook_count(model) == 0


def test_edits_failing_mid_forward_leave_no_hooks(input_ids: Tensor) -> None:
    """An edit that breaks the shape raises SteeringError and the hooks still go away."""
    model = build_tiny_model("qwen2")
    with (
        torch.no_grad(),
        pytest.raises(SteeringError, match="shape"),
        attach(model, {"blocks.0.hook_resid_post": lambda h: h[..., :3]}),
    ):
        model(input_ids)
    assert _hook_count(model) == 0


class _TupleBlock(nn.Module):
    """Returns a tuple like a transformers 4.x decoder layer."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> tuple[Tensor, str]:
        return self.proj(x), "extra"


class _Toy(nn.Module):
    """A model that is not a Hugging Face model: its hooks are module names only."""

    def __init__(self) -> None:
        super().__init__()
        self.block = _TupleBlock()
        self.head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, str]:
        hidden, extra = self.block(x)
        return self.head(hidden), hidden, extra


def test_tuple_and_bare_tensor_outputs_are_edited() -> None:
    """The first element of a tuple output is replaced, the rest kept; bare tensors too."""
    torch.manual_seed(0)
    toy, x = _Toy(), torch.randn(2, 4)
    with torch.no_grad():
        _, hidden, _ = toy(x)
        with attach(toy, {"block": lambda h: h * 0.0, "block.proj": lambda h: h + 1.0}):
            logits, edited, extra = toy(x)
        assert extra == "extra"
        assert torch.equal(edited, torch.zeros_like(hidden))
        assert torch.equal(logits, toy.head(torch.zeros_like(hidden)))


def test_kwargs_only_input_is_edited() -> None:
    """An input hook edits ``hidden_states=`` when the layer is called with keywords only."""
    model = build_tiny_model("gpt2")
    block = locate(model, "blocks.0.hook_resid_pre").module
    x = torch.randn(1, 3, D_MODEL, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = block(torch.zeros_like(x))
        with attach(model, {"blocks.0.hook_resid_pre": lambda h: h * 0.0}):
            got = block(hidden_states=x)
    assert torch.equal(got, expected)


def test_two_hook_names_on_one_module_compose(input_ids: Tensor) -> None:
    """A TL name and an HF name landing on the same module apply one after the other."""
    model = build_tiny_model("llama")
    shift = torch.randn(D_MODEL, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        with attach(model, {"blocks.0.hook_resid_post": lambda h: (h + shift) * 2.0}):
            expected = model(input_ids).logits
        edits = {"blocks.0.hook_resid_post": lambda h: h + shift, "layers.0": lambda h: h * 2.0}
        with attach(model, edits):
            assert _hook_count(model) == 1
            got = model(input_ids).logits
    assert torch.equal(got, expected)


@pytest.mark.parametrize(
    ("arch", "module_name", "hook_name"),
    [
        ("llama", "layers.1", "blocks.1.hook_resid_post"),
        ("llama", "model.layers.1", "blocks.1.hook_resid_post"),
        ("llama", "layers.0.mlp", "blocks.0.hook_mlp_out"),
        ("gpt2", "h.1", "blocks.1.hook_resid_post"),
        ("gpt2", "transformer.h.0.attn", "blocks.0.hook_attn_out"),
        ("gemma2", "layers.0.post_feedforward_layernorm", "blocks.0.hook_mlp_out"),
        ("gpt_neox", "layers.1.attention", "blocks.1.hook_attn_out"),
    ],
)
def test_module_names_pass_through(arch: str, module_name: str, hook_name: str) -> None:
    """lm-eval style module names (under base_model, or full) hook that module's output."""
    model = build_tiny_model(arch)
    site = locate(model, module_name)
    assert site.on == "output"
    assert site.module is locate(model, hook_name).module
    assert site.module_name == locate(model, hook_name).module_name
    assert site.module_name.endswith(module_name)


@pytest.mark.parametrize(
    ("arch", "hook_name", "module_name", "on"),
    [
        ("gpt2", "blocks.1.hook_resid_pre", "transformer.h.1", "input"),
        ("gpt2", "blocks.0.attn.hook_z", "transformer.h.0.attn.c_proj", "input"),
        ("gpt_neox", "blocks.0.hook_mlp_out", "gpt_neox.layers.0.mlp", "output"),
        ("qwen3", "blocks.1.attn.hook_z", "model.layers.1.self_attn.o_proj", "input"),
        (
            "gemma3_text",
            "blocks.2.hook_attn_out",
            "model.layers.2.post_attention_layernorm",
            "output",
        ),
    ],
)
def test_locate_names_the_module(arch: str, hook_name: str, module_name: str, on: str) -> None:
    """locate reports the module's full name and the side it hooks."""
    site = locate(build_tiny_model(arch), hook_name)
    assert (site.module_name, site.on) == (module_name, on)


def test_unknown_architecture_names_it_and_the_supported_hooks() -> None:
    """A model type without a mapping is named in the error, with the hooks we do support."""
    from transformers import AutoConfig

    config = AutoConfig.for_model(
        "opt",
        vocab_size=50,
        hidden_size=16,
        ffn_dim=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        word_embed_proj_dim=16,
    )
    model = AutoModelForCausalLM.from_config(config)
    with pytest.raises(SteeringError) as caught:
        locate(model, "blocks.0.hook_resid_post")
    assert "'opt'" in caught.value.message
    assert "blocks.{layer}.hook_resid_post" in caught.value.message
    assert "layers" in (caught.value.hint or "")
    assert locate(model, "decoder.layers.0").on == "output"  # module names still work


def test_unmappable_hook_names_the_architecture_and_supported_hooks() -> None:
    """A TransformerLens hook we do not map is rejected with the list of those we do."""
    with pytest.raises(SteeringError) as caught:
        locate(build_tiny_model("gemma2"), "blocks.0.hook_resid_mid")
    assert "'gemma2'" in caught.value.message
    for kind in HOOK_KINDS:
        assert f"blocks.{{layer}}.{kind}" in caught.value.message


def test_layer_out_of_range_names_n_layers() -> None:
    """A layer beyond the model's depth is an error that says how deep the model is."""
    with pytest.raises(SteeringError, match="n_layers=2"):
        locate(build_tiny_model("mistral"), "blocks.2.hook_resid_post")


def test_missing_module_name_is_an_error() -> None:
    """A module name the model lacks is a SteeringError, not an AttributeError."""
    with pytest.raises(SteeringError, match=r"layers\.7"):
        locate(build_tiny_model("qwen2"), "layers.7")


@pytest.mark.parametrize("model_type", SUPPORTED_MODEL_TYPES)
def test_supported_hooks_lists_every_kind(model_type: str) -> None:
    """Every supported architecture maps all five hook kinds."""
    hooks = supported_hooks(model_type)
    assert hooks == tuple(f"blocks.{{layer}}.{kind}" for kind in HOOK_KINDS)


@pytest.mark.parametrize(
    ("model_type", "hook_name", "n_layers"),
    [
        ("gemma3_text", "blocks.17.hook_resid_post", 18),
        ("llama", "blocks.0.attn.hook_z", None),
        ("gpt2", "blocks.11.hook_mlp_out", 12),
        ("qwen2", "layers.20", 4),  # module names are checked once a model is loaded
        ("bert", "encoder.layer.3", None),
    ],
)
def test_check_hook_name_accepts(model_type: str, hook_name: str, n_layers: int | None) -> None:
    """Mappable hook names pass the offline check."""
    check_hook_name(model_type, hook_name, n_layers)


@pytest.mark.parametrize(
    ("model_type", "hook_name", "n_layers", "message"),
    [
        ("gemma3_text", "blocks.18.hook_resid_post", 18, "n_layers=18"),
        (
            "llama",
            "blocks.0.hook_resid_mid",
            None,
            "supported hooks: blocks.{layer}.hook_resid_pre",
        ),
        ("llama", "blocks.x.hook_resid_pre", None, "cannot be mapped"),
        ("llama", "hook_embed", None, "cannot be mapped"),
        ("bert", "blocks.0.hook_resid_post", None, "'bert'"),
    ],
)
def test_check_hook_name_rejects(
    model_type: str, hook_name: str, n_layers: int | None, message: str
) -> None:
    """Unmappable names, unknown architectures and layers out of range fail offline."""
    with pytest.raises(SteeringError, match=message.replace("{", r"\{").replace(".", r"\.")):
        check_hook_name(model_type, hook_name, n_layers)


def test_hooks_module_imports_without_torch() -> None:
    """Importing the hook table or the hooks module loads neither torch nor transformers."""
    code = (
        "import sys, saeval.spec.hook_points, saeval.steering.hooks; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tiny_config_keeps_overrides() -> None:
    """Builder overrides reach the config."""
    assert tiny_config("llama", num_hidden_layers=5).num_hidden_layers == 5


def test_saved_tiny_model_loads_offline(tmp_path: Path, input_ids: Tensor) -> None:
    """save_tiny_pretrained writes a folder the Auto classes load back unchanged."""
    path = save_tiny_pretrained("gemma3_text", tmp_path / "tiny")
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (
        "<bos>",
        "<eos>",
        "<pad>",
    )
    assert tokenizer.decode(tokenizer("A dog and a cat.")["input_ids"]) == "A dog and a cat."
    assert len(tokenizer) <= model.config.vocab_size
    built = build_tiny_model("gemma3_text")
    assert all(
        torch.equal(a, b) for a, b in zip(model.parameters(), built.parameters(), strict=True)
    )
    with torch.no_grad():
        assert torch.allclose(model(input_ids).logits, built(input_ids).logits, atol=1e-6)
