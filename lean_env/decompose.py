"""Subgoal decomposition, as text: sketch -> one standalone lemma per `sorry` goal -> proofs substituted back.

DeepSeek-Prover-V2 style. A sketch is a theorem whose proof has `have name : P := by sorry` steps (and maybe
`sorry`s elsewhere: calc steps, bullets, `<;> sorry`). Lean (the REPL) returns each sorry's goal with its full
local context, e.g. "x y : ℕ\\nh₀ : x + y = 10\\nh1 : x = 3\\n⊢ y = 7", so the lemma for it is

    theorem t_sub1 (x y : ℕ) (h₀ : x + y = 10) (h1 : x = 3) : y = 7 := by

i.e. the theorem's hypotheses plus every earlier step as binders: form (b) of the paper, the one solved and
substituted back. Form (a), the theorem's original hypotheses only (earlier `have` steps left out), is recorded
beside it for the curriculum; it may be unprovable, and that is the point. The lemma's tactic proof is put back
at the sorry, indented for its position (`:= by sorry`, a tactic line, a bullet, a term). Everything here is
lexical; the recomposed proof is only a candidate until the Verifier checks it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lean_env.text import assign_at_depth0, find_decl, mask, split_at_depth0

_SORRY = re.compile(r"(?<![\w'.!?₀-₉])sorry(?![\w'!?₀-₉])")


@dataclass(frozen=True)
class Hypothesis:
    names: tuple[str, ...]
    type: str
    value: str | None = None  # `x : ℕ := 5` (a let-bound local)


@dataclass(frozen=True)
class Goal:
    hypotheses: tuple[Hypothesis, ...]
    target: str
    case: str | None = None


@dataclass
class Subgoal:
    """One sorry of a sketch: where it is, its goal(s) as Lean printed them, and the lemma(s) that replace it."""

    index: int
    start: int  # offset of the `sorry` token in the sketch
    goals: list[str]
    lemma_names: list[str] = field(default_factory=list)
    lemma_statements: list[str] = field(default_factory=list)  # form (b): earlier steps as hypotheses
    original_statements: list[str] = field(default_factory=list)  # form (a): the theorem's hypotheses only
    proof_states: list[int | None] = field(default_factory=list)


def sorry_offsets(src: str) -> list[int]:
    """Offsets of the `sorry` tokens outside comments and strings."""
    return [m.start() for m in _SORRY.finditer(mask(src))]


def parse_goal(goal: str) -> Goal:
    """A pretty-printed goal (`case tag`, hypothesis lines `a b : T`, `⊢ target`; continuation lines of a long
    hypothesis or target are indented) into its parts."""
    lines = goal.split("\n")
    case = None
    if lines and lines[0].startswith("case "):
        case, lines = lines[0][5:].strip(), lines[1:]
    entries: list[str] = []
    for line in lines:
        if entries and (line.startswith((" ", "\t")) or not line.strip()):
            entries[-1] += "\n" + line
        else:
            entries.append(line)
    hyps: list[Hypothesis] = []
    target = None
    for entry in entries:
        if entry.startswith("⊢"):
            target = _squash(entry[1:])
            continue
        names, sep, rest = split_at_depth0(_squash(entry), " : ")  # `h :\n  long type` squashes to `h : long type`
        if not sep:
            raise ValueError(f"cannot read the hypothesis line {entry!r}")
        typ, assign, value = split_at_depth0(rest, " := ")
        hyps.append(Hypothesis(tuple(names.split()), typ.strip(), value.strip() if assign else None))
    if target is None:
        raise ValueError("the goal has no `⊢` line")
    return Goal(tuple(hyps), target, case)


def _squash(text: str) -> str:
    """A multi-line type on one line (Lean's pretty printer breaks long lines; whitespace is not significant
    inside a type)."""
    return re.sub(r"\s*\n\s*", " ", text).strip()


def lemma_statement(name: str, goal: str | Goal, leave_out: Iterable[str] = ()) -> str:
    """`theorem NAME (hyps...) : target := by` for a goal: THE goal -> statement rule (decomposition lemmas and
    LeanDojo statements rebuilt from a traced state both use it). Inaccessible names (`h✝`, `inst✝¹`) get fresh
    usable names throughout the goal; an anonymous instance nothing else mentions becomes `[T]`; a let-bound
    local `x : T := v` becomes a binder plus an equation `(x_def : x = v)` (provable exactly when the goal is).
    Hypotheses named in `leave_out` are dropped unless the target or a kept hypothesis mentions them (a
    `have n : ℕ` is data)."""
    g = parse_goal(goal) if isinstance(goal, str) else goal
    g, anonymous = _fresh_names(_without(g, set(leave_out)))
    text = " ".join([g.target] + [f"{h.type} {h.value or ''}" for h in g.hypotheses])
    binders = []
    for h in g.hypotheses:
        if len(h.names) == 1 and h.names[0] in anonymous and h.value is None and not _mentions(text, h.names[0]):
            binders.append(f"[{h.type}]")
            continue
        binders.append(f"({' '.join(h.names)} : {h.type})")
        if h.value is not None:
            binders += [f"({n}_def : {n} = {h.value})" for n in h.names]
    ident = name if re.fullmatch(r"[^\W\d][\w'.]*", name) else "«" + name.replace("»", "") + "»"
    sig = " ".join([f"theorem {ident}", *binders])
    return f"{sig} :\n    {g.target} := by"


_INACCESSIBLE_NAME = re.compile(r"([^\W\d][\w'!?]*)?✝[⁰¹²³⁴⁵⁶⁷⁸⁹]*")


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w.']){re.escape(name)}(?![\w'])", text) is not None


def _fresh_names(g: Goal) -> tuple[Goal, set[str]]:
    """The goal with inaccessible names (`x✝`, `inst✝¹`) replaced by fresh identifiers (`x_1`, `inst_1`) everywhere
    they occur, and the fresh names of anonymous instances (Lean calls them `inst✝`)."""
    taken = {n for h in g.hypotheses for n in h.names}
    mapping: dict[str, str] = {}
    for n in (n for h in g.hypotheses for n in h.names):
        m = _INACCESSIBLE_NAME.fullmatch(n)
        if m is None or n in mapping:
            continue
        base, k = m.group(1) or "x", 1
        while f"{base}_{k}" in taken:
            k += 1
        taken.add(f"{base}_{k}")
        mapping[n] = f"{base}_{k}"
    if not mapping:
        return g, set()

    def sub(t: str) -> str:
        return _INACCESSIBLE_NAME.sub(lambda m: mapping.get(m.group(0), m.group(0)), t)

    hyps = tuple(Hypothesis(tuple(mapping.get(n, n) for n in h.names), sub(h.type),
                            None if h.value is None else sub(h.value)) for h in g.hypotheses)
    return Goal(hyps, sub(g.target), g.case), {v for k, v in mapping.items() if k.startswith("inst✝")}


def _without(g: Goal, names: set[str]) -> Goal:
    """The goal with the hypotheses in `names` removed, keeping any that the rest still refers to."""
    needed: set[str] = set()
    while True:
        kept = [h for h in g.hypotheses if not set(h.names) & names or set(h.names) & needed]
        text = " ".join([g.target] + [f"{h.type} {h.value or ''}" for h in kept])
        mentioned = {n for n in names if _mentions(text, n)}
        if mentioned <= needed:
            return Goal(tuple(kept), g.target, g.case)
        needed |= mentioned


def decompose(sketch: str, sorries: list[Any], base_name: str) -> list[Subgoal]:
    """Pair the REPL's sorries (`.goal`, `.pos`, `.proof_state`) with the sorry tokens of `sketch` and name one
    lemma per goal. Sorries at the same position are one token with several goals (`<;> sorry`); positions are
    used only for grouping and order, so they may be relative to any prefix of the text. Raises ValueError when
    the counts do not match (the sketch was not the text Lean saw)."""
    groups: dict[tuple[int, int], list[Any]] = {}
    for k, s in enumerate(sorries):
        pos = getattr(s, "pos", None)
        key = (pos.line, pos.column) if pos is not None else (10**9, k)
        groups.setdefault(key, []).append(s)
    tokens = sorry_offsets(sketch)
    ordered = [groups[k] for k in sorted(groups)]
    if len(ordered) != len(tokens):
        raise ValueError(f"{len(tokens)} sorry tokens in the sketch but {len(ordered)} sorry positions from Lean")
    steps = _have_spans(sketch)
    subgoals, n = [], 0
    for i, (offset, group) in enumerate(zip(tokens, ordered, strict=True)):
        sub = Subgoal(i, offset, [s.goal for s in group])
        earlier = {name for name, start in steps if start < offset}
        for s in group:
            n += 1
            name = f"{base_name}_sub{n}"
            sub.lemma_names.append(name)
            sub.lemma_statements.append(lemma_statement(name, s.goal))
            sub.original_statements.append(lemma_statement(name, s.goal, leave_out=earlier))
            sub.proof_states.append(getattr(s, "proof_state", None))
        subgoals.append(sub)
    return subgoals


def tactic_body(proof_src: str, name: str) -> list[str]:
    """The proof of theorem `name` in `proof_src` as tactic lines, dedented (a term proof becomes `exact ...`)."""
    d = find_decl(proof_src, name, ("theorem", "lemma"))
    if d is None or d.sig_end is None:
        raise ValueError(f"no proof of {name!r} in the text")
    body = proof_src[d.sig_end:d.end].strip("\n").rstrip()
    stripped = body.lstrip()
    if re.match(r"by\b", stripped):
        rest = stripped[2:]
        first, _, tail = rest.partition("\n")
        lines = ([first.strip()] if first.strip() else []) + _dedent(tail.split("\n") if tail else [])
    else:
        term_lines = stripped.split("\n")
        lines = ["exact " + term_lines[0].strip()] + _dedent(term_lines[1:], keep=2)
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        raise ValueError(f"the proof of {name!r} is empty")
    return lines


def _dedent(lines: list[str], keep: int = 0) -> list[str]:
    indent = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
    return [" " * keep + x[indent:] if x.strip() else "" for x in lines]


def substitute(sketch: str, subgoals: list[Subgoal], proofs: dict[str, list[str]]) -> str:
    """The sketch with each sorry replaced by the tactic lines of its lemma(s) (`proofs`: lemma name -> lines,
    e.g. from `tactic_body`). A sorry whose lemma has no proof stays a sorry (a partial result). Several goals at
    one token are closed with `first | ... | ...`."""
    out = sketch
    for sub in sorted(subgoals, key=lambda s: s.start, reverse=True):
        bodies = [proofs.get(n) for n in sub.lemma_names]
        if any(b is None for b in bodies):
            continue
        if len(bodies) == 1:
            lines = bodies[0]
        else:
            alts = ["(" + "; ".join(ln.strip() for ln in b) + ")" if len(b) > 1 else b[0].strip() for b in bodies]
            lines = ["first " + " ".join(f"| {a}" for a in alts)]
        out = out[:sub.start] + _placed(out, sub.start, lines) + out[sub.start + len("sorry"):]
    return out


def _placed(src: str, at: int, lines: list[str]) -> str:
    """Tactic lines laid out to replace the `sorry` at offset `at`, according to what surrounds it."""
    line_start = src.rfind("\n", 0, at) + 1
    before = src[line_start:at]
    line_indent = len(before) - len(before.lstrip())
    line_end = src.find("\n", at)
    after = src[at + 5: line_end if line_end >= 0 else len(src)].strip()
    b = before.rstrip()
    tactic_position = b == "" or b.endswith(("·", "by", "<;>", "then", "else", "=>")) or b.endswith(" .")
    if len(lines) == 1:
        one = lines[0].strip()
        return one if tactic_position else f"(by {one})"
    if b.endswith("by") and not after:
        pad = " " * (line_indent + 2)
        return "\n" + "\n".join(pad + ln if ln.strip() else "" for ln in lines)
    if tactic_position and not b.endswith(("by", "<;>")) and not after:
        col = at - line_start
        return lines[0] + "".join("\n" + " " * col + ln if ln.strip() else "\n" for ln in lines[1:])
    joined = "; ".join(ln.strip() for ln in lines)
    return f"({joined})" if tactic_position else f"(by {joined})"


_NEXT_STEP = re.compile(r"\n\s*(have|calc|exact|·)\b")  # a line that starts the sketch's next step


def have_steps(sketch: str) -> list[dict[str, Any]]:
    """The `have name : P := ...` steps of a sketch, in order, with their statement text and whether their proof
    is a bare `sorry` (for display and for the trace; the lemmas themselves come from Lean's goals)."""
    return [{"name": name, "statement": statement, "sorry": sorried}
            for name, _, statement, sorried in _have_matches(sketch)]


def _have_spans(sketch: str) -> list[tuple[str, int]]:
    """(name, offset) of each `have` step: what form (a) of a later lemma leaves out."""
    return [(name, start) for name, start, _, _ in _have_matches(sketch)]


def _have_matches(sketch: str) -> Iterator[tuple[str, int, str, bool]]:
    masked = mask(sketch)
    for m in re.finditer(r"(?<![\w.])have\s+([^\s:]*)\s*:", masked):
        assign = assign_at_depth0(masked, m.end(), len(masked), _NEXT_STEP)
        if assign is None:
            continue
        rest = masked[assign + 2:].lstrip()
        yield (m.group(1) or "this", m.start(), _squash(sketch[m.end():assign]),
               bool(re.match(r"(by\s+)?sorry\b", rest)))
