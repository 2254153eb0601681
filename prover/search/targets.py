"""What `subgoal prove TARGET` can be: a statement string, a `.lean` file with sorries, or a problem set."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from prover.errors import ProverError

DEFAULT_HEADER = ("import Mathlib\nimport Aesop\n\nset_option maxHeartbeats 400000\n\n"
                  "open BigOperators Real Nat Topology Rat\n\n")
_STATEMENT = re.compile(r"^\s*(?:@\[[^\]]*\]\s*)?(?:theorem|lemma|example)\b", re.M)

TargetKind = Literal["statement", "lean_file", "problem_set"]


def target_kind(target: str) -> TargetKind:
    path = Path(target)
    if path.suffix == ".lean":
        if not path.is_file():
            raise ProverError(f"{target}: no such file")
        return "lean_file"
    if _STATEMENT.search(target) and ":" in target:
        return "statement"
    return "problem_set"


def statement_problem(statement: str, header: str | None = None, name: str | None = None) -> Any:
    """A Problem from a statement typed on the command line (`theorem t ... := by`, `:= by sorry` or no
    proof part at all); the header defaults to DeepSeek-Prover's standard Mathlib header."""
    from data.problem import Problem
    from lean_env.text import theorem_name

    s = statement.strip()
    s = re.sub(r"\s*sorry\s*$", "", s).rstrip()
    if s.endswith(":="):
        s += " by"
    elif not s.endswith("by"):
        s += " := by"
    found = theorem_name(s)
    if s.lstrip().startswith("example"):
        label = name or "example"
        s = re.sub(r"^\s*example\b", f"theorem {label}", s, count=1)
        found = label
    if not found:
        raise ProverError(f"cannot read a theorem name in {statement!r} (expected `theorem NAME ... := by`)")
    return Problem(name=found, formal_statement=s, header=DEFAULT_HEADER if header is None else header,
                   source="command line")


def lean_file_problems(path: Path) -> tuple[str, list[Any]]:
    """The file text and its `theorem ... := by sorry` problems (data.lean_file)."""
    from data.lean_file import parse_lean

    text = path.read_text(encoding="utf-8")
    try:
        return text, parse_lean(text, str(path))
    except Exception as e:
        from data.errors import DataError

        if isinstance(e, DataError):
            raise
        raise ProverError(f"{path}: cannot read its theorems ({e})") from None


def completed_file_path(path: Path, out: Path | None, in_place: bool) -> Path:
    """Where the completed file goes: --out, the input itself with --in-place, else `<name>.proved.lean`."""
    if in_place:
        if out is not None and out.resolve() != path.resolve():
            raise ProverError("--in-place and --out name different files; pass one of them")
        return path
    if out is None:
        return path.with_name(path.stem + ".proved.lean")
    if out.resolve() == path.resolve():
        raise ProverError(f"--out {out} is the input file; pass --in-place to overwrite it")
    return out


def fill_file(text: str, problems: list[Any], proofs: dict[str, str]) -> str:
    from data.lean_file import fill_sorries

    return fill_sorries(text, problems, proofs)
