"""Decontamination: keep benchmark statements out of training data.

Statements are compared in a canonical form (`canonical_statement`) that drops what does not change a
problem: comments, whitespace and line breaks, the theorem's name, binder names and binder order, implicit vs
explicit brackets, notation aliases (`<=`/`≤`, `->`/`→`, `Real`/`ℝ`, `∑ x in`/`∑ x ∈`, ...), parentheses and
coercion arrows; a pretty-printed goal `h : P ⊢ Q` reads as the theorem `(h : P) : Q`. Two tests on that form:
equality, and n-gram overlap weighted by rarity (an n-gram that many benchmark statements share, binder
boilerplate, counts little), so short statements that only share boilerplate with a benchmark are kept. The
benchmark side is every registered benchmark set plus any extra files; a set that cannot be loaded is a loud
warning and is named in the report.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data.errors import DataError
from data.loaders import iter_jsonl
from lean_env.text import code_tokens, mask

log = logging.getLogger(__name__)

# Chosen on tests/test_decontam.py's edited benchmarks: recall >= 0.998 on textual edits, 0.87 on Lean's goals, no
# false positive on ProofNet against miniF2F + PutnamBench (n in 8..10 and threshold 0.5..0.6 all do well).
NGRAM, THRESHOLD = 8, 0.6

DECL_WORDS = ("theorem", "lemma", "example")
TARGET_WORDS = ("def", "abbrev", "instance")  # a few ProofNet items ask for a `def`
_OPEN, _CLOSE = "([{⦃⟨", ")]}⦄⟩"
# One spelling per notation: ASCII and long forms read as the Unicode symbol Mathlib prints.
ALIASES = {"<=": "≤", ">=": "≥", "->": "→", "<->": "↔", "!=": "≠", "=>": "↦", "λ": "fun", "forall": "∀",
           "exists": "∃", "Real": "ℝ", "Nat": "ℕ", "Int": "ℤ", "Rat": "ℚ", "Complex": "ℂ", "in": "∈",
           "Real.sqrt": "√", "Real.pi": "π", "Finset.sum": "∑", "Finset.prod": "∏", "Not": "¬", "And": "∧",
           "Or": "∨", "lemma": "theorem"}
_BRACKETS = {"⌊": "floor", "⌈": "ceil"}  # `⌊x⌋` is `Int.floor x`, `⌈x⌉` is `Int.ceil x`
_DROPPED = {"(", ")", "↑", "⇑", "↥", "⌋", "⌉"}  # grouping and coercion arrows: printed or not, the same problem
_BINDING = {"∀", "∃", "∃!", "∑", "∏", "fun", "⋃", "⋂", "⨆", "⨅", "∫", "⨍"}  # names after these are bound
_KEYWORDS = {"in", "∈", "fun", "if", "then", "else", "let", "have", "by"}


# ---------------------------------------------------------------- canonical form
# Notation written with several of the lexer's one-character symbols, joined back when they touch.
_SYMBOLS = (":=", "<->", "->", "<-", "<=", ">=", "!=", "=>", "==", "∃!", "..", "⁻¹")
_PREFIXES = {s[:k] for s in _SYMBOLS for k in range(1, len(s) + 1)}


def words(src: str) -> list[str]:
    """The code tokens of `src` (`lean_env.text`'s lexer: no comments or literals) as strings, with the
    multi-character symbols of `_SYMBOLS` one word each."""
    out: list[str] = []
    end = -1
    for t in code_tokens(src):
        w = src[t.start:t.end]
        if t.kind == "symbol" and out and t.start == end and out[-1] + w in _PREFIXES:
            out[-1] += w
        else:
            out.append(w)
        end = t.end
    return out



@dataclass
class _Binder:
    names: list[str]  # empty for an instance binder `[Fintype α]`
    type: list[str]


def _alias(toks: Iterable[str]) -> list[str]:
    """Notation aliases to one spelling; a numeral's type ascription `(2 : ℝ)` as the numeral (goals print it
    bare)."""
    out: list[str] = []
    for t in toks:
        t = ALIASES.get(t, t)
        out.append(_BRACKETS.get(t, t))
    for i in range(1, len(out)):  # `Type*` is `Type u_1` as Lean prints it
        if out[i - 1] in ("Type", "Sort") and out[i].startswith("u_"):
            out[i] = "*"
    for i in range(len(out) - 4, -1, -1):
        if out[i] == "(" and out[i + 1][0].isdigit() and out[i + 2] == ":" and i + 4 < len(out) and out[i + 4] == ")":
            out[i:i + 5] = [out[i + 1]]
    return out


def _matching(toks: list[str], i: int) -> int:
    """Index just past the bracket group opening at toks[i]."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j] in _OPEN:
            depth += 1
        elif toks[j] in _CLOSE:
            depth -= 1
            if depth == 0:
                return j + 1
    return len(toks)


