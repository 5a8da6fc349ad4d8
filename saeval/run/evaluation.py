"""Load the steered model once, and evaluate one task on it with ``lm_eval.simple_evaluate``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saeval.errors import ResolutionError, ResultsError, TaskError
from saeval.run.config import BOOTSTRAP_ITERS, RunConfig, RunEvents
from saeval.run.environment import collect_env_once, model_facts
from saeval.run.lm_eval_format import TaskOutput, task_output
from saeval.spec.chat_template import template_problem

if TYPE_CHECKING:
    from lm_eval.loggers import EvaluationTracker

    from saeval.records.run_record import Manifest, ModelRecord
    from saeval.spec.steer_rows import AnyRow
    from saeval.spec.tasks import TaskSet
    from saeval.steering.lm_eval_model import SteeredHFLM

_TOKENIZER_PROBE = "The quick brown fox"  # any tokenizer with a vocabulary gives tokens for it


def steered_lm(
    rows: Sequence[AnyRow], model_id: str, device: str, dtype: str, batch_size: str | int
) -> SteeredHFLM:
    """The lm-eval model with the rows' plan (SAEs on the CPU, steering off); one-line errors
    for a model folder or tokenizer that cannot work."""
    from safetensors import SafetensorError

    from saeval.steering.lm_eval_model import SteeredHFLM
    from saeval.steering.plan import plan_rows
    from saeval.steering.sae_loading import row_loader

    check_model_folder(model_id)
    plan = plan_rows(rows, row_loader(rows, device="cpu", dtype="float32"))
    try:
        lm = SteeredHFLM(
            pretrained=model_id,
            plan=plan,
            scale=None,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
        )
    except (OSError, ValueError, SafetensorError) as error:
        reason = " ".join(str(error).split())
        raise ResolutionError(f"cannot load model {model_id}: {reason}") from None
    if not lm.tok_encode(_TOKENIZER_PROBE):
        raise ResolutionError(
            f"cannot load model {model_id}: its tokenizer turns text into no tokens "
            "(a model folder without tokenizer files gets an empty one)",
            hint="save the model's tokenizer into the folder: tokenizer.save_pretrained(FOLDER)",
        )
    return lm


@dataclass(frozen=True)
class Loaded:
    """A loaded model, what it is (``run.json``'s model record) and how long loading took."""

    lm: SteeredHFLM
    facts: ModelRecord
    seconds: float


def load_model(
    config: RunConfig, rows: Sequence[AnyRow], model_id: str, device: str, events: RunEvents
) -> Loaded:
    """Build the rows' steer plan and load the model once (steering off); it writes nothing
    (``record_model`` records it in the run folder's manifest)."""
    events.note(f"loading {model_id} on {device}")
    started = time.perf_counter()
    lm = steered_lm(rows, model_id, device, config.dtype, config.batch_size)
    if config.apply_chat_template:
        missing = template_problem(model_id, getattr(lm.tokenizer, "chat_template", None))
        if missing is not None:
            raise missing
    facts = model_facts(lm, model_id, device, config.batch_size)
    return Loaded(lm, facts, round(time.perf_counter() - started, 3))


def record_model(manifest: Manifest, loaded: Loaded, folder: Path, timing: str) -> None:
    """Put the loaded model into ``manifest`` (its load time under ``timing``); ResultsError if
    the run started with another revision of it. The caller saves the manifest."""
    before = manifest.model.revision
    if before is not None and before != loaded.facts.revision:
        raise ResultsError(
            f"{loaded.facts.id} changed since {folder} started (revision {before} -> "
            f"{loaded.facts.revision})",
            hint="start a new run without --resume",
        )
    manifest.timings[timing] = loaded.seconds
    manifest.model = loaded.facts


def check_model_folder(model: str) -> None:
    """A local model folder's safetensors files are complete (their headers say how long they
    are), so a damaged one is named before transformers fails without naming it."""
    from saeval.spec.safetensors_header import read_header

    folder = Path(model).expanduser()
    if folder.is_dir():
        for weights in sorted(folder.glob("*.safetensors")):
            read_header(weights)


def evaluate(lm: SteeredHFLM, task: str, config: RunConfig, tasks: TaskSet) -> TaskOutput:
    """One ``simple_evaluate`` call on one task, with samples logged, at the model's scale."""
    from dataclasses import asdict as fields_of

    from lm_eval.loggers import EvaluationTracker
    from lm_eval.utils import sanitize_model_name

    tracker = EvaluationTracker()
    results = _simple_evaluate(lm, task, config, tasks, tracker)
    if results is None:
        raise TaskError(f"lm-eval returned no results for {task} (not rank 0?)")
    general = tracker.general_config_tracker
    general.log_end_time()
    general.model_source = "sae_steered"
    general.model_name = str(lm.model.name_or_path)
    general.model_name_sanitized = sanitize_model_name(general.model_name)
    return task_output(results, fields_of(general))


def evaluate_share(lm: SteeredHFLM, task: str, config: RunConfig, tasks: TaskSet) -> None:
    """A data parallel rank other than 0: its share of the documents of the ``evaluate`` call
    rank 0 makes (lm-eval gathers the results at rank 0; this rank gets none)."""
    from lm_eval.loggers import EvaluationTracker

    _simple_evaluate(lm, task, config, tasks, EvaluationTracker())


def _simple_evaluate(
    lm: SteeredHFLM, task: str, config: RunConfig, tasks: TaskSet, tracker: EvaluationTracker
) -> dict[str, Any] | None:
    """``lm_eval.simple_evaluate`` of one task with the run's options (None off rank 0)."""
    from lm_eval import simple_evaluate

    collect_env_once()
    seeds = config.seeds
    results: dict[str, Any] | None = simple_evaluate(
        model=lm,
        tasks=[task],
        num_fewshot=config.num_fewshot,
        batch_size=config.batch_size,
        device=str(lm.device),
        limit=config.limit,
        log_samples=True,
        bootstrap_iters=BOOTSTRAP_ITERS,
        evaluation_tracker=tracker,
        apply_chat_template=config.apply_chat_template,
        system_instruction=config.system_instruction,
        gen_kwargs=config.gen_kwargs,
        task_manager=tasks.manager,
        random_seed=seeds["random"],
        numpy_random_seed=seeds["numpy"],
        torch_random_seed=seeds["torch"],
        fewshot_random_seed=seeds["fewshot"],
    )
    return results
