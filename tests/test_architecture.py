"""The four layers (spec, steering, run, analysis) import downwards only, and modules stay small."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from architecture import violations

PACKAGE = Path(__file__).resolve().parents[1] / "saeval"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50


def test_the_package_follows_its_import_rules() -> None:
    assert violations(PACKAGE) == []


def test_the_checker_names_the_file_line_and_rule(tmp_path: Path) -> None:
    root = tmp_path / "saeval"
    for layer in ("spec", "analysis", "run"):
        (root / layer).mkdir(parents=True)
        (root / layer / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "spec" / "model.py").write_text('"""x"""\n\nimport torch\n')
    (root / "analysis" / "table.py").write_text("from saeval.run.store import RunStore\n")
    (root / "analysis" / "names.py").write_text("from saeval.records.run_folder import BASELINE\n")
    (root / "run" / "a.py").write_text("def f():\n    from saeval.run import b\n")
    (root / "run" / "b.py").write_text("from saeval.run import a\n")
    (root / "run" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from saeval.run import a\n"
    )
    assert sorted(violations(root)) == sorted(
        [
            f"{root / 'analysis' / 'table.py'}:1: analysis must not import saeval.run",
            f"{root / 'spec' / 'model.py'}:3: spec must not import torch at module level",
            f"{root / 'run' / 'a.py'}: import cycle saeval.run.a -> saeval.run.b -> saeval.run.a",
        ]
    )


def test_cycles_count_typing_only_and_function_level_imports(tmp_path: Path) -> None:
    """A circle held by ``if TYPE_CHECKING:`` or a function-level import is still a cycle, while
    the layer rules keep ignoring typing-only imports."""
    root = tmp_path / "saeval"
    for layer in ("steering", "analysis"):
        (root / layer).mkdir(parents=True)
        (root / layer / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    typing_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from saeval.{}\n"
    (root / "steering" / "plan.py").write_text("from saeval.steering.clamp import ClampGroup\n")
    (root / "steering" / "clamp.py").write_text(typing_only.format("steering.plan import Sae"))
    (root / "steering" / "finite.py").write_text(
        "def f():\n    from saeval.steering.masking import mask\n"
    )
    (root / "steering" / "masking.py").write_text(
        typing_only.format("steering import finite") + "else:\n    import saeval.run\n"
    )
    (root / "analysis" / "read.py").write_text(typing_only.format("run.store import RunStore"))
    assert sorted(violations(root)) == sorted(
        [
            f"{root / 'steering' / 'clamp.py'}: import cycle saeval.steering.clamp -> "
            "saeval.steering.plan -> saeval.steering.clamp",
            f"{root / 'steering' / 'finite.py'}: import cycle saeval.steering.finite -> "
            "saeval.steering.masking -> saeval.steering.finite",
            f"{root / 'steering' / 'masking.py'}:5: steering must not import saeval.run",
        ]
    )


def test_no_module_over_400_lines_and_no_function_over_50() -> None:
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{path}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                body = node.body[0].lineno, node.end_lineno or node.lineno
                if body[1] - body[0] + 1 > MAX_FUNCTION_LINES:
                    too_long.append(f"{path}:{node.lineno} {node.name}: {body[1] - body[0] + 1}")
    assert too_long == []


def test_the_public_api_resolves_lazily() -> None:
    """`import saeval` loads no heavy package; every name in `__all__` resolves on use."""
    code = (
        "import sys, saeval\n"
        "assert not {'torch', 'lm_eval', 'sae_lens', 'transformers'} & set(sys.modules)\n"
        "missing = [name for name in saeval.__all__ if getattr(saeval, name, None) is None]\n"
        "assert not missing, missing\n"
        "assert saeval.evaluate.__module__ == 'saeval.run.runner'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