def _until_assign(toks: list[str], i: int) -> int:
    """Index of the first `:=` at bracket depth 0 from i (the end of a signature), else len(toks)."""
    depth = 0
    for j in range(i, len(toks)):
        t = toks[j]
        depth += t in _OPEN
        depth -= t in _CLOSE
        if depth <= 0 and t == ":=":
            return j
    return len(toks)


def _binder(inner: list[str]) -> _Binder:
    if ":" in inner:
        k = inner.index(":")
        return _Binder([t for t in inner[:k] if t[0].isalpha() or t[0] in "_«"], inner[k + 1:])
    return _Binder([], inner)


def _parse_signature(toks: list[str]) -> tuple[list[_Binder], list[str]]:
    """(binders, conclusion) of the tokens from a declaration keyword to its `:=` (or of a bare proposition)."""
    i = 0
    if toks and toks[0] in (*DECL_WORDS, *TARGET_WORDS):
        i = 1
        if toks[0] != "example" and i < len(toks) and toks[i] not in _OPEN and toks[i] != ":":
            i += 1  # the theorem's name
    binders = []
    while i < len(toks) and toks[i] in "([{⦃":
        end = _matching(toks, i)
        binders.append(_binder(toks[i + 1:end - 1]))
        i = end
    if i < len(toks) and toks[i] == ":":
        i += 1
    return binders, toks[i:_until_assign(toks, i)]


def _parse_goal(text: str) -> tuple[list[_Binder], list[str]] | None:
    """A pretty-printed goal (`x y : ℝ`, `h₀ : P`, ..., `⊢ Q`, continuation lines indented) as binders and
    conclusion; None when `text` is not one. Only the first goal counts."""
    lines = mask(text).splitlines()
    at = next((k for k, ln in enumerate(lines) if ln.lstrip().startswith("⊢")), None)
    if at is None:
        return None
    hyps: list[str] = []
    for ln in lines[:at]:
        if not ln.strip() or ln.lstrip().startswith("case "):
            continue
        if ln[:1].isspace() and hyps:
            hyps[-1] += " " + ln.strip()  # a long hypothesis wrapped onto the next line
        else:
            hyps.append(ln.strip())
    goal = [lines[at].lstrip()[1:]]
    for ln in lines[at + 1:]:
        if not ln[:1].isspace():
            break  # the next goal
        goal.append(ln)
    binders = []
    for h in hyps:
        names, sep, typ = h.partition(" : ")
        if not sep:
            return None
        names_list = names.split()
        binders.append(_Binder([] if any("✝" in n for n in names_list) else names_list, words(typ)))
    return binders, words(" ".join(goal))


