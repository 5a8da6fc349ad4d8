"""Test-wide settings (no test may reach the Hugging Face hub) and shared fixtures."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
