"""Decontamination: keep benchmark statements out of training data.

Two tests, both on the Lean statement (never the proof): a normalized-statement match (comments, whitespace,
the theorem's name, binder names and the trailing `:= by` do not count) and token n-gram overlap with any
single benchmark statement (fraction of the candidate's n-grams found in that statement, threshold
configurable). The benchmark side is every `*.jsonl` problem set in the data directory (plus any extra paths),
so a new benchmark dropped there is covered without code changes.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from data.errors import DataError
from data.loaders import iter_jsonl

_BLOCK_COMMENT = re.compile(r"/-.*?-/", re.S)  # also docstrings `/-- ... -/`
_LINE_COMMENT = re.compile(r"--[^\n]*")
_DECL_NAME = re.compile(r"^\s*(?:(?:private|protected|noncomputable)\s+)*(theorem|lemma|example)(\s+[^\s(\[{:⦃]+)?")
_BINDER = re.compile(r"[(\[{⦃]\s*((?:[^\W\d][\w'₀-₉!?]*\s+)*[^\W\d][\w'₀-₉!?]*)\s*:")
_TOKEN = re.compile(r"[\w.'₀-₉]+|[^\s\w]")


def strip_comments(text: str) -> str:
    return _LINE_COMMENT.sub("", _BLOCK_COMMENT.sub("", text))


def normalize_statement(statement: str) -> str:
    """A canonical form of a Lean statement: equal for statements that differ only in name, binder names,
    comments, whitespace or the proof that follows `:=`."""
    text = strip_comments(statement)
    # Only the last declaration is the theorem (PutnamBench statements open with `abbrev ..._solution`).
    decls = [m.start() for m in re.finditer(r"(?m)^\s*(?:theorem|lemma|example)\b", text)]
    if decls:
        text = text[decls[-1] :]
    text = _DECL_NAME.sub("theorem", text, count=1)
    text = text.split(":=", 1)[0]
    tokens = _TOKEN.findall(text)
    names = {n for group in _BINDER.findall(text) for n in group.split()}
    renamed: dict[str, str] = {}
    out = []
    for tok in tokens:
        if tok in names:
            tok = renamed.setdefault(tok, f"v{len(renamed)}")
        out.append(tok)
    return " ".join(out)


def ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


@dataclass(frozen=True)
class BenchmarkStatement:
    benchmark: str  # file stem, e.g. "minif2f"
    name: str
    statement: str


@dataclass(frozen=True)
class Contamination:
    """Why a statement was removed: which benchmark problem it matched, how, and how strongly."""

    benchmark: str
    name: str
    reason: str  # "exact" (normalized statement) | "ngram"
    score: float  # 1.0 for exact; else the n-gram overlap fraction

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_benchmarks(paths: Iterable[str | Path]) -> list[BenchmarkStatement]:
    """Every problem (with a `formal_statement`) of the given JSONL files or directories of them."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob("*.jsonl")))
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"benchmark path {p} does not exist")
    items = []
    for f in files:
        for lineno, rec in iter_jsonl(f):
            if isinstance(rec, dict) and rec.get("formal_statement"):
                items.append(BenchmarkStatement(f.stem, str(rec.get("name", lineno)), rec["formal_statement"]))
    return items


class Decontaminator:
    """Index of benchmark statements; `check(statement)` says whether (and why) a statement is contaminated."""

    def __init__(self, benchmarks: Sequence[BenchmarkStatement], n: int = 13, threshold: float = 0.5):
        if not 0 < threshold <= 1:
            raise DataError(f"decontamination threshold must be in (0, 1], got {threshold}")
        self.n, self.threshold = n, threshold
        self.benchmarks = list(benchmarks)
        self._exact: dict[str, int] = {}
        self._index: dict[tuple[str, ...], list[int]] = defaultdict(list)
        self._sizes: list[int] = []
        for i, b in enumerate(self.benchmarks):
            norm = normalize_statement(b.statement)
            self._exact.setdefault(norm, i)
            grams = ngrams(norm.split(), n)
            self._sizes.append(len(grams))
            for g in grams:
                self._index[g].append(i)

    @classmethod
    def from_data_dir(cls, data_dir: str | Path, extra: Iterable[str | Path] = (), **kw: Any) -> Decontaminator:
        items = read_benchmarks([data_dir, *extra])
        if not items:
            raise DataError(f"no benchmark statements found under {data_dir} to decontaminate against")
        return cls(items, **kw)

    def check(self, statement: str) -> Contamination | None:
        norm = normalize_statement(statement)
        if (i := self._exact.get(norm)) is not None:
            b = self.benchmarks[i]
            return Contamination(b.benchmark, b.name, "exact", 1.0)
        grams = ngrams(norm.split(), self.n)
        if not grams:
            return None
        hits: dict[int, int] = defaultdict(int)
        for g in grams:
            for i in self._index.get(g, ()):
                hits[i] += 1
        best, score = None, 0.0
        for i, h in hits.items():
            s = h / min(len(grams), self._sizes[i])  # a short statement inside a long one counts too
            if s > score:
                best, score = i, s
        if best is None or score < self.threshold:
            return None
        b = self.benchmarks[best]
        return Contamination(b.benchmark, b.name, "ngram", round(score, 4))

    def filter(
        self, records: Iterable[dict[str, Any]], key: str = "statement"
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Split records into (kept, removed); each removed entry says which record and why."""
        kept, removed = [], []
        seen: dict[str, Contamination | None] = {}  # many records share a statement (tactic-level data)
        for rec in records:
            statement = rec.get(key) or ""
            if statement not in seen:
                seen[statement] = self.check(statement)
            hit = seen[statement]
            if hit is None:
                kept.append(rec)
            else:
                removed.append({"problem": rec.get("problem"), "kind": rec.get("kind"), **hit.to_dict()})
        return kept, removed
