"""The lm-eval model: Hugging Face's ``HFLM`` with SAE steering hooks around every forward pass.

Registered as ``sae_steered`` (and as the seed's ``sae_steered_beta``), so that

    lm_eval --model sae_steered --model_args pretrained=google/gemma-2-2b,steer_path=dog.csv

works through ``saeval harness``. The model is constructed from a name or local path, never from
a model object, so ``accelerate launch`` data parallelism, ``parallelize=True`` and
``batch_size=auto`` keep working. Every request type goes through ``_model_call``
(loglikelihood, loglikelihood_rolling, the batch-size probe) or ``_model_generate``
(generate_until); both run inside ``hooks.attach``, and every ``_model_call``'s logits must be
finite (``saeval.steering.finite``). ``set_scale`` switches steering off, on or to
another strength on the loaded model, so a baseline and several strengths share one load.

Importing this module imports lm-eval's HF model (seconds): only heavy commands import it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator, Sequence
from os import PathLike
from typing import Any

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from saeval.errors import SteeringError, UsageError
from saeval.steering import dose
from saeval.steering.finite import check_logits, guarding
from saeval.steering.generated import GeneratedTokens
from saeval.steering.hooks import attach
from saeval.steering.loglikelihood_loop import Answer, Batch, Request, score
from saeval.steering.model_args import one_of, steer_plan
from saeval.steering.multi_pass import multi_pass
from saeval.steering.pass_kl import contexts_of, per_context
from saeval.steering.plan import SteerPlan
from saeval.steering.positions import (
    Positions,
    decoding_step,
    describing,
    describing_calls,
    prompt_positions,
)
from saeval.steering.shared_generation import (
    batch_key,
    describing_generation,
    eos_ids,
    generate_shared,
    own_width,
    shared_output,
)
from saeval.steering.shared_prefix import (
    HookEdits,
    Scale,
    SharedAnswers,
    edits_of,
    halves_on_oom,
    request_key,
)

MODEL_NAMES = ("sae_steered", "sae_steered_beta")


@register_model(*MODEL_NAMES)
class SteeredHFLM(HFLM):
    """``HFLM`` whose forward passes are steered by a steer file's SAE latents."""

    _shared: SharedAnswers | None = None  # open while ``sharing``

    def __init__(
        self,
        pretrained: str | PathLike[str] | None = None,
        steer_path: str | PathLike[str] | None = None,
        *,
        base_name: str | PathLike[str] | None = None,
        csv_path: str | PathLike[str] | None = None,
        scale: float | None = 1.0,
        plan: SteerPlan | None = None,
        **kwargs: Any,
    ) -> None:
        """Load ``pretrained`` (alias ``base_name``) as ``HFLM`` does (every HFLM argument is
        accepted) and steer it with ``steer_path`` (alias ``csv_path``) or a prebuilt ``plan``.
        ``scale`` multiplies every coefficient; ``None`` starts with steering off."""
        model = one_of("pretrained", pretrained, "base_name", base_name)
        if model is None:
            raise UsageError(
                "the sae_steered model needs pretrained= (or base_name=) in --model_args"
            )
        self.plan = steer_plan(one_of("steer_path", steer_path, "csv_path", csv_path), plan)
        super().__init__(pretrained=model, **kwargs)
        self.scale: float | None = None if scale is None else float(scale)
        self.key: Hashable = self.scale  # the configuration's key in shared passes
        self.variants: dict[Hashable, tuple[SteerPlan, float]] = {}  # key -> (plan, strength)
        self.generated = GeneratedTokens()  # what generate_until produced, for its measures
        self.check_plan()

    def set_scale(self, scale: float | None) -> None:
        """Steer at ``scale`` from the next request on; ``None`` switches steering off."""
        self.scale = None if scale is None else float(scale)
        self.key = self.scale

    def add_variant(self, key: Hashable, plan: SteerPlan, scale: float) -> None:
        """Know configuration ``key`` (not None) as ``plan`` at ``scale``, so that shared passes
        of configurations with different plans (an experiment's) can build its edits."""
        self.variants[key] = (plan, float(scale))

    def choose(self, key: Hashable) -> None:
        """Steer as configuration ``key`` from the next request on: a variant's plan and
        strength; ``None`` switches steering off."""
        if key is None:
            self.set_scale(None)
            return
        self.plan, scale = self.variants[key]
        self.scale, self.key = scale, key

    @contextlib.contextmanager
    def steering(self) -> Iterator[None]:
        """The steering hooks at the current scale (none while steering is off)."""
        if self.scale is None:
            yield
            return
        with attach(self.model, self.plan.edits(self.scale)):
            yield

    def check_plan(self) -> None:
        """Run one token through the steered model: unknown hooks and d_in mismatches fail here.
        With rows steering only some positions the token is run as a prompt and as a decoding
        step, so that every mode's edits run once."""
        token = self.tokenizer.bos_token_id or self.tokenizer.eos_token_id or 0
        input_ids = torch.tensor([[token]], device=self.device)
        layouts = [prompt_positions(torch.ones_like(input_ids))]
        if self.plan.needs_positions():
            layouts.append(decoding_step(1, self.device))
        with (
            torch.no_grad(),
            guarding(),
            attach(self.model, self.plan.edits(self.scale or 1.0)),
        ):
            for layout in layouts:
                with describing(layout):
                    self.model(input_ids)

    def _model_call(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """HFLM's model call, steered; every finite check of the pass is read once, after it."""
        with guarding():
            with self.steering():
                logits = super()._model_call(*args, **kwargs)
            check_logits(logits, self.scale)
        return logits

    def unsteered_call(self, ids: torch.Tensor) -> torch.Tensor:
        """HFLM's own ``_model_call`` (the hooks are the caller's)."""
        return HFLM._model_call(self, ids)

    def _detect_batch_size(self, requests: Any = None, pos: int = 0) -> int:
        """HFLM's probe for the largest batch that fits; its passes of ones are no request, so
        rows of modes other than ``all`` see them as generated text (every row computes the
        same whatever its mask: only the memory counts)."""
        if self.scale is None or not self.plan.needs_positions():
            return int(super()._detect_batch_size(requests, pos))

        def layout(call: int, input_ids: torch.Tensor) -> Positions:
            batch, length = input_ids.shape
            ends = torch.full((batch,), length, dtype=torch.long, device=input_ids.device)
            return Positions(
                start=torch.zeros_like(ends), end=ends, prompt_end=torch.zeros_like(ends)
            )

        with describing_calls(self.model, layout):
            return int(super()._detect_batch_size(requests, pos))

    def _model_generate(
        self, context: torch.Tensor, max_length: int, stop: list[str], **kwargs: Any
    ) -> torch.Tensor:
        """HFLM's generation, steered; while ``sharing``, one generation of every configuration
        sharing it (``shared_generation``). Rows of modes other than ``all`` see the prefill as
        the prompt and each later forward call (one token from the KV cache) as generated. The
        generated ids are kept in ``generated``."""
        mask = kwargs.get("attention_mask")
        shared = self._shared
        found = None
        if shared is not None and self.key in shared.scales:
            found = self._shared_generation(shared, context, max_length, stop, kwargs)
        if found is None:
            with guarding(), self.steering(), self._describing_generation(context, mask):
                found = super()._model_generate(context, max_length, stop, **kwargs)
        self.generated.record(context, mask, found)
        return found

    def _describing_generation(
        self, context: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> contextlib.AbstractContextManager[None]:
        """Describe every forward call of one ``generate`` (nothing to do without masked rows)."""
        if self.scale is None or not self.plan.needs_positions():
            return contextlib.nullcontext()
        mask = torch.ones_like(context) if attention_mask is None else attention_mask
        return describing_generation(self.model, mask)

    def _shared_generation(
        self,
        shared: SharedAnswers,
        context: torch.Tensor,
        max_length: int,
        stop: list[str],
        kwargs: dict[str, Any],
    ) -> torch.Tensor | None:
        """The current configuration's output ids, from one generation of every configuration
        sharing the batch; None after a steering error in such a pass (each generates alone)."""
        given = kwargs.get("attention_mask")
        mask = torch.ones_like(context) if given is None else given
        eos = eos_ids(kwargs, self.model.generation_config.eos_token_id)

        def generate(ids: torch.Tensor, tiled_mask: torch.Tensor) -> torch.Tensor:
            options = {**kwargs, "attention_mask": tiled_mask}
            return HFLM._model_generate(self, ids, max_length, list(stop), **options)

        def width(output: torch.Tensor) -> int:
            return own_width(output, context.shape[1], stop, self.tokenizer, eos, max_length)

        def generate_all(scales: list[Scale]) -> list[torch.Tensor]:
            edits = self._configurations(scales)
            return generate_shared(self.model, edits, context, mask, generate, width)

        key = batch_key(context, max_length, stop, kwargs)
        return shared_output(shared, self.key, key, generate_all)

    @contextlib.contextmanager
    def sharing(self, shared: SharedAnswers | None) -> Iterator[None]:
        """Inside, loglikelihood requests (and generation batches) of the configurations in
        ``shared`` are answered for all of them at once, in shared-prefix passes (one shared
        generation), the first time one of them meets them; the others take their answers from
        ``shared`` (a request without a stored answer is computed for its configuration alone).
        Under data parallelism each rank shares the passes of its own documents. ``None``
        leaves HFLM's own loop."""
        if shared is None:
            yield
            return
        previous, self._shared = self._shared, shared
        try:
            yield
        finally:
            self._shared = previous

    def _loglikelihood_tokens(
        self,
        requests: list[Request],
        disable_tqdm: bool = False,
        override_bs: int | None = None,
    ) -> list[Answer]:
        """Shared-prefix answers while ``sharing``; saeval's request loop for plans whose
        positions depend on the prompt; otherwise HFLM's own loop."""
        shared = self._shared
        if self.backend != "causal" or not requests:
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        if shared is not None and self.key in shared.scales:
            answers = self._shared_answers(shared, requests, disable_tqdm, override_bs)
        elif self.scale is not None and self.plan.needs_positions():
            answers = self._answers([self.key], requests, disable_tqdm, override_bs)[0]
        else:
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        for (request_str, _, _), answer in zip(requests, answers, strict=True):
            if request_str is not None:  # rolling windows are recorded per document
                self.cache_hook.add_partial("loglikelihood", request_str, answer)
        return answers

    def _shared_answers(
        self,
        shared: SharedAnswers,
        requests: list[Request],
        disable_tqdm: bool,
        override_bs: int | None,
    ) -> list[Answer]:
        """The current configuration's answers, from one pass of every configuration sharing it
        (after a steering error in such a pass, each configuration runs alone and meets its own)."""
        keys = [request_key(context, continuation) for _, context, continuation in requests]
        missing = [i for i, key in enumerate(keys) if shared.lookup(self.key, key) is None]
        if missing and not shared.broken:
            scales = list(shared.scales)
            if shared.measure_kl and None not in scales:
                scales.insert(0, None)  # the baseline copy gives the KL's unsteered side
            try:
                answers = self._answers(
                    scales, [requests[i] for i in missing], disable_tqdm, override_bs, shared
                )
            except SteeringError:
                shared.broken = True
            else:
                shared.store(scales, [keys[i] for i in missing], answers)
                missing = []
        found = {i: shared.lookup(self.key, key) for i, key in enumerate(keys)}
        if missing:
            alone = self._answers(
                [self.key], [requests[i] for i in missing], disable_tqdm, override_bs
            )
            found.update(zip(missing, alone[0], strict=True))
        return [_given(found[i]) for i in range(len(requests))]

    def _answers(
        self,
        scales: Sequence[Scale],
        requests: list[Request],
        disable_tqdm: bool,
        override_bs: int | None,
        kl: SharedAnswers | None = None,
    ) -> list[list[Answer]]:
        """``answers[c][i]`` of configuration ``scales[c]`` by saeval's request loop, all
        configurations of a batch in one multi-configuration pass (which also measures each
        configuration's KL into ``kl`` when it measures KL and the baseline is in the pass)."""
        from lm_eval.models import huggingface

        configurations = self._configurations(scales)
        scale_of = {id(edits): scale for edits, scale in zip(configurations, scales, strict=True)}

        def logits_of(batch: Batch) -> Iterator[torch.Tensor]:
            def forward(group: Sequence[Any]) -> torch.Tensor:
                group_scales = [scale_of[id(edits)] for edits in group]
                wanted = kl is not None and kl.measure_kl and None in group_scales
                measuring = kl if wanted else None
                contexts = None if measuring is None else contexts_of(batch, measuring.measured)
                logits, measured, doses = multi_pass(self, batch, group, contexts, group_scales)
                if measuring is not None and contexts is not None and measured is not None:
                    for scale, values in zip(group_scales, measured.tolist(), strict=True):
                        measuring.store_kl(scale, per_context(contexts, values))
                    for scale, recorded in zip(group_scales, doses, strict=True):
                        if scale is not None:
                            measuring.store_dose(scale, dose.per_context(recorded, contexts))
                return logits

            yield from (logits for _, logits in halves_on_oom(configurations, forward))

        bar = huggingface.tqdm(
            total=len(requests),
            disable=disable_tqdm or self.rank != 0,
            desc="Running loglikelihood requests",
        )
        with bar:
            answers = score(
                requests,
                max_length=self.max_length,
                batch_size=self._request_batch_size(requests, override_bs),
                logits_of=logits_of,
                configurations=len(configurations),
                device=self.device,
                softmax_dtype=self.softmax_dtype,
                done=bar.update,
            )
        return answers

    def _configurations(self, scales: Sequence[Scale]) -> list[HookEdits]:
        """The edits of each configuration (``shared_prefix.edits_of``)."""
        return [edits_of(self.plan, self.variants, key) for key in scales]

    def measured_kl(
        self, scale: float, contexts: Sequence[Sequence[int]]
    ) -> list[list[float]] | None:
        """Configuration ``scale``'s KL at every position of each of ``contexts``, as the shared
        passes measured it while ``sharing`` (the chosen configuration's, at its strength);
        None unless they measured every one."""
        key = self.key if scale == self.scale else scale
        return None if self._shared is None else self._shared.kl_of(key, contexts)

    def measured_dose(
        self, scale: float, contexts: Sequence[Sequence[int]]
    ) -> list[dose.PerHook] | None:
        """Configuration ``scale``'s dose per hook point at every position of each of
        ``contexts``, as the shared passes measured it beside the KL; None unless they did."""
        key = self.key if scale == self.scale else scale
        return None if self._shared is None else self._shared.dose_of(key, contexts)

    def _request_batch_size(self, requests: list[Request], override_bs: int | None) -> int:
        """Rows per batch: the lm's batch size; for ``auto``, HFLM's probe on the longest."""
        if self.batch_size != "auto":
            return int(self.batch_size)
        if override_bs:
            return override_bs
        longest = max(requests, key=lambda request: len(request[1]) + len(request[2]))
        return int(self._detect_batch_size([longest], 0))


def _given(answer: Answer | None) -> Answer:
    assert answer is not None, "every request has a stored or a computed answer"
    return answer
