"""The GPU check's reference: lm-eval's own ``hf`` model on the same tasks, batch size, device
and dtype as ``saeval run``, each task timed as saeval times it (one ``simple_evaluate`` call,
samples logged, after the model has loaded). Prints ``{task: seconds}`` as one JSON line.

    python -m benchmarks.gpu_check_lm_eval --model DIR --include-path TASKS --tasks a,b \\
        --device cuda:0 --dtype bfloat16 --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """Load the model once with lm-eval's ``HFLM``, evaluate each task in turn, print seconds."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check_lm_eval")
    for option in ("--model", "--include-path", "--tasks", "--device", "--dtype"):
        parser.add_argument(option, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    args = parser.parse_args(argv)
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from saeval.run.config import BOOTSTRAP_ITERS

    lm = HFLM(
        pretrained=args.model, device=args.device, dtype=args.dtype, batch_size=args.batch_size
    )
    manager = TaskManager(include_path=[args.include_path], include_defaults=False)
    seconds = {}
    for task in args.tasks.split(","):
        started = time.perf_counter()
        simple_evaluate(
            model=lm,
            tasks=[task],
            task_manager=manager,
            log_samples=True,
            bootstrap_iters=BOOTSTRAP_ITERS,
        )
        seconds[task] = round(time.perf_counter() - started, 3)
    print(json.dumps(seconds))


if __name__ == "__main__":
    main()