def _local_names(toks: list[str]) -> list[str]:
    """One expression with the names it binds (`∀ x y,`, `∑ k ∈ s,`, `fun x ↦`, `{x | P x}`) renamed b0, b1, ...
    in order of binding, and the binders' type annotations dropped (`∀ k : ℕ,` as `∀ k,`: goals print them
    bare). Each expression is renamed on its own, so the order of the hypotheses does not matter."""
    out, bound, i = [], {}, 0
    while i < len(toks):
        t = toks[i]
        out.append(bound.get(t, t))
        i += 1
        if t not in _BINDING and not (t == "{" and i + 1 < len(toks) and toks[i + 1] in (":", "|", "∈")):
            continue
        while i < len(toks) and toks[i] in ("(", "{", "⦃", "["):
            i += 1
        while i < len(toks) and (toks[i][0].isalpha() or toks[i][0] == "_") and toks[i] not in _KEYWORDS:
            bound[toks[i]] = f"b{len(bound)}"
            out.append(bound[toks[i]])
            i += 1
        if i < len(toks) and toks[i] == ":":  # the annotation, up to `,` `∈` `|` `↦` at this depth
            depth = 0
            while i < len(toks) and not (depth <= 0 and toks[i] in (",", "∈", "|", "↦")):
                depth += toks[i] in _OPEN
                depth -= toks[i] in _CLOSE
                i += 1
    return out


def _rename(toks: list[str], names: dict[str, str]) -> list[str]:
    return [names.get(t, t) for t in toks]


def _dotted(toks: list[str], variables: set[str]) -> list[str]:
    """`x.cos` as `cos x` (a method call on a variable: `Real.cos x`, `s.card` is `Finset.card s`), and
    `Real.cos` as `cos` (a namespace: an `open Real` statement, or a goal Lean printed, writes it bare)."""
    out: list[str] = []
    for t in toks:
        head, dot, last = t.rpartition(".")
        if not dot or not head or not last or t.startswith("«"):
            out.append(t)
        elif head in variables or head[0].islower():
            out += [ALIASES.get(last, last), head]
        else:
            out.append(ALIASES.get(last, last))
    return out


