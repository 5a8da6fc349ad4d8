"""How long the demo takes, said before it starts: documents x configurations at a rate measured
on this project's reference machine (2 CPU cores; a GPU is several times faster)."""

from __future__ import annotations

from collections.abc import Sequence

from saeval.demo.paths import TASKS_SOURCE_DIR

# Seconds per document and configuration (every request of it, KL and generation measures
# included), measured with `saeval demo` on 2 CPU cores: see README, "The demo".
SECONDS_PER_DOCUMENT = 0.4
CONVERSION_SECONDS = 60.0  # the first run converts the model from its GGUF
KNOWLEDGE_FILE = "knowledge.jsonl"
PROMPTED_FILES = ("dog_preference.jsonl", KNOWLEDGE_FILE)  # saeval.demo.prompting's tasks


def task_sizes() -> dict[str, int]:
    """Documents per demo task file (``knowledge.jsonl``: 108, ...)."""
    return {
        path.name: sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        for path in sorted(TASKS_SOURCE_DIR.glob("*.jsonl"))
    }


def documents(limit: int | None, only: str | None = None) -> int:
    """Documents one configuration evaluates (each task cut at ``limit``; ``only`` one file)."""
    sizes = task_sizes()
    chosen = [size for name, size in sizes.items() if only is None or name == only]
    return sum(size if limit is None else min(size, limit) for size in chosen)


def estimate_seconds(
    scales: Sequence[float], limit: int | None, *, first_position: bool, converted: bool
) -> float:
    """Seconds the demo should take on 2 CPU cores: the baseline and each strength on every
    task, the knowledge task once more when ``first_position``, the prompted run (two
    configurations of two tasks), the conversion if not done."""
    work = documents(limit) * (1 + len(scales))
    if first_position:
        work += documents(limit, only=KNOWLEDGE_FILE)
    work += 2 * sum(documents(limit, only=name) for name in PROMPTED_FILES)
    return work * SECONDS_PER_DOCUMENT + (0.0 if converted else CONVERSION_SECONDS)


def estimate_sentence(
    scales: Sequence[float], limit: int | None, *, first_position: bool, converted: bool
) -> str:
    """'the demo evaluates 182 documents x 5 configurations: about 7 minutes on 2 CPU cores ...'."""
    seconds = estimate_seconds(scales, limit, first_position=first_position, converted=converted)
    minutes = max(1, round(seconds / 60))
    return (
        f"the demo evaluates {documents(limit)} documents x {1 + len(scales)} configurations"
        f"{' (+ knowledge once more)' if first_position else ''}, then 2 of its tasks asked "
        f"with a prompt: about {minutes} minute"
        f"{'s' if minutes != 1 else ''} on 2 CPU cores, less on a GPU"
        f"{'' if converted else ', including converting the model once'}"
    )
