"""The package stack of ARCHITECTURE.md, read from the source: every import points down
(lean_env < data < prover < eval, autoformalize < eval.cli), so no library module imports the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RANK = {"lean_env": 0, "data": 1, "prover": 2, "eval": 3, "autoformalize": 3, "eval.cli": 4}


def layer(module: str) -> str | None:
    if module == "eval.cli" or module.startswith("eval.cli."):
        return "eval.cli"
    top = module.split(".")[0]
    return top if top in RANK else None


def imported_modules(tree: ast.AST) -> list[str]:
    """Absolute imports anywhere in the module (function-level ones too); `from eval import cli` names eval.cli."""
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return out


def upward_imports(package: str, root: Path = ROOT) -> list[str]:
    """`FILE (its layer) imports LAYER` for every layer at or above its own that a file of `package` imports."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        me = layer(".".join(path.relative_to(root).with_suffix("").parts))
        assert me is not None
        above = {layer(m) for m in imported_modules(ast.parse(path.read_text(encoding="utf-8")))} - {None, me}
        found += [f"{path.relative_to(root)} ({me}) imports {other}"
                  for other in sorted(o for o in above if RANK[o] >= RANK[me])]
    return found


@pytest.mark.parametrize("package", ["lean_env", "data", "prover", "autoformalize", "eval"])
def test_imports_point_down_the_stack(package):
    assert upward_imports(package) == []


def test_the_check_sees_upward_imports(tmp_path):
    (tmp_path / "prover" / "search").mkdir(parents=True)
    (tmp_path / "prover" / "search" / "view.py").write_text(
        "import lean_env.text\nfrom data import Problem\n\n\ndef f():\n    from eval.cli.common import console\n")
    (tmp_path / "prover" / "wiring.py").write_text("from eval import cli\nfrom autoformalize import formalize\n")
    assert upward_imports("prover", tmp_path) == [
        "prover/search/view.py (prover) imports eval.cli",
        "prover/wiring.py (prover) imports autoformalize",
        "prover/wiring.py (prover) imports eval",
        "prover/wiring.py (prover) imports eval.cli",
    ]
