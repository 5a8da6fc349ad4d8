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
from collections.abc import Iterator
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from saeval.errors import UsageError
from saeval.spec.steer_file import read_steer_file
from saeval.steering.finite import check_logits
from saeval.steering.hooks import attach
from saeval.steering.plan import SteerPlan, build_plan

MODEL_NAMES = ("sae_steered", "sae_steered_beta")


@register_model(*MODEL_NAMES)
class SteeredHFLM(HFLM):
    """``HFLM`` whose forward passes are steered by a steer file's SAE latents."""

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
        """Run one token through the steered model: unknown hooks and d_in mismatches fail here."""
        token = self.tokenizer.bos_token_id or self.tokenizer.eos_token_id or 0
        with (
            torch.no_grad(),
            attach(self.model, self.plan.edits(self.scale or 1.0)),
        ):
            self.model(torch.tensor([[token]], device=self.device))

    def _model_call(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        with self.steering():
            logits = super()._model_call(*args, **kwargs)
        check_logits(logits, self.scale)
        return logits

    def _model_generate(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        with self.steering():
            return super()._model_generate(*args, **kwargs)


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
