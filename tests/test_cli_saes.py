"""`saeval saes`: search the SAE catalog offline, as a table or JSON."""

from __future__ import annotations

import json

from conftest import invoke


def saes(*args: str) -> tuple[int, str]:
    """Run `saeval saes ARGS` in-process: (exit code, stdout)."""
    result = invoke("saes", *args)
    return result.exit_code, result.stdout


def test_query_words_find_the_dog_sae_as_json() -> None:
    code, out = saes("gemma-2-2b res 20 16k canonical", "--format", "json")
    assert code == 0
    assert json.loads(out) == [
        {
            "release": "gemma-scope-2b-pt-res-canonical",
            "sae_id": "layer_20/width_16k/canonical",
            "repo_id": "google/gemma-scope-2b-pt-res",
            "path": "layer_20/width_16k/average_l0_71",
            "model": "google/gemma-2-2b",
            "hook_name": "blocks.20.hook_resid_post",
            "d_sae": 16384,
            "neuronpedia_id": "gemma-2-2b/20-gemmascope-res-16k",
        }
    ]


def test_model_filter_and_limit() -> None:
    code, out = saes("resid", "--model", "gpt2-small", "--limit", "3", "-f", "json")
    found = json.loads(out)
    assert code == 0 and len(found) == 3
    assert {entry["model"] for entry in found} == {"gpt2"}
    assert all("resid" in entry["release"] + entry["sae_id"] for entry in found)


def test_table_counts_matches_beyond_the_limit() -> None:
    code, out = saes("gemma-scope-2b-pt-res-canonical", "--limit", "2")
    assert code == 0
    assert "2 of 58 SAEs" in out
    assert "16384" in out


def test_no_match_says_so() -> None:
    code, out = saes("no-such-sae-anywhere")
    assert code == 0 and "0 SAEs" in out


def test_limit_must_be_positive() -> None:
    result = invoke("saes", "--limit", "0")
    assert result.exit_code == 2
