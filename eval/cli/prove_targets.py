"""What `subgoal prove TARGET` can be: a statement string, a `.lean` file with sorries, or a problem set."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from data.errors import DataError
from data.lean_file import parse_lean
from data.problem import Problem
from lean_env.decompose import sorry_offsets
from lean_env.text import declarations, open_statement, split_header, strip_comments, theorem_name
from prover.errors import ProverError
from prover.prompts import DEFAULT_HEADER

STATEMENT_KINDS = ("theorem", "lemma", "example")  # what a statement typed on the command line declares

TargetKind = Literal["statement", "lean_file", "problem_set"]


def target_kind(target: str) -> TargetKind:
    path = Path(target)
    if path.suffix == ".lean":
        if not path.is_file():
            raise ProverError(f"{target}: no such file")
        return "lean_file"
    if ":" in target and any(d.kind in STATEMENT_KINDS for d in declarations(target)):
        return "statement"
    return "problem_set"


def statement_problem(statement: str, header: str | None = None, name: str | None = None) -> Problem:
    """A Problem from a statement typed on the command line (`theorem t ... := by`, `:= by sorry` or no
    proof part at all); the header defaults to DeepSeek-Prover's standard Mathlib header."""
    s = statement.strip()
    s = open_statement(s) or s + " := by"
    found = theorem_name(s)
    decls = declarations(s)
    if decls and decls[0].kind == "example":  # an example gets a name: the REPL checks a named theorem
        label = name or "example"
        s = f"{s[:decls[0].keyword]}theorem {label}{s[decls[0].keyword + len('example'):]}"
        found = label
    if not found:
        raise ProverError(f"cannot read a theorem name in {statement!r} (expected `theorem NAME ... := by`)")
    return Problem(name=found, formal_statement=s, header=DEFAULT_HEADER if header is None else header,
                   source="command line")


def lean_file_problems(path: Path) -> tuple[str, list[Problem]]:
    """The file text and every theorem with a sorry in it, in file order: `theorem ... := by sorry` problems
    (data.lean_file), and theorems whose proof is a sketch with sorries inside, which carry that sketch in
    `extra["sketch"]` (they are completed by decomposition from the given sketch)."""
    text = path.read_text(encoding="utf-8")
    try:
        whole = parse_lean(text, str(path))
    except DataError as e:
        if "nothing left to prove" not in str(e):
            raise
        whole = []
    problems = whole + sketch_problems(text, whole, str(path))
    if not problems:
        raise DataError(f"{path}: no theorem with a `sorry` found (nothing left to prove)")
    return text, sorted(problems, key=lambda p: p.extra["span"][0])


def sketch_problems(text: str, whole: list[Problem], path: str) -> list[Problem]:
    """Theorems whose proof contains `sorry` but is not just `sorry`: one problem each, with the sketch."""
    taken = {p.name for p in whole}
    header = split_header(text)[0]
    decls = declarations(text)
    out = []
    for d in decls:
        if d.kind not in ("theorem", "lemma") or d.sig_end is None or d.full_name in taken:
            continue
        body = text[d.sig_end:d.end]
        if not sorry_offsets(body) or re.fullmatch(r"\s*(by\s+)?sorry\s*", strip_comments(body)):
            continue
        context = "".join(text[c.start:c.end] for c in decls
                          if c.end <= d.start and not sorry_offsets(text[c.start:c.end]))
        decl = text[d.keyword:d.end].rstrip()  # attributes and docstring before the keyword stay as they are
        out.append(Problem(name=d.full_name, formal_statement=text[d.keyword:d.sig_end] + " by",
                           header=header + context, source=path,
                           extra={"path": path, "line": text.count("\n", 0, d.start) + 1,
                                  "span": [d.keyword, d.keyword + len(decl)], "decl": decl, "sketch": decl + "\n"}))
    return out


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

