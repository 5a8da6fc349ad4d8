"""What a steered configuration costs besides its score, measured on the documents it evaluated.

- **KL to the unsteered model** on the first ``kl_docs`` documents of each (sub)task: the text the
  model is conditioned on (the context of a document's first loglikelihood request, the prompt
  of a generate_until request, the text of a rolling request after lm-eval's prefix token),
  tokenized with lm-eval's own ``tok_encode`` and cut at the model's context length; one forward
  pass without and one with steering; KL(p_unsteered || p_steered) at every position, in nats.
  The baseline has none (zero by definition). Where the run's shared-prefix pass met every one of
  these contexts whole (``saeval.steering.pass_kl``), the KL is taken from it: no extra pass.
- **Quality of generations** (generate_until tasks), every document, for the baseline too (the
  pairing needs both sides): the perplexity of the generated text under the unsteered model
  (AxBench's fluency proxy), distinct-2 and the 4-gram repetition rate of its tokens. The text
  is what the model generated (lm-eval's ``resps``, cut at the stop sequence), not the answer
  the task's filters extract from it, scored as the token ids the model produced after its
  prompt's ids (``saeval.steering.generated``).

One JSON file per (sub)task beside lm-eval's samples (``saeval.records.run_folder``), in the
shape of ``saeval.records.side_effects``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from saeval.analysis.dose import dose_entry
from saeval.analysis.side_effects import distinct_2, perplexity, repetition_rate, summarize_kl
from saeval.records.json_file import json_text
from saeval.records.side_effects import kl_record, side_effects_record

if TYPE_CHECKING:
    from saeval.run.lm_eval_format import TaskOutput
    from saeval.steering.lm_eval_model import SteeredHFLM

Produced = Mapping[tuple[int, ...], list[list[int]]]  # prompt ids -> generated ids
KL_POSITIONS = "every position of the conditioning text (first request of each document)"

Counted = Callable[[str, int, int], None]  # (what, done, total): a measure's progress


def _ignore(what: str, done: int, total: int) -> None:
    """No progress wanted."""


def measure(
    lm: SteeredHFLM,
    samples_jsonl: str,
    scale: float | None,
    kl_docs: int,
    counted: Counted = _ignore,
    task: str = "",
    produced: Produced | None = None,
) -> dict[str, Any]:
    """The side-effect record of one (sub)task from its samples JSONL (lm-eval's format);
    ``counted`` hears each pass's documents done (named after ``task``); ``produced``: the ids
    generated for it (``SteeredHFLM.generated``), by prompt ids."""
    produced = produced or {}
    records = sorted(sample_records(samples_jsonl), key=lambda record: int(record["doc_id"]))
    started = time.perf_counter()
    of = f" of {task}" if task else ""
    kl = dose = None
    if scale is not None and kl_docs > 0 and records:
        kl, dose = _kl(lm, records[:kl_docs], scale, _counter(counted, f"KL documents{of}"))
    kl_seconds = time.perf_counter() - started
    generation = None
    if _is_generation(records):
        start = _counter(counted, f"generations scored{of}")
        generation = _generation(lm, records, produced, start)
    if kl is not None:
        kl["seconds"] = round(kl_seconds, 3)
    return side_effects_record(kl, generation, dose)


def side_effect_texts(
    lm: SteeredHFLM,
    output: TaskOutput,
    scale: float | None,
    kl_docs: int,
    counted: Counted = _ignore,
) -> dict[str, str]:
    """The side-effect record of every (sub)task of ``output``, as JSON texts to save (progress
    names the subtask where a group has several; it takes the generated ids the model kept
    since the last call)."""
    produced = lm.generated.take()
    named = len(output.samples) > 1
    texts = {}
    for task, samples in output.samples.items():
        name = task if named else ""
        record = measure(lm, samples, scale, kl_docs, counted, name, produced)
        texts[task] = json_text(record)
    return texts


Start = Callable[[int], Callable[[int], None]]  # a pass's total -> its done-so-far callback


def _counter(counted: Counted, what: str) -> Start:
    """Start a pass's progress: its total reported as 0 done at once, then each count."""

    def start(total: int) -> Callable[[int], None]:
        counted(what, 0, total)
        return lambda done: counted(what, done, total)

    return start


def sample_records(samples_jsonl: str) -> Iterator[dict[str, Any]]:
    for line in samples_jsonl.splitlines():
        if line.strip():
            yield json.loads(line)


def _first_argument(record: Mapping[str, Any]) -> str:
    """The first request's first argument: a context, a prompt or a rolling text."""
    return str(record["arguments"]["gen_args_0"]["arg_0"])


def _is_generation(records: list[dict[str, Any]]) -> bool:
    """Whether the records are generate_until ones (a string response, gen_kwargs argument)."""
    if not records:
        return False
    arguments = records[0]["arguments"]["gen_args_0"]
    return isinstance(arguments.get("arg_1"), dict)


def _is_rolling(records: list[dict[str, Any]]) -> bool:
    """Whether the records are loglikelihood_rolling ones (one argument: the text)."""
    return bool(records) and set(records[0]["arguments"]["gen_args_0"]) == {"arg_0"}


def conditioning_ids(lm: SteeredHFLM, records: list[dict[str, Any]]) -> list[list[int]]:
    """The token ids the model is conditioned on, as lm-eval encodes them."""
    limit = int(lm.max_length)
    prefix = [lm.prefix_token_id] if _is_rolling(records) else []
    encoded = [prefix + lm.tok_encode(_first_argument(record)) for record in records]
    return [ids[-limit:] for ids in encoded if ids]


def _kl(
    lm: SteeredHFLM, records: list[dict[str, Any]], scale: float, start: Start
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Per-document KL sums and counts, and the summary; the dose record of the same pass
    (``saeval.analysis.dose``; None where no measured position was steered)."""
    from saeval.steering import dose
    from saeval.steering.divergence import kl_per_position

    documents = conditioning_ids(lm, records)
    pad_id = lm.tokenizer.pad_token_id or 0
    rolling = _is_rolling(records)  # a rolling text is all generated; a context all prompt
    per_position = None if rolling else lm.measured_kl(scale, documents)  # in the shared pass
    doses = None if per_position is None else lm.measured_dose(scale, documents)
    if per_position is None or doses is None:
        recorded: dose.Recorded = []
        per_position = kl_per_position(
            lm.model,
            documents,
            dose.recording(lm.plan, scale, recorded),
            batch_size=batch_size_of(lm),
            pad_id=pad_id,
            prompt_ends=[0 if rolling else len(doc) for doc in documents],
            done=start(len(documents)),
        )
        doses = dose.per_document(recorded, documents, batch_size_of(lm))
    documents_kl = [
        (int(record["doc_id"]), float(sum(values)), len(values))
        for record, values in zip(records, per_position, strict=True)
    ]
    doc_ids = [doc_id for doc_id, _, _ in documents_kl]
    kl = kl_record(documents_kl, summarize_kl(per_position), KL_POSITIONS)
    return kl, dose_entry(doc_ids, doses)


def _generation(
    lm: SteeredHFLM, records: list[dict[str, Any]], produced: Produced, start: Start
) -> list[dict[str, Any]]:
    """Per document: perplexity of the generation under the unsteered model, distinct-2,
    repetition rate and its token count."""
    from saeval.steering.divergence import continuation_nll

    limit = int(lm.max_length)
    pairs = [_generated_pair(lm, record, produced) for record in records]
    pairs = [
        (prompt[-(limit - len(tokens[: limit - 1])) :], tokens[: limit - 1])
        for prompt, tokens in pairs
    ]
    pad_id = lm.tokenizer.pad_token_id or 0
    scored = [(p, g) for p, g in pairs if g]
    done = start(len(scored))
    nll = iter(
        continuation_nll(lm.model, scored, batch_size=batch_size_of(lm), pad_id=pad_id, done=done)
    )
    rows = []
    for record, (_, tokens) in zip(records, pairs, strict=True):
        total, count = next(nll) if tokens else (0.0, 0)
        rows.append(
            {
                "doc_id": int(record["doc_id"]),
                "gen_ppl": perplexity(total, count),
                "distinct_2": distinct_2(tokens),
                "repetition_4": repetition_rate(tokens),
                "gen_tokens": len(tokens),
            }
        )
    return rows


def _generated_pair(
    lm: SteeredHFLM, record: Mapping[str, Any], produced: Produced
) -> tuple[list[int], list[int]]:
    """(prompt ids, generated ids) of a document's generation, as the model saw and produced
    them: the recorded ids up to the end of lm-eval's text (``resps``, before any filter);
    where none were recorded here (a baseline from the cache, another rank's documents), the
    prompt as lm-eval encodes it and the text tokenised on its own."""
    text = str(record["resps"][0][0])
    gen_kwargs = record["arguments"]["gen_args_0"]["arg_1"]
    room = int(lm.max_length) - int(gen_kwargs.get("max_gen_toks", lm.max_gen_toks))
    encoded, _ = lm.tok_batch_encode([_first_argument(record)], left_truncate_len=room)
    prompt = encoded[0].tolist()
    for tokens in produced.get(tuple(prompt), []):
        covered = _covering(lm, tokens, text)
        if covered is not None:
            return prompt, covered
    return prompt, lm.tok_encode(text, add_special_tokens=False)


def _covering(lm: SteeredHFLM, tokens: list[int], text: str) -> list[int] | None:
    """The shortest start of ``tokens`` that decodes to ``text`` and more (lm-eval cuts the
    decoded text at a stop sequence); None if no start does."""
    for end in range(len(tokens) + 1):
        decoded = str(lm.tok_decode(tokens[:end]))
        if decoded.startswith(text):
            return tokens[:end]
        if not text.startswith(decoded.rstrip("\ufffd")):
            return None
    return None


def batch_size_of(lm: SteeredHFLM) -> int:
    """The model's batch size, or 4 where lm-eval picks it automatically."""
    size = str(lm.batch_size)
    return int(size) if size.isdigit() and int(size) > 0 else 4
