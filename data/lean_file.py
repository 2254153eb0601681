"""Problems from a `.lean` file: every `theorem`/`lemma NAME ... := by sorry` is one problem.

The file's header (imports, options, opens: everything before the first declaration) becomes each
problem's `header`. Declarations between the header and a theorem that are not themselves sorry
theorems (defs, proved lemmas, `namespace`, later `open`s) are appended to that theorem's header, so
each problem checks on its own. `extra["span"]` holds the [start, end) character offsets of the
declaration in the file text (docstring included, through the `sorry`) and `extra["decl"]` its text, so
`fill_sorries` can later put proofs back and write the completed file.

The scan is lexical, not a Lean parser, and reads Lean the way `lean_env.text` (the one lexer) does: a
theorem counts when its first `:=` outside brackets, comments and strings is followed by `sorry` or
`by sorry` and nothing else before the next top-level command.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from pathlib import Path

from data.errors import DataError, read_text
from data.problem import Problem
from lean_env import text

_COMMAND_LINE = re.compile(r"(?m)^\S")  # any top-level command starts in column 0
_SORRY_PROOF = re.compile(r":=\s*(by\s+)?sorry\b")


@dataclass
class _Scan:
    masked: str  # the text with comment and string contents replaced by spaces (offsets and newlines kept)
    doc_comments: list[tuple[int, int]]  # spans of `/-- ... -/`, in order
    doc_ends: list[int] = field(init=False)  # their ends, for bisect

    def __post_init__(self) -> None:
        self.doc_ends = [end for _, end in self.doc_comments]


def _scan(src: str) -> _Scan:
    return _Scan(text.mask(src), [(t.start, t.end) for t in text.tokens(src) if t.kind == "doc"])


def _ends_command(masked: str, pos: int) -> bool:
    """Nothing but blanks from `pos` to the next line that starts a new command (column 0) or the end."""
    nxt = _COMMAND_LINE.search(masked, pos)
    return not masked[pos : nxt.start() if nxt else len(masked)].strip()


def _with_docstring(scan: _Scan, start: int) -> int:
    """Where the declaration at `start` begins: at its doc comment when one precedes it (blanks between)."""
    k = bisect.bisect_right(scan.doc_ends, start) - 1
    if k >= 0 and not scan.masked[scan.doc_comments[k][1] : start].strip():
        return scan.doc_comments[k][0]
    return start


def parse_lean(src: str, path: str = "<text>") -> list[Problem]:
    """The sorry theorems of a Lean source text, in file order."""
    scan = _scan(src)
    masked = scan.masked
    decls = text.declarations(src)
    if not decls:
        raise DataError(f"{path}: no declarations found (expected `theorem NAME ... := by sorry`)")
    header_end = _with_docstring(scan, decls[0].start)  # the first declaration's docstring is not header
    header = src[:header_end]

    found: list[tuple[int, int, str, str]] = []  # start, end, name, statement
    for d in decls:
        if d.kind not in ("theorem", "lemma") or d.sig_end is None:
            continue
        assign = d.sig_end - 2
        proof = _SORRY_PROOF.match(masked, assign)
        if proof is None or not _ends_command(masked, proof.end()):
            continue  # proved (or partly proved) theorems are context, not problems
        decl_start = _with_docstring(scan, d.start)
        if proof.group(1):  # `:= by sorry`: the statement runs through `by`
            statement = src[decl_start : proof.start(1) + 2]
        else:  # `:= sorry`: a term proof, stated here as `:= by` like every other problem
            statement = src[decl_start : assign + 2] + " by"
        found.append((decl_start, proof.end(), d.name, statement))
    if not found:
        raise DataError(f"{path}: no `theorem NAME ... := by sorry` found (nothing left to prove)")

    problems: list[Problem] = []
    lines: dict[str, int] = {}
    line, line_pos = 1, 0
    context, pos, has_context = "", header_end, False  # what lies between the header and this theorem,
    for start, end, name, statement in found:  # minus earlier problems (their text would be a sorry)
        line, line_pos = line + src.count("\n", line_pos, start), start
        if name in lines:
            raise DataError(
                f"{path}:{line}: field 'name': duplicate theorem name {name!r} (first on line {lines[name]})"
            )
        lines[name] = line
        context += src[pos:start]
        has_context = has_context or bool(src[pos:start].strip())
        pos = end
        problems.append(
            Problem(
                name=name,
                formal_statement=statement,
                header=header + context if has_context else header,
                source=path,
                extra={"path": path, "line": line, "span": [start, end], "decl": src[start:end]},
            )
        )
    return problems


def load_lean(path: str | Path) -> list[Problem]:
    return parse_lean(read_text(path), str(path))


def fill_sorries(text: str, problems: list[Problem], proofs: dict[str, str]) -> str:
    """The file text with each proved problem's declaration replaced by its proof.

    `proofs` maps a problem name to the full declaration (statement + proof), as a prover returns it; a
    leading copy of the problem's header is dropped. Problems without a proof keep their `sorry`.
    """
    by_name = {p.name: p for p in problems}
    edits = []
    for name, proof in proofs.items():
        problem = by_name.get(name)
        if problem is None or "span" not in problem.extra:
            raise DataError(f"no problem {name!r} read from a .lean file to fill")
        start, end = problem.extra["span"]
        if text[start:end] != problem.extra["decl"]:
            raise DataError(
                f"{problem.extra.get('path', '<text>')}: the file changed since {name!r} was read"
            )
        if problem.header and proof.startswith(problem.header):
            proof = proof[len(problem.header) :]
        edits.append((start, end, proof.strip()))
    for start, end, proof in sorted(edits, reverse=True):  # back to front: earlier offsets stay valid
        text = text[:start] + proof + text[end:]
    return text


def file_problem(src: str, name: str = "", theorem: str | None = None) -> Problem | None:
    """The problem a file states, whether or not it is proved (`subgoal lean check`): its header, and its theorem
    `theorem` (default: the last top-level one), with what comes before the theorem (helper defs, abbrevs it may
    mention) in the statement."""
    header, _ = text.split_header(src)
    thms = [d for d in text.declarations(src) if d.kind in ("theorem", "lemma") and d.sig_end is not None]
    if theorem:
        thms = [d for d in thms if d.full_name == theorem]
    if not thms:
        return None
    d = thms[-1]
    return Problem(name or d.full_name, src[len(header):d.sig_end], header)
