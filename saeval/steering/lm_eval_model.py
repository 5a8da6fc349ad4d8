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
from collections.abc import Iterator, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from saeval.errors import SteeringError, UsageError
from saeval.spec.steer_file import read_steer_file
from saeval.steering.finite import check_logits
from saeval.steering.generated import GeneratedTokens
from saeval.steering.hooks import attach
from saeval.steering.plan import SteerPlan, build_plan
from saeval.steering.positions import (
    Positions,
    decoding_step,
    describing,
    describing_calls,
    prompt_positions,
)
from saeval.steering.scoring import Answer, Batch, Request, keeping, score
from saeval.steering.shared_prefix import (
    Scale,
    SharedAnswers,
    expanded,
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
        model = _one_of("pretrained", pretrained, "base_name", base_name)
        if model is None:
            raise UsageError(
                "the sae_steered model needs pretrained= (or base_name=) in --model_args"
            )
        self.plan = _steer_plan(_one_of("steer_path", steer_path, "csv_path", csv_path), plan)
        super().__init__(pretrained=model, **kwargs)
        self.scale: float | None = None if scale is None else float(scale)
        self.generated = GeneratedTokens()  # what generate_until produced, for its measures
        self.check_plan()

    def set_scale(self, scale: float | None) -> None:
        """Steer at ``scale`` from the next request on; ``None`` switches steering off."""
        self.scale = None if scale is None else float(scale)

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
            attach(self.model, self.plan.edits(self.scale or 1.0)),
        ):
            for layout in layouts:
                with describing(layout):
                    self.model(input_ids)

    def _model_call(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        with self.steering():
            logits = super()._model_call(*args, **kwargs)
        check_logits(logits, self.scale)
        return logits

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
        """HFLM's generation, steered; rows of modes other than ``all`` see the prefill as the
        prompt and each later forward call (one token from the KV cache) as generated. The
        generated ids are kept in ``generated``."""
        mask = kwargs.get("attention_mask")
        with self.steering(), self._describing_generation(context, mask):
            output: torch.Tensor = super()._model_generate(context, max_length, stop, **kwargs)
        self.generated.record(context, mask, output)
        return output

    def _describing_generation(
        self, context: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> contextlib.AbstractContextManager[None]:
        """Describe every forward call of one ``generate`` (nothing to do without masked rows)."""
        if self.scale is None or not self.plan.needs_positions():
            return contextlib.nullcontext()
        mask = torch.ones_like(context) if attention_mask is None else attention_mask
        prompt = prompt_positions(mask)

        def layout(call: int, input_ids: torch.Tensor) -> Positions:
            expected = context.shape[1] if call == 0 else 1
            if input_ids.shape[1] != expected:
                step = "the prefill" if call == 0 else f"decoding step {call}"
                raise SteeringError(
                    f"generate ran {step} over {input_ids.shape[1]} positions, not {expected}, "
                    "so saeval cannot tell prompt from generated positions",
                    hint="positions modes other than all need generation with the KV cache "
                    "and no chunked prefill",
                )
            return prompt if call == 0 else decoding_step(context.shape[0], context.device)

        return describing_calls(self.model, layout)

    @contextlib.contextmanager
    def sharing(self, shared: SharedAnswers | None) -> Iterator[None]:
        """Inside, loglikelihood requests of the configurations in ``shared`` are answered for
        all of them at once, in shared-prefix passes, the first time one of them meets them;
        the others take their answers from ``shared`` (a request without a stored answer is
        computed for its configuration alone). ``None``, or data parallelism (every rank must
        take the same collectives), leaves HFLM's own loop."""
        if shared is None or self.world_size > 1:
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
        if shared is not None and self.scale in shared.scales:
            answers = self._shared_answers(shared, requests, disable_tqdm, override_bs)
        elif self.scale is not None and self.plan.needs_positions():
            answers = self._answers([self.scale], requests, disable_tqdm, override_bs)[0]
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
        missing = [i for i, key in enumerate(keys) if shared.lookup(self.scale, key) is None]
        if missing and not shared.broken:
            scales = list(shared.scales)
            try:
                answers = self._answers(
                    scales, [requests[i] for i in missing], disable_tqdm, override_bs
                )
            except SteeringError:
                shared.broken = True
            else:
                shared.store(scales, [keys[i] for i in missing], answers)
                missing = []
        found = {i: shared.lookup(self.scale, key) for i, key in enumerate(keys)}
        if missing:
            alone = self._answers(
                [self.scale], [requests[i] for i in missing], disable_tqdm, override_bs
            )
            found.update(zip(missing, alone[0], strict=True))
        return [_given(found[i]) for i in range(len(requests))]

    def _answers(
        self,
        scales: Sequence[Scale],
        requests: list[Request],
        disable_tqdm: bool,
        override_bs: int | None,
    ) -> list[list[Answer]]:
        """``answers[c][i]`` of configuration ``scales[c]`` by saeval's request loop, all
        configurations of a batch in one multi-configuration pass."""
        from lm_eval.models import huggingface

        configurations = [{} if scale is None else self.plan.edits(scale) for scale in scales]

        def logits_of(batch: Batch) -> Iterator[torch.Tensor]:
            def forward(group: Sequence[Any]) -> torch.Tensor:
                ids, keep = batch.tiled(len(group))
                with expanded(self.model, group, len(batch.rows)), keeping(self.model, keep):
                    return HFLM._model_call(self, ids)

            for index, logits in halves_on_oom(configurations, forward):
                check_logits(logits, scales[index])
                yield logits

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


def load_plan(steer_path: str | PathLike[str]) -> SteerPlan:
    """Read a steer file (any dialect, or lm-eval's .pt) and build its plan (SAEs on the CPU;
    edits move to each activation)."""
    return build_plan(read_steer_file(Path(steer_path)))


def _steer_plan(steer_path: str | None, plan: SteerPlan | None) -> SteerPlan:
    """The plan given, or the one built from the steer file given (exactly one of them)."""
    if steer_path is not None and plan is not None:
        raise UsageError("give steer_path or a prebuilt plan, not both")
    if steer_path is not None:
        return load_plan(steer_path)
    if plan is None:
        raise UsageError("the sae_steered model needs steer_path= (or csv_path=) in --model_args")
    return plan


def _one_of(name: str, value: Any, alias: str, alias_value: Any) -> str | None:
    """The value of an argument given under its own name or under its seed alias."""
    if value is not None and alias_value is not None:
        raise UsageError(f"give {name} or its alias {alias}, not both")
    chosen = value if value is not None else alias_value
    if chosen is not None and not isinstance(chosen, str | PathLike):
        raise UsageError(
            f"{name} must be a model name or path, not a {type(chosen).__name__}",
            hint="a name keeps accelerate data parallelism and parallelize=True working",
        )
    return None if chosen is None else str(chosen)