def _canonical(binders: list[_Binder], conclusion: list[str]) -> list[str]:
    variables = [n for b in binders for n in b.names]
    var_set = set(variables)

    def clean(toks: list[str]) -> list[str]:
        return [t for t in _local_names(_dotted(_alias(toks), var_set)) if t not in _DROPPED]

    binders = [_Binder(b.names, clean(b.type)) for b in binders]
    conclusion = clean(conclusion)
    own: dict[str, list[list[str]]] = defaultdict(list)  # a name bound twice (miniF2F has `(h₀ : _) (h₀ : _)`)
    for b in binders:
        for n in b.names:
            own[n].append(b.type)
    used = {t for b in binders for t in b.type} | set(conclusion)

    # A variable's name is decided by how it is used (its types, and every binder type and the conclusion that
    # mention it), not by where it was written, so listing hypotheses in another order gives the same names.
    # Refined twice: the second round sees the first round's names of the other variables.
    def signature(name: str, names: dict[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        def shape(toks: list[str]) -> str:
            return " ".join("X" if t == name else names.get(t, "V") if t in var_set else t for t in toks)

        uses = [shape(b.type) for b in binders if name in b.type] + ([shape(conclusion)] if name in conclusion
                                                                        else [])
        return tuple(sorted(shape(t) for t in own[name])), tuple(sorted(uses))

    names: dict[str, str] = {}
    for _ in range(3):  # only names something mentions are numbered: an extra hypothesis shifts no number
        order = sorted(dict.fromkeys(n for n in variables if n in used), key=lambda n, prev=dict(names):
                       signature(n, prev))
        names = {n: f"v{k}" for k, n in enumerate(order)}
    parts = []
    for b in binders:
        typ = _rename(b.type, names)
        # a hypothesis whose name nothing mentions is written `_`: its name cannot matter
        parts += ([["(", names[n] if n in used else "_", ":", *typ, ")"] for n in b.names] if b.names
                  else [["[", *typ, "]"]])
    parts.sort(key=" ".join)
    return ["theorem", *(t for p in parts for t in p), ":", *_rename(conclusion, names)]


def canonical_statement(statement: str) -> list[str]:
    """The canonical tokens of a statement, a declaration's signature or a pretty-printed goal (its last
    theorem when there are several: PutnamBench statements open with answer abbrevs)."""
    goal = _parse_goal(statement) if "⊢" in statement else None
    if goal is not None:
        return _canonical(*goal)
    toks = _alias(words(statement))
    starts = ([i for i, t in enumerate(toks) if t in DECL_WORDS]
              or [i for i, t in enumerate(toks) if t in TARGET_WORDS])
    return _canonical(*_parse_signature(toks[starts[-1]:] if starts else toks))


def normalize_statement(statement: str) -> str:
    """The canonical form as one string: equal for statements that differ only in what does not change the
    problem (see the module docstring)."""
    return " ".join(canonical_statement(statement))


def statements_in(text: str) -> list[str]:
    """Every theorem/lemma signature (keyword through `:=`) written anywhere in `text` (a prompt or a
    completion), in order."""
    toks = words(text)
    return [" ".join(toks[i:_until_assign(toks, i)]) for i, t in enumerate(toks) if t in ("theorem", "lemma")]


def ngrams(toks: Sequence[str], n: int) -> set[tuple[str, ...]]:
    if len(toks) < n:
        return {tuple(toks)} if toks else set()
    return {tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)}


# ---------------------------------------------------------------- benchmarks


@dataclass(frozen=True)
class BenchmarkStatement:
    benchmark: str  # registered set (or file stem), e.g. "minif2f-test"
    name: str
    statement: str


@dataclass(frozen=True)
class Contamination:
    """Why a statement was removed: which benchmark problem it matched, how, and how strongly."""

    benchmark: str
    name: str
    reason: str  # "exact" (canonical statement) | "ngram"
    score: float  # 1.0 for exact; else the rarity-weighted n-gram overlap

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Coverage:
    """Which benchmarks an index holds, and which could not be loaded (the report shows both)."""

    sets: dict[str, int] = field(default_factory=dict)  # set -> statements
    unavailable: dict[str, str] = field(default_factory=dict)  # set -> why

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


def registered_benchmarks(config: Any) -> tuple[list[BenchmarkStatement], Coverage]:
    """The statements of every registered benchmark set that loads (ProverBench from its local path or the
    hub), and why each of the others did not; every set that could not be loaded is logged as a warning."""
    from data.registry import SETS

    items: list[BenchmarkStatement] = []
    coverage = Coverage()
    for entry in SETS.values():
        if not entry.benchmark:
            continue
        reason = entry.available(config)
        if reason is None:
            try:
                problems = entry.load(config)
            except DataError as e:
                reason = str(e)
        if reason is not None:
            coverage.unavailable[entry.name] = reason
            log.warning("decontamination: benchmark %s could not be loaded (%s); training data is NOT checked "
                        "against it", entry.name, reason)
            continue
        items += [BenchmarkStatement(entry.name, p.name, p.formal_statement) for p in problems]
        coverage.sets[entry.name] = len(problems)
    return items, coverage


# ---------------------------------------------------------------- the index


class Decontaminator:
    """Index of benchmark statements; `check(statement)` says whether (and why) a statement is contaminated.

    The n-gram score of a candidate against benchmark statement B is the weight of the n-grams they share over
    the smaller of their total weights, an n-gram weighing log(1 + N / df): N statements, df of them hold it."""

    def __init__(self, benchmarks: Sequence[BenchmarkStatement], n: int = NGRAM, threshold: float = THRESHOLD,
                 coverage: Coverage | None = None):
        if not 0 < threshold <= 1:
            raise DataError(f"decontamination threshold must be in (0, 1], got {threshold}")
        if n < 1:
            raise DataError(f"decontamination n-gram length must be >= 1, got {n}")
        self.n, self.threshold = n, threshold
        self.benchmarks = list(benchmarks)
        self.coverage = coverage or Coverage(sets={b: sum(x.benchmark == b for x in self.benchmarks)
                                                   for b in {x.benchmark for x in self.benchmarks}})
        self._exact: dict[str, int] = {}
        self._index: dict[tuple[str, ...], list[int]] = defaultdict(list)
        grams_of = []
        for i, b in enumerate(self.benchmarks):
            canon = canonical_statement(b.statement)
            self._exact.setdefault(" ".join(canon), i)
            grams = ngrams(canon, n)
            grams_of.append(grams)
            for g in grams:
                self._index[g].append(i)
        total = max(1, len(self.benchmarks))
        self._unseen = math.log1p(total)  # the weight of an n-gram no benchmark holds
        self._weight = {g: math.log1p(total / len(ids)) for g, ids in self._index.items()}
        self._sizes = [sum(self._weight[g] for g in grams) for grams in grams_of]

    @classmethod
    def from_data_dir(cls, data_dir: str | Path, extra: Iterable[str | Path] = (), **kw: Any) -> Decontaminator:
        items = read_benchmarks([data_dir, *extra])
        if not items:
            raise DataError(f"no benchmark statements found under {data_dir} to decontaminate against")
        return cls(items, **kw)

    @classmethod
    def from_registry(cls, config: Any, extra: Iterable[str | Path] = (), **kw: Any) -> Decontaminator:
        """Every registered benchmark that can be loaded, plus the JSONL files or directories in `extra`."""
        items, coverage = registered_benchmarks(config)
        extra_items = read_benchmarks(extra)
        for b in {x.benchmark for x in extra_items}:
            coverage.sets[b] = sum(x.benchmark == b for x in extra_items)
        if not items and not extra_items:
            raise DataError("no benchmark could be loaded to decontaminate against ("
                            + "; ".join(f"{k}: {v}" for k, v in coverage.unavailable.items())
                            + "); set SUBGOAL_DATA_DIR or pass --no-decontaminate")
        return cls([*items, *extra_items], coverage=coverage, **kw)

    def check(self, statement: str) -> Contamination | None:
        canon = canonical_statement(statement)
        if (i := self._exact.get(" ".join(canon))) is not None:
            b = self.benchmarks[i]
            return Contamination(b.benchmark, b.name, "exact", 1.0)
        grams = ngrams(canon, self.n)
        if not grams:
            return None
        hits: dict[int, float] = defaultdict(float)
        size = 0.0
        for g in grams:
            w = self._weight.get(g)
            if w is None:
                size += self._unseen
                continue
            size += w
            for i in self._index[g]:
                hits[i] += w
        best, score = None, 0.0
        for i, h in hits.items():
            s = h / min(size, self._sizes[i])  # a short statement inside a long one counts too
            if s > score:
                best, score = i, s
        if best is None or score < self.threshold:
            return None
        b = self.benchmarks[best]
        return Contamination(b.benchmark, b.name, "ngram", round(min(score, 1.0), 4))

    def check_record(self, rec: dict[str, Any], key: str = "statement") -> Contamination | None:
        """A record's statement; when it has none, every theorem written in its prompt and its completion."""
        statement = rec.get(key) or ""
        if statement.strip():
            return self.check(statement)
        for text in (rec.get("prompt") or "", rec.get("completion") or ""):
            for found in statements_in(text):
                if (hit := self.check(found)) is not None:
                    return hit
        return None

    def filter(
        self, records: Iterable[dict[str, Any]], key: str = "statement"
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Split records into (kept, removed); each removed entry says which record and why."""
        kept, removed = [], []
        seen: dict[str, Contamination | None] = {}  # many records share a statement (tactic-level data)
        for rec in records:
            statement = rec.get(key) or ""
            if statement.strip():
                if statement not in seen:
                    seen[statement] = self.check(statement)
                hit = seen[statement]
            else:
                hit = self.check_record(rec, key)
            if hit is None:
                kept.append(rec)
            else:
                removed.append({"problem": rec.get("problem"), "kind": rec.get("kind"), **hit.to_dict()})
        return kept, removed
