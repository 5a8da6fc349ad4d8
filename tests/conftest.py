"""Test-wide settings (no test may reach the Hugging Face hub or the user's caches), the one way
tests run the CLI, and shared fixtures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from torch import Tensor
    from typer.testing import Result

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# `make test` runs two pytest-xdist workers, one per core: each (and every saeval process it
# starts) computes on one thread, so the two do not fight over the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
# No output width depends on the terminal the suite runs in: a test that needs one asks for it
# (``invoke(columns=...)``, ``run_saeval(columns=...)``); otherwise output is piped output.
os.environ.pop("COLUMNS", None)
# No test reads or writes the user's caches: saeval's (demo model, SAE, tasks) and the one where
# `datasets` keeps every data file lm-eval's local tasks load are folders of this run. A test
# that needs the real demo model uses ``demo_cache``.
_SCRATCH = Path(tempfile.mkdtemp(prefix="saeval-tests-"))
os.environ["SAEVAL_CACHE"] = str(_SCRATCH / "saeval")
os.environ["HF_DATASETS_CACHE"] = str(_SCRATCH / "datasets")

REPO = Path(__file__).resolve().parents[1]
# A guard against a hung child process, below CI's own 90-minute limit: never a speed check.
HANG_S = 85 * 60
SEQ_LEN = 9  # longer than the Gemma sliding window (4), so local attention matters
# The architectures the shared-pass tests compare (Gemma-2: soft-capped logits), and the two
# hook points their steer files edit: two layers, layer 0 shared.
PASS_ARCHS = ("gpt2", "llama", "gemma2", "gemma3_text")
PASS_HOOKS = ("blocks.0.hook_resid_post", "blocks.1.hook_mlp_out")


def pytest_configure(config: pytest.Config) -> None:
    """One compute thread in an xdist worker (see OMP_NUM_THREADS above), set before any test."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove this run's caches."""
    shutil.rmtree(_SCRATCH, ignore_errors=True)


def invoke(*args: str | Path, columns: int | None = None) -> Result:
    """`saeval ARGS` in-process, seen as a user sees it: piped to a file (saeval's consoles at
    their piped width, no COLUMNS) or, with ``columns``, in a terminal that many columns wide.

    saeval's consoles take their width when first imported, so setting COLUMNS alone would change
    only what Typer prints (help); both are set here, for this call only.
    """
    from typer.testing import CliRunner

    from saeval.cli import console
    from saeval.cli.main import app

    width = columns or console.PIPED_WIDTH
    widths = console.out.width, console.err.width
    console.out.width = console.err.width = width
    try:
        environment = {"COLUMNS": None if columns is None else str(columns)}
        return CliRunner(env=environment).invoke(app, [str(arg) for arg in args])
    finally:
        console.out.width, console.err.width = widths


def run_saeval(
    *args: str | Path,
    cwd: Path,
    columns: int | None = None,
    env: Mapping[str, str | None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m saeval ARGS` of this tree in a fresh process run from ``cwd``, its output
    captured as text: piped (no COLUMNS) or, with ``columns``, in a terminal that wide. ``env``
    sets variables, or with None removes them."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    changes = {"PYTHONPATH": path, "COLUMNS": None if columns is None else str(columns)}
    environment = dict(os.environ)
    for name, value in {**changes, **(env or {})}.items():
        environment.pop(name, None)
        if value is not None:
            environment[name] = value
    return subprocess.run(
        [sys.executable, "-m", "saeval", *map(str, args)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=HANG_S,
        check=False,
    )


@pytest.fixture(scope="session")
def demo_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saeval cache kept between test runs in pytest's cache folder (``.pytest_cache``), so the
    Gemma 3 270M demo model is converted once per checkout, not once per run; a temporary folder
    when pytest runs without its cache."""
    cache = getattr(request.config, "cache", None)
    if cache is None:
        return tmp_path_factory.mktemp("saeval-demo-cache")
    return Path(cache.mkdir("saeval-demo-cache"))


@pytest.fixture(scope="session")
def input_ids() -> Tensor:
    """Two rows of ``SEQ_LEN`` tokens from the tiny tokenizer (no padding)."""
    import torch
    from builders import train_tiny_tokenizer

    tokenizer = train_tiny_tokenizer()
    texts = ["The quick brown fox jumps over the lazy dog.", "Paris is the capital of France."]
    return torch.tensor([tokenizer(text)["input_ids"][:SEQ_LEN] for text in texts])


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What most end-to-end tests steer: a tiny GPT-2 folder (``model/``), a tiny standard SAE
    on its last layer (``sae/``), ``steer.csv`` adding latents 3 and 5 of it, and the three
    local lm-eval tasks (``tasks/``: multiple choice, generation, rolling perplexity)."""
    from builders import save_tiny_pretrained
    from sae_builders import build_sae, save_sae, write_steer_csv, write_tasks

    root = tmp_path_factory.mktemp("tiny-bundle")
    save_tiny_pretrained("gpt2", root / "model")
    save_sae(build_sae("standard", seed=1), root / "sae")
    write_steer_csv(root / "steer.csv", [(3, 8.0, root / "sae", ""), (5, -4.0, root / "sae", "")])
    write_tasks(root / "tasks")
    return root


@pytest.fixture(scope="session")
def arch_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model folder per architecture of ``PASS_ARCHS`` (``<arch>/``), a tiny standard SAE
    (``sae/``) and the tiny lm-eval tasks (``tasks/``), built once for the whole run."""
    from builders import save_tiny_pretrained
    from sae_builders import build_sae, save_sae, write_tasks

    root = tmp_path_factory.mktemp("arch-models")
    save_sae(build_sae(seed=1), root / "sae")
    write_tasks(root / "tasks")
    for arch in PASS_ARCHS:
        save_tiny_pretrained(arch, root / arch)
    return root


def two_hook_bundle(models: Path, folder: Path, coefficients: tuple[float, float]) -> Path:
    """``folder`` with ``steer.csv`` (latent 3 at ``PASS_HOOKS[0]``, latent 5 at
    ``PASS_HOOKS[1]``, of the SAE of ``models``, with ``coefficients``) beside links to every
    folder of ``models`` (see ``arch_models``)."""
    from sae_builders import write_steer_csv

    for entry in models.iterdir():
        (folder / entry.name).symlink_to(entry, target_is_directory=True)
    latents = zip((3, 5), coefficients, PASS_HOOKS, strict=True)
    rows = [(latent, value, folder / "sae", "", hook) for latent, value, hook in latents]
    write_steer_csv(folder / "steer.csv", rows, extra=["hook"])
    return folder


def batch_rows(monkeypatch: pytest.MonkeyPatch, method: str) -> list[int]:
    """The batch rows of every call of lm-eval's ``HFLM.<method>`` (``_model_call``,
    ``_model_generate``) from now to the end of the test, recorded as they pass through."""
    from lm_eval.models.huggingface import HFLM

    rows: list[int] = []
    real = getattr(HFLM, method)

    def counted(self: HFLM, batch: Tensor, *args: Any, **kwargs: Any) -> Any:
        rows.append(int(batch.shape[0]))
        return real(self, batch, *args, **kwargs)

    monkeypatch.setattr(HFLM, method, counted)
    return rows
