"""Offline catalog lookups: releases, SAE ids, widths and hooks from ids, models, links, search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saeval.demo.paths import DEMO_HOOK_NAME, DEMO_MODEL_ID, DEMO_RELEASE, DEMO_SAE_ID
from saeval.errors import ResolutionError
from saeval.spec import catalog, models, sae_facts
from saeval.spec.catalog import UnknownSaeId
from saeval.spec.sae_facts import SaeFacts, SaeRef

DOG_RELEASE = "gemma-scope-2b-pt-res-canonical"
DOG_SAE_ID = "layer_20/width_16k/canonical"


def test_release_and_canonical_id_map_to_the_repo_folder() -> None:
    ref = catalog.locate(DOG_RELEASE, DOG_SAE_ID)
    assert ref.kind == "release"
    assert ref.repo_id == "google/gemma-scope-2b-pt-res"
    assert ref.path == "layer_20/width_16k/average_l0_71"
    assert ref.catalog is not None and ref.catalog.model == "gemma-2-2b"


def test_catalog_holds_every_yaml_release_and_the_demo() -> None:
    releases = catalog.releases()
    assert len(releases) >= 171
    assert sum(len(release.saes_map) for release in releases.values()) > 13_000
    assert DEMO_RELEASE in releases


def test_unknown_release_names_the_closest_releases() -> None:
    with pytest.raises(ResolutionError, match=f"did you mean '{DOG_RELEASE}'"):
        catalog.locate("gemma-scope-2b-pt-res-canonicl", DOG_SAE_ID)


def test_unknown_release_without_close_match_points_at_saes_command() -> None:
    with pytest.raises(ResolutionError, match="saeval saes"):
        catalog.locate("zzzz", "")


def test_misspelt_sae_id_names_the_closest_ids() -> None:
    with pytest.raises(UnknownSaeId, match=f"did you mean '{DOG_SAE_ID}'"):
        catalog.locate(DOG_RELEASE, "layer_20/width_16k/canonicl")


def test_far_sae_id_lists_some_ids_and_their_count() -> None:
    with pytest.raises(UnknownSaeId, match=r"its 58 ids include layer_0/width_16k/canonical"):
        catalog.locate(DOG_RELEASE, "nothing-like-it")


GEMMA_SCOPE = [
    # release, sae_id, d_sae, d_in, hook_name
    (DOG_RELEASE, DOG_SAE_ID, 16384, 2304, "blocks.20.hook_resid_post"),
    ("gemma-scope-2b-pt-res", "embedding/width_4k/average_l0_6", 4096, 2304, "hook_embed"),
    (
        "gemma-scope-2b-pt-res",
        "layer_12/width_32k/average_l0_12",
        32768,
        2304,
        "blocks.12.hook_resid_post",
    ),
    (
        "gemma-scope-2b-pt-att",
        "layer_0/width_65k/average_l0_10",
        65536,
        2048,
        "blocks.0.attn.hook_z",
    ),
    (
        "gemma-scope-27b-pt-res",
        "layer_10/width_131k/average_l0_106",
        131072,
        4608,
        "blocks.10.hook_resid_post",
    ),
    (
        "gemma-scope-2b-pt-res",
        "layer_12/width_262k/average_l0_11",
        262144,
        2304,
        "blocks.12.hook_resid_post",
    ),
    (
        "gemma-scope-2b-pt-res",
        "layer_12/width_524k/average_l0_115",
        524288,
        2304,
        "blocks.12.hook_resid_post",
    ),
    (
        "gemma-scope-2b-pt-res",
        "layer_5/width_1m/average_l0_114",
        1048576,
        2304,
        "blocks.5.hook_resid_post",
    ),
    (
        "gemma-scope-2b-pt-mlp-canonical",
        "layer_3/width_16k/canonical",
        16384,
        2304,
        "blocks.3.hook_mlp_out",
    ),
    (
        "gemma-scope-9b-pt-att-canonical",
        "layer_7/width_16k/canonical",
        16384,
        4096,
        "blocks.7.attn.hook_z",
    ),
]


@pytest.mark.parametrize(("release", "sae_id", "d_sae", "d_in", "hook_name"), GEMMA_SCOPE)
def test_gemma_scope_ids_give_width_hook_and_d_in(
    release: str, sae_id: str, d_sae: int, d_in: int, hook_name: str
) -> None:
    info = sae_facts.sae_facts(catalog.locate(release, sae_id))
    assert (info.d_sae, info.d_in, info.hook_name) == (d_sae, d_in, hook_name)


def test_gemma_scope_model_comes_from_the_repo_not_the_yaml() -> None:
    # The YAML says gemma-2-9b for this instruction-tuned release; sae_lens's loader says -it.
    info = sae_facts.sae_facts(
        catalog.locate("gemma-scope-9b-it-res-canonical", "layer_9/width_16k/canonical")
    )
    assert info.model_name == "gemma-2-9b-it"


@pytest.mark.parametrize(
    ("release", "sae_id", "d_sae", "hook"),
    [
        (
            "gemma-scope-2-270m-pt-res",
            "layer_12_width_16k_l0_big",
            16384,
            "blocks.12.hook_resid_post",
        ),
        (
            "gemma-scope-2-270m-pt-mlp",
            "layer_12_width_16k_l0_small",
            16384,
            "blocks.12.hook_mlp_out",
        ),
        ("gemma-scope-2-270m-pt-att", "layer_12_width_16k_l0_big", 16384, "blocks.12.attn.hook_z"),
        (
            "gemma-scope-2-1b-pt-transcoders",
            "transcoder/layer_13_width_16k_l0_big",
            16384,
            "blocks.13.hook_mlp_in",
        ),
        ("qwen-scope-3-1.7b-base-w32k-l50", "layer0", 32768, "blocks.0.hook_resid_post"),
    ],
)
def test_gemma_scope_2_and_qwen_scope_ids(release: str, sae_id: str, d_sae: int, hook: str) -> None:
    info = sae_facts.sae_facts(catalog.locate(release, sae_id))
    assert (info.d_sae, info.hook_name) == (d_sae, hook)


def test_gemma_scope_1_matches_sae_lens_own_config_getter_for_every_sae() -> None:
    """What saeval derives offline equals what sae_lens's gemma_2 loader computes."""
    from sae_lens.loading.pretrained_sae_loaders import get_gemma_2_config_from_hf

    checked = 0
    for release in catalog.releases().values():
        if release.conversion_func != "gemma_2":
            continue
        for folder in set(release.saes_map.values()):
            info = sae_facts.naming_info(release, folder)
            cfg = get_gemma_2_config_from_hf(release.repo_id, folder, "cpu")
            assert info is not None
            got = (info.d_sae, info.d_in, info.hook_name, info.model_name)
            assert got == (cfg["d_sae"], cfg["d_in"], cfg["hook_name"], cfg["model_name"])
            checked += 1
    assert checked > 2000


