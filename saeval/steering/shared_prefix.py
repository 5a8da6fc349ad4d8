"""One forward pass for several configurations: the unsteered layers run once.

Steering at layer L leaves layers 0..L-1 untouched, so every configuration (the baseline, each
strength) computes the same activations there. ``expanded`` runs a batch of ``k`` copies of the
same ``rows`` rows (the input ids tiled): forward pre-hooks on the shared decoder layers cut the
hidden state and every batch-shaped argument (attention masks, rotary position embeddings) to
the first copy, so those layers compute once; a forward hook on the last shared layer tiles its
output back to ``k`` copies (registered before the steering hooks, so a ``hook_resid_post`` of
that layer sees the copies); then configuration ``c``'s edits act on copy ``c`` alone.

``SharedAnswers`` holds the answers (and generations, see ``shared_generation``) of such passes
for the configurations of one task that lm-eval evaluates one after the other, until each has
taken its own.
"""

from __future__ import annotations

import gc
import hashlib
from array import array
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from saeval.steering.hooks import Edit, attach, decoder_layers, locate
from saeval.steering.module_hooks import ModuleHook, registered
from saeval.steering.pass_kl import ContextKey, context_key

if TYPE_CHECKING:
    from torch import Tensor, nn

    from saeval.steering.dose import PerHook
    from saeval.steering.loglikelihood_loop import Answer
    from saeval.steering.plan import SteerPlan

HookEdits = Mapping[str, Edit]  # hook name -> edit; {} for the baseline
Scale = Hashable  # a configuration's key: its strength in a sweep, None for the baseline
RequestKey = bytes  # a digest of (context_enc, continuation_enc)


Variants = Mapping[Hashable, "tuple[SteerPlan, float]"]  # key -> (plan, strength)


def edits_of(plan: SteerPlan, variants: Variants, key: Scale) -> HookEdits:
    """Configuration ``key``'s edits: none for the baseline (None), a variant's plan at its
    strength, else ``plan`` at the strength the key is (a sweep's keys are its strengths)."""
    if key is None:
        return {}
    own, strength = planned(plan, variants, key)
    return own.edits(strength)


def planned(plan: SteerPlan, variants: Variants, key: Hashable) -> tuple[SteerPlan, float]:
    """The plan and strength of steered configuration ``key``: a variant's own, else ``plan``
    at the strength the key is."""
    if key in variants:
        return variants[key]
    return plan, float(key)  # type: ignore[arg-type]


def strength_of(variants: Variants, key: Scale) -> float | None:
    """The steering strength of configuration ``key`` (None: the baseline)."""
    if key in variants:
        return variants[key][1]
    return None if key is None else float(key)  # type: ignore[arg-type]


def shared_layers(model: nn.Module, hook_names: Sequence[str]) -> int:
    """How many complete decoder layers run before the earliest of ``hook_names``:
    ``blocks.j.hook_resid_pre`` and the hooks inside layer j give j,
    ``blocks.j.hook_resid_post`` j + 1; a module outside the decoder layers 0."""
    layers = decoder_layers(model)
    if layers is None:
        return 0
    return min((_layers_before(model, layers, name) for name in hook_names), default=len(layers))


def _layers_before(model: nn.Module, layers: nn.ModuleList, hook_name: str) -> int:
    site = locate(model, hook_name)
    for j, layer in enumerate(layers):
        if site.module is layer:
            return j + 1 if site.on == "output" else j
        if any(site.module is module for module in layer.modules()):
            return j
    return 0


@contextmanager
def expanded(model: nn.Module, configurations: Sequence[HookEdits], rows: int) -> Iterator[int]:
    """While open, a forward pass of ``len(configurations)`` copies of ``rows`` rows computes
    the shared layers once and applies configuration ``c``'s edits to copy ``c`` alone; yields
    the number of shared layers."""
    copies = len(configurations)
    names = list(dict.fromkeys(name for edits in configurations for name in edits))
    layers = decoder_layers(model)
    shared = shared_layers(model, names) if copies > 1 and layers is not None else 0
    cuts = shared_once(layers[:shared], copies, rows) if shared and layers is not None else []
    edits = {name: per_copy(configurations, name, rows) for name in names}
    with registered(*cuts), attach(model, edits):
        yield shared


def shared_once(shared: nn.ModuleList, copies: int, rows: int) -> list[ModuleHook]:
    """Hooks making the ``shared`` layers compute one copy of a batch of ``copies`` copies of
    ``rows`` rows, their last one's output tiled back to every copy (register edits after)."""
    cut = _first_copy(copies * rows, rows)
    hooks = [ModuleHook(layer, cut, on="input", with_kwargs=True) for layer in shared]
    return [*hooks, ModuleHook(shared[-1], _tiled(copies))]


