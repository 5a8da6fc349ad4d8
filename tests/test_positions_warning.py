"""A run whose rows steer only generated positions warns, before evaluating, about multiple-choice
tasks whose answers are one token each (steering would change no score there)."""

from __future__ import annotations

from pathlib import Path

from conftest import invoke
from sae_builders import write_steer_csv


def test_generated_positions_on_one_token_answers_warn_before_running(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    steer = write_steer_csv(tmp_path / "gen.csv", [(3, 8.0, tiny_bundle / "sae", "", "generated")],
                            extra=["positions"])  # fmt: skip
    args = ["run", str(steer), "--model", str(tiny_bundle / "model"), "--device", "cpu"]
    args += ["--include-path", str(tiny_bundle / "tasks"), "--output", str(tmp_path / "o")]
    args += ["--tasks", "tiny_mc,tiny_rolling", "--limit", "2", "--kl-docs", "0", "--name", "r"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "positions generated steers nothing on tiny_mc: each answer is one token" in text
    assert "tiny_rolling" not in text.split("steers nothing on")[1].split(":")[0]
    assert text.index("steers nothing") < text.index("results:")