def test_neuronpedia_link_of_the_dog_latent() -> None:
    info = sae_facts.sae_facts(catalog.locate(DOG_RELEASE, DOG_SAE_ID))
    assert info.neuronpedia_id is not None
    assert (
        catalog.neuronpedia_url(info.neuronpedia_id, 12082)
        == "https://www.neuronpedia.org/gemma-2-2b/20-gemmascope-res-16k/12082"
    )


@pytest.mark.parametrize(
    ("name", "hf_id"),
    [
        ("gemma-2-2b", "google/gemma-2-2b"),
        ("gpt2-small", "gpt2"),
        ("pythia-70m-deduped", "EleutherAI/pythia-70m-deduped"),
        ("mistral-7b", "mistralai/Mistral-7B-v0.1"),
        ("qwen3-0.6b", "Qwen/Qwen3-0.6B"),
        ("google/gemma-3-270m", "google/gemma-3-270m"),
        ("Qwen/Qwen3.5-9B-Base", "Qwen/Qwen3.5-9B-Base"),  # not in TransformerLens: kept
    ],
)
def test_catalog_model_names_map_to_hugging_face_ids(name: str, hf_id: str) -> None:
    assert models.hf_model_id(name) == hf_id


def test_every_catalog_model_maps_to_a_hub_id() -> None:
    official = set(models.model_aliases().values())
    for release in catalog.releases().values():
        model = models.hf_model_id(release.model)
        assert model in official or "/" in model, release.name


@pytest.mark.parametrize(
    ("model", "model_type"),
    [
        ("google/gemma-2-2b", "gemma2"),
        ("gemma-2-9b-it", "gemma2"),
        ("google/gemma-3-270m", "gemma3_text"),
        ("google/gemma-3-4b-pt", "gemma3"),
        ("gpt2-small", "gpt2"),
        ("EleutherAI/pythia-70m-deduped", "gpt_neox"),
        ("meta-llama/Llama-3.1-8B", "llama"),
        ("Qwen/Qwen3-8B", "qwen3"),
        ("Qwen/Qwen2.5-7B-Instruct", "qwen2"),
        ("Qwen/Qwen3.5-9B-Base", None),
    ],
)
def test_model_type_from_the_model_name(model: str, model_type: str | None) -> None:
    info = models.model_info(model)
    assert (info.model_type, info.local) == (model_type, False)