def _first_copy(total: int, rows: int) -> Any:
    """A forward pre-hook cutting every batch-shaped argument of ``total`` rows to ``rows``."""

    def cut(value: Any) -> Any:
        import torch

        if isinstance(value, torch.Tensor) and value.ndim >= 2 and value.shape[0] == total:
            return value[:rows]
        if isinstance(value, tuple):
            return tuple(cut(item) for item in value)
        return value

    def pre_hook(
        module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return cut(args), {name: cut(value) for name, value in kwargs.items()}

    return pre_hook


def _tiled(copies: int) -> Any:
    """A forward hook repeating a layer's output (a tensor, or a tuple's first) ``copies`` times."""

    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (_repeat(output[0], copies), *output[1:])
        return _repeat(output, copies)

    return hook


def _repeat(h: Tensor, copies: int) -> Tensor:
    return h.repeat(copies, *([1] * (h.ndim - 1)))


def per_copy(configurations: Sequence[HookEdits], hook_name: str, rows: int) -> Edit:
    """One edit for the whole batch: configuration ``c``'s edit on copy ``c`` (a configuration
    without ``hook_name`` leaves its copy alone)."""

    def edit(h: Tensor) -> Tensor:
        import torch

        copies = h.split(rows)
        assert len(copies) == len(configurations), f"{h.shape[0]} rows, {rows} per copy"
        return torch.cat(
            [
                edits[hook_name](copy) if hook_name in edits else copy
                for edits, copy in zip(configurations, copies, strict=True)
            ]
        )

    return edit


def halves_on_oom(
    configurations: Sequence[HookEdits], forward: Any
) -> Iterator[tuple[int, Tensor]]:
    """``(index, logits)`` per configuration from ``forward(group)`` (a tensor of the group's
    copies), halving the group and trying again whenever the device runs out of memory."""
    import torch

    try:
        logits = forward(configurations)
    except torch.OutOfMemoryError:
        if len(configurations) == 1:
            raise
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = len(configurations) // 2
        yield from halves_on_oom(configurations[:half], forward)
        for index, kept in halves_on_oom(configurations[half:], forward):
            yield half + index, kept
        return
    yield from enumerate(logits.split(logits.shape[0] // len(configurations)))


def request_key(context: Sequence[int], continuation: Sequence[int]) -> RequestKey:
    """A 128-bit digest of a request's tokens: small enough to keep for every request of a
    task until its last configuration has run."""
    tokens = array("q", [len(context), *context, *continuation])
    return hashlib.blake2b(tokens.tobytes(), digest_size=16).digest()


@dataclass
class SharedAnswers:
    """The answers of shared passes, per configuration, until each configuration has run; with
    ``measure_kl`` also each configuration's KL to the baseline at every position of each
    context the passes met (``saeval.steering.pass_kl``)."""

    scales: list[Scale]
    measure_kl: bool = False
    answers: dict[Scale, dict[RequestKey, Answer]] = field(default_factory=dict)
    generations: dict[Scale, dict[RequestKey, Tensor]] = field(default_factory=dict)
    broken: bool = False  # a shared pass met a steering error: each configuration runs alone
    kl: dict[Scale, dict[ContextKey, list[float]]] = field(default_factory=dict)
    measured: set[ContextKey] = field(default_factory=set)  # contexts with every scale's KL
    dose: dict[Scale, dict[ContextKey, PerHook]] = field(default_factory=dict)  # beside the KL

    def store_kl(self, scale: Scale, found: Mapping[ContextKey, list[float]]) -> None:
        """Keep configuration ``scale``'s KL at every position of the contexts in ``found``."""
        self.kl.setdefault(scale, {}).update(found)
        self.measured.update(found)

    def store_dose(self, scale: Scale, found: Mapping[ContextKey, PerHook]) -> None:
        """Keep configuration ``scale``'s dose per hook point at every position of ``found``'s
        contexts (``saeval.steering.dose``), measured in the pass that measured their KL."""
        self.dose.setdefault(scale, {}).update(found)

    def dose_of(self, scale: Scale, contexts: Sequence[Sequence[int]]) -> list[PerHook] | None:
        """Configuration ``scale``'s dose per hook point at every position of each of
        ``contexts``; None unless the shared passes measured every one of them."""
        found = self.dose.get(scale, {})
        values = [found.get(context_key(context)) for context in contexts]
        return None if any(value is None for value in values) else [v or {} for v in values]

    def kl_of(self, scale: Scale, contexts: Sequence[Sequence[int]]) -> list[list[float]] | None:
        """Configuration ``scale``'s KL at every position of each of ``contexts``; None unless
        the shared passes measured every one of them."""
        found = self.kl.get(scale, {})
        values = [found.get(context_key(context)) for context in contexts]
        if any(
            value is None or len(value) != len(context)
            for value, context in zip(values, contexts, strict=True)
        ):
            return None
        return [value for value in values if value is not None]

    def store(self, scales: Sequence[Scale], keys: Sequence[RequestKey], answers: Any) -> None:
        """Keep ``answers[c][i]`` of request ``keys[i]`` for configuration ``scales[c]``."""
        for scale, per_request in zip(scales, answers, strict=True):
            self.answers.setdefault(scale, {}).update(zip(keys, per_request, strict=True))

    def lookup(self, scale: Scale, key: RequestKey) -> Answer | None:
        """The stored answer of configuration ``scale`` to request ``key``, if any."""
        return self.answers.get(scale, {}).get(key)

    def store_generations(self, scales: Sequence[Scale], key: RequestKey, outputs: Any) -> None:
        """Keep ``outputs[c]``, configuration ``scales[c]``'s generation of batch ``key``."""
        for scale, output in zip(scales, outputs, strict=True):
            self.generations.setdefault(scale, {})[key] = output

    def generation(self, scale: Scale, key: RequestKey) -> Tensor | None:
        """The stored generation of configuration ``scale`` for batch ``key``, if any."""
        return self.generations.get(scale, {}).get(key)

    def finished(self, scale: Scale) -> None:
        """Configuration ``scale`` has run: forget its answers and leave it out of later passes."""
        self.answers.pop(scale, None)
        self.generations.pop(scale, None)
        self.kl.pop(scale, None)
        self.dose.pop(scale, None)
        if scale in self.scales:
            self.scales.remove(scale)