def test_model_info_reads_a_local_model_folder(tmp_path: Path) -> None:
    config = {"model_type": "gemma3", "text_config": {"num_hidden_layers": 34, "hidden_size": 2560}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    info = models.model_info(str(tmp_path))
    assert (info.local, info.model_type, info.n_layers, info.d_model) == (True, "gemma3", 34, 2560)


def test_model_info_of_a_missing_model_folder_is_an_error() -> None:
    with pytest.raises(ResolutionError, match=r"model folder '\./no-model' not found"):
        models.model_info("./no-model")


def write_cached(cache: Path, repo_id: str, filename: str, content: dict[str, object]) -> None:
    """Put one file into a Hugging Face cache layout, as hf_hub_download leaves it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    target = repo / "snapshots" / "abc123" / filename
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(content))


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache for this test."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_cfg_json_in_the_hugging_face_cache_counts(hf_cache: Path) -> None:
    cfg = {"d_sae": 24576, "d_in": 768, "metadata": {"hook_name": "blocks.8.hook_resid_pre"}}
    write_cached(
        hf_cache, "jbloom/GPT2-Small-SAEs-Reformatted", "blocks.8.hook_resid_pre/cfg.json", cfg
    )
    info = sae_facts.sae_facts(catalog.locate("gpt2-small-res-jb", "blocks.8.hook_resid_pre"))
    assert (info.d_sae, info.hook_name) == (24576, "blocks.8.hook_resid_pre")
    assert info.source.startswith("Hugging Face cache")
    assert info.neuronpedia_id == "gpt2-small/8-res-jb"


def test_uncached_sae_lens_release_is_unknown_offline(hf_cache: Path) -> None:
    info = sae_facts.sae_facts(catalog.locate("gpt2-small-res-jb", "blocks.8.hook_resid_pre"))
    assert (info.d_sae, info.hook_name, info.source) == (None, None, "")


def test_model_config_in_the_hugging_face_cache_gives_layers(hf_cache: Path) -> None:
    config = {"model_type": "gemma2", "num_hidden_layers": 26, "hidden_size": 2304}
    write_cached(hf_cache, "google/gemma-2-2b", "config.json", config)
    info = models.model_info("gemma-2-2b")
    assert (info.model_id, info.n_layers, info.d_model, info.local) == (
        "google/gemma-2-2b",
        26,
        2304,
        False,
    )


def test_hf_repo_id_and_path_like_releases(tmp_path: Path) -> None:
    ref = catalog.locate("someone/my-saes", "layer_3")
    assert (ref.kind, ref.repo_id, ref.path) == ("hf_repo", "someone/my-saes", "layer_3")
    with pytest.raises(ResolutionError, match=r"local SAE folder '\./missing' not found"):
        catalog.locate("./missing", "")
    with pytest.raises(ResolutionError, match=r"has no cfg\.json"):
        catalog.locate(str(tmp_path), "")


def test_online_fetches_only_the_cfg_json_of_a_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hf_cache: Path
) -> None:
    import huggingface_hub

    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"d_sae": 512, "metadata": {"hook_name": "blocks.2.hook_mlp_out"}}))
    asked: list[tuple[str, str]] = []

    def download(repo_id: str, filename: str) -> str:
        asked.append((repo_id, filename))
        return str(cfg)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    ref = catalog.locate("someone/my-saes", "layer_2")
    assert sae_facts.sae_facts(ref).d_sae is None  # offline: nothing fetched
    assert sae_facts.sae_facts(ref, online=True).d_sae == 512
    assert asked == [("someone/my-saes", "layer_2/cfg.json")]


def test_online_tells_unreachable_from_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx2 as httpx
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    ref = SaeRef("hf_repo", "someone/x", "a", "someone/x", "a")

    def unreachable(repo_id: str, filename: str) -> str:
        raise LocalEntryNotFoundError("no connection")

    def missing(repo_id: str, filename: str) -> str:
        request = httpx.Request("GET", f"https://huggingface.co/{repo_id}")
        raise RepositoryNotFoundError("404", response=httpx.Response(404, request=request))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    assert sae_facts.downloaded_info(ref) is None
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", missing)
    with pytest.raises(ResolutionError, match="no SAE config for someone/x"):
        sae_facts.downloaded_info(ref)


def test_demo_release_resolves_without_building_the_sae() -> None:
    ref = catalog.locate(DEMO_RELEASE, DEMO_SAE_ID)
    info = sae_facts.sae_facts(ref)
    assert isinstance(info, SaeFacts)
    assert (info.hook_name, info.model_name) == (DEMO_HOOK_NAME, DEMO_MODEL_ID)
    assert info.d_sae is not None and info.d_sae > 3


def test_search_finds_the_dog_sae_by_words() -> None:
    found = catalog.search("gemma-2-2b res 20 16k canonical")
    assert [(e.release, e.sae_id) for e in found] == [(DOG_RELEASE, DOG_SAE_ID)]
    (entry,) = found
    assert (entry.model, entry.hook_name, entry.d_sae) == (
        "google/gemma-2-2b",
        "blocks.20.hook_resid_post",
        16384,
    )


def test_search_by_neuronpedia_id_and_model_filter() -> None:
    assert [e.sae_id for e in catalog.search("gemma-2-2b/20-gemmascope-res-16k")] == [DOG_SAE_ID]
    gpt2 = catalog.search("", model="gpt2-small")
    assert gpt2 and {entry.model for entry in gpt2} == {"gpt2"}
    assert catalog.search("no-such-sae-anywhere") == []
