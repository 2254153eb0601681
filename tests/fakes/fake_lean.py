#!/usr/bin/env python3
"""FAKE Lean 4 REPL for tests. THIS IS NOT LEAN.

It speaks the leanprover-community/repl JSON protocol (commands separated by blank lines, one JSON answer per
command followed by a blank line; `{"cmd", "env"}`, `{"tactic", "proofState"}`, `{"path"}`; environments,
sorries with goals and proof-state ids, tactic mode, `#print axioms`) and HONESTLY checks a tiny fragment of
Lean, evaluated in Python:

- statements over natural numbers: binders `(a b : ℕ)` and hypotheses `(h : P)`; propositions built from
  `+ - * / % ^`, `= ≠ < ≤ > ≥`, `∧ ∨ ¬ → ↔`, `True`, `False` (Lean's ℕ semantics: truncated subtraction,
  floor division, `x / 0 = 0`);
- tactics: `decide`, `rfl`, `native_decide` (closed goals, evaluated), `norm_num`, `simp`, `omega`, `linarith`,
  `nlinarith`, `positivity`, `ring`, ... (close a goal only when it is closed and true, a polynomial identity or
  inequality with non-negative coefficients, a hypothesis, or a closed false hypothesis is present; `[...]`
  hints are ignored), `exact h`, `assumption`, `intro`, `constructor`, `trivial`, `sorry`,
  `have h : P := by ...` (nested blocks, error recovery per nested `by` as in Lean), `·` bullets, `<;>`,
  `all_goals`;
- `theorem`/`lemma`/`example`/`axiom`, `#print axioms` (sorryAx, Lean.ofReduceBool for native_decide, user
  axioms, and propext/Classical.choice/Quot.sound for the Mathlib-style tactics). Mathlib tactics need an
  `import Mathlib...` in the environment, as in real Lean.

Everything outside the fragment is an error ("fake Lean: unsupported ..."), so nothing is ever accepted that
the fragment cannot check. Test hooks: the tactics `fake_hang` (sleeps forever) and `fake_crash` (exits).
Benchmark hook: `FAKE_LEAN_DELAY_S=L` makes every command run in an existing environment (a proof check; not
the header import) take L more seconds, a stand-in for real Lean's seconds per proof (bench/e2e_gpu.py).
Used by tests through `LeanSettings(repl_path=<this file>)`.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass, field

STANDARD_AXIOMS = ("propext", "Classical.choice", "Quot.sound")
PROOF_DELAY_S = float(os.environ.get("FAKE_LEAN_DELAY_S") or 0)  # benchmarks only: seconds per proof check
CORE_CLOSERS = {"decide", "rfl", "trivial", "omega", "simp", "simp_all"}
MATHLIB_CLOSERS = {"norm_num", "linarith", "nlinarith", "positivity", "ring", "ring_nf", "aesop", "tauto",
                   "field_simp", "simp_arith", "bound"}


class LeanFail(Exception):
    """An elaboration error at [start, end) of the command text."""

    def __init__(self, msg: str, start: int, end: int):
        super().__init__(msg)
        self.msg, self.start, self.end = msg, start, end


# ---------------------------------------------------------------- expressions ----------------------------------

TOKEN = re.compile(r"\s*(?:(\d+)|([^\W\d][\w'!?.✝₀-₉]*)|(<->|->|<=|>=|!=|[≠≤≥∧∨¬→↔=<>+\-*/%^()]))", re.UNICODE)
BINARY = {"↔": (20, "none"), "→": (25, "right"), "∨": (30, "right"), "∧": (35, "right"),
          "=": (50, "none"), "≠": (50, "none"), "<": (50, "none"), "≤": (50, "none"), ">": (50, "none"),
          "≥": (50, "none"), "+": (65, "left"), "-": (65, "left"), "*": (70, "left"), "/": (70, "left"),
          "%": (70, "left"), "^": (75, "right")}
ASCII = {"<->": "↔", "->": "→", "<=": "≤", ">=": "≥", "!=": "≠"}
RELATIONS = {"=", "≠", "<", "≤", ">", "≥"}
CONNECTIVES = {"∧", "∨", "→", "↔"}


def tokenize(text: str) -> list[str]:
    out, i, text = [], 0, text.strip()
    while i < len(text):
        m = TOKEN.match(text, i)
        if not m or m.end() == i:
            raise ValueError(f"unexpected character {text[i:].strip()[:1]!r}")
        tok = m.group(1) or m.group(2) or m.group(3)
        out.append(ASCII.get(tok, tok))
        i = m.end()
    return out


def parse_expr(text: str):
    """Expression AST: ('num', n) | ('var', name) | ('const', True/False) | ('not', a) | (op, a, b)."""
    toks = tokenize(text)
    pos = 0

    def peek():
        return toks[pos] if pos < len(toks) else None

    def parse(min_prec: int):
        nonlocal pos
        tok = peek()
        if tok is None:
            raise ValueError("unexpected end of expression")
        pos += 1
        if tok == "(":
            left = parse(0)
            if peek() != ")":
                raise ValueError("expected ')'")
            pos += 1
        elif tok == "¬":
            left = ("not", parse(40))
        elif tok.isdigit():
            left = ("num", int(tok))
        elif tok in ("True", "False"):
            left = ("const", tok == "True")
        elif tok[0].isalpha() or tok[0] == "_":
            left = ("var", tok)
        else:
            raise ValueError(f"unexpected token {tok!r}")
        while (op := peek()) in BINARY:
            prec, assoc = BINARY[op]
            if prec < min_prec:
                break
            pos += 1
            right = parse(prec if assoc == "right" else prec + 1)
            left = (op, left, right)
            if assoc == "none" and peek() in BINARY and BINARY[peek()][0] == prec:
                raise ValueError(f"ambiguous chain of {op}")
        return left

    ast = parse(0)
    if pos != len(toks):
        raise ValueError(f"unexpected token {toks[pos]!r}")
    return ast


def show(e, prec: int = 0) -> str:
    kind = e[0]
    if kind == "num":
        return str(e[1])
    if kind == "var":
        return e[1]
    if kind == "const":
        return "True" if e[1] else "False"
    if kind == "not":
        s = "¬" + show(e[1], 40)
        return f"({s})" if prec > 40 else s
    op_prec, assoc = BINARY[kind]
    lp = op_prec + 1 if assoc != "left" else op_prec
    rp = op_prec + 1 if assoc != "right" else op_prec
    s = f"{show(e[1], lp)} {kind} {show(e[2], rp)}"
    return f"({s})" if op_prec < prec else s


def typecheck(e, nat_vars: set[str], want_prop: bool) -> None:
    kind = e[0]
    if kind == "num" or kind == "var":
        if want_prop:
            raise ValueError(f"type mismatch: {show(e)} is a natural number, not a proposition")
        if kind == "var" and e[1] not in nat_vars:
            raise ValueError(f"unknown identifier '{e[1]}'")
        return
    if kind == "const":
        if not want_prop:
            raise ValueError("type mismatch: proposition used as a number")
        return
    if not want_prop and (kind == "not" or kind in RELATIONS or kind in CONNECTIVES):
        raise ValueError(f"type mismatch: {show(e)} is a proposition, not a natural number")
    if want_prop and kind not in RELATIONS and kind not in CONNECTIVES and kind != "not":
        raise ValueError(f"type mismatch: {show(e)} is a natural number, not a proposition")
    if kind == "not":
        typecheck(e[1], nat_vars, True)
    else:
        sub_prop = kind in CONNECTIVES
        typecheck(e[1], nat_vars, sub_prop)
        typecheck(e[2], nat_vars, sub_prop)


def free_vars(e) -> set[str]:
    if e[0] == "var":
        return {e[1]}
    return set().union(*(free_vars(a) for a in e[1:] if isinstance(a, tuple)))


def evaluate(e):
    kind = e[0]
    if kind in ("num", "const"):
        return e[1]
    if kind == "not":
        return not evaluate(e[1])
    a = evaluate(e[1])
    if kind == "→" and not a:
        return True
    b = evaluate(e[2])
    if kind == "^" and b > 4096:
        raise ValueError("exponent too large for the fake Lean")
    ops = {"+": lambda: a + b, "-": lambda: max(a - b, 0), "*": lambda: a * b,
           "/": lambda: a // b if b else 0, "%": lambda: a % b if b else a, "^": lambda: a**b,
           "=": lambda: a == b, "≠": lambda: a != b, "<": lambda: a < b, "≤": lambda: a <= b,
           ">": lambda: a > b, "≥": lambda: a >= b, "∧": lambda: a and b, "∨": lambda: a or b,
           "→": lambda: b, "↔": lambda: a == b}
    return ops[kind]()


def poly(e) -> dict[tuple, int] | None:
    """e as a polynomial with natural coefficients (monomial -> coefficient), or None outside + * ^."""
    kind = e[0]
    if kind == "num":
        return {(): e[1]} if e[1] else {}
    if kind == "var":
        return {(e[1],): 1}
    if kind == "+":
        p, q = poly(e[1]), poly(e[2])
        if p is None or q is None:
            return None
        out = dict(p)
        for m, c in q.items():
            out[m] = out.get(m, 0) + c
        return out
    if kind == "*":
        return _mul(poly(e[1]), poly(e[2]))
    if kind == "^" and e[2][0] == "num" and e[2][1] <= 16:
        out = {(): 1}
        for _ in range(e[2][1]):
            out = _mul(out, poly(e[1]))
            if out is None:
                return None
        return out
    return None


def _mul(p, q):
    if p is None or q is None:
        return None
    out: dict[tuple, int] = {}
    for m1, c1 in p.items():
        for m2, c2 in q.items():
            m = tuple(sorted(m1 + m2))
            out[m] = out.get(m, 0) + c1 * c2
    return out


def polynomially_true(e) -> bool:
    """Sound for all naturals: equal polynomials, or a difference with non-negative coefficients."""
    if e[0] not in ("=", "≤", "<", "≥", ">"):
        return False
    lhs, rhs = (e[2], e[1]) if e[0] in ("≥", ">") else (e[1], e[2])
    p, q = poly(lhs), poly(rhs)
    if p is None or q is None:
        return False
    diff = {m: q.get(m, 0) - p.get(m, 0) for m in set(p) | set(q)}
    if e[0] == "=":
        return all(c == 0 for c in diff.values())
    nonneg = all(c >= 0 for c in diff.values())
    return nonneg and (e[0] in ("≤", "≥") or diff.get((), 0) > 0)


# ---------------------------------------------------------------- goals ----------------------------------------


@dataclass
class Goal:
    context: list[tuple[str, object]]  # (name, "ℕ") for variables, (name, prop AST) for hypotheses
    target: object
    case: str | None = None

    @property
    def nat_vars(self) -> set[str]:
        return {n for n, t in self.context if t == "ℕ"}

    def hyps(self) -> list[tuple[str, object]]:
        return [(n, t) for n, t in self.context if t != "ℕ"]

    def lookup(self, name: str):
        for n, t in reversed(self.context):
            if n == name and t != "ℕ":
                return t
        return None

    def with_hyp(self, name: str, prop) -> Goal:
        return Goal(self.context + [(name, prop)], self.target, self.case)

    def pretty(self) -> str:
        lines, i = ([f"case {self.case}"] if self.case else []), 0
        while i < len(self.context):
            name, typ = self.context[i]
            if typ == "ℕ":
                names = [name]
                while i + 1 < len(self.context) and self.context[i + 1][1] == "ℕ":
                    i += 1
                    names.append(self.context[i][0])
                lines.append(f"{' '.join(names)} : ℕ")
            else:
                lines.append(f"{name} : {show(typ)}")
            i += 1
        lines.append(f"⊢ {show(self.target)}")
        return "\n".join(lines)


@dataclass
class Decl:
    statement: object | None  # closed proposition (None when the declaration has binders)
    axioms: set[str]
    type_text: str = ""  # what `#check @NAME` prints after the colon


def pi_type(context: list[tuple[str, object]], target) -> str:
    """The declaration's type as one canonical text, e.g. `∀ (a : ℕ) (h : a = 1), a + 0 = 1`."""
    if not context:
        return show(target)
    binders = " ".join(f"({n} : {t if t == 'ℕ' else show(t)})" for n, t in context)
    return f"∀ {binders}, {show(target)}"


@dataclass
class Env:
    imports: tuple[str, ...] = ()
    decls: dict[str, Decl] = field(default_factory=dict)

    @property
    def mathlib(self) -> bool:
        return any(i == "Mathlib" or i.startswith("Mathlib.") for i in self.imports)


# ---------------------------------------------------------------- elaboration -----------------------------------


def strip_comments(src: str) -> str:
    """Blank out comments (keeping offsets and newlines), so positions stay those of the original text."""
    out, i, depth = list(src), 0, 0
    while i < len(src):
        if depth == 0 and src.startswith("--", i):
            while i < len(src) and src[i] != "\n":
                out[i] = " "
                i += 1
            continue
        if src.startswith("/-", i):
            depth += 1
            out[i] = out[i + 1] = " "
            i += 2
            continue
        if depth and src.startswith("-/", i):
            depth -= 1
            out[i] = out[i + 1] = " "
            i += 2
            continue
        if depth and src[i] != "\n":
            out[i] = " "
        i += 1
    return "".join(out)


def top_level_find(text: str, needle: str, start: int = 0) -> int:
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if depth == 0 and text.startswith(needle, i):
            return i
        if c in "([{⟨⦃":
            depth += 1
        elif c in ")]}⟩⦄":
            depth -= 1
    return -1


class Elaborator:
    """Runs one command text in an environment; collects messages, sorries and the axioms used."""

    def __init__(self, repl: FakeRepl, src: str, env: Env):
        self.repl, self.raw, self.src, self.env = repl, src, strip_comments(src), env
        self.messages: list[dict] = []
        self.sorries: list[dict] = []
        self.axioms: set[str] = set()
        self.env_now = env  # declarations visible to `exact NAME` (grows as the command declares more)

    # positions: line 1-based, column 0-based in code points, as the real REPL reports them
    def pos(self, offset: int) -> dict:
        line = self.src.count("\n", 0, offset) + 1
        return {"line": line, "column": offset - (self.src.rfind("\n", 0, offset) + 1)}

    def message(self, severity: str, data: str, start: int, end: int) -> None:
        self.messages.append({"severity": severity, "pos": self.pos(start), "endPos": self.pos(end), "data": data})

    def record_sorry(self, goal: Goal, start: int) -> None:
        ps = self.repl.new_proof_state([goal], self.env_now)
        self.sorries.append({"proofState": ps, "pos": self.pos(start), "goal": goal.pretty(),
                             "endPos": self.pos(start + 5)})
        self.axioms.add("sorryAx")

    # ---- commands ----
    def run(self) -> Env:
        env = self.env_now = Env(self.env.imports, dict(self.env.decls))
        starts = [m.start() for m in re.finditer(r"(?m)^(?=\S)", self.src)]
        for k, start in enumerate(starts):
            end = starts[k + 1] if k + 1 < len(starts) else len(self.src)
            text = self.src[start:end]
            word = text.split(None, 1)[0]
            try:
                if word == "import":
                    if k > 0 and any(not self.src[s:].startswith("import") for s in starts[:k]):
                        raise LeanFail("invalid 'import' command, it must be used in the beginning of the file",
                                       start, end)
                    module = text.split()[1]
                    if not re.fullmatch(r"(Mathlib|Aesop|Lean|Init|Std|Batteries)(\.[\w.]+)?", module):
                        raise LeanFail(f"unknown module prefix '{module.split('.')[0]}'", start, end)
                    env.imports += (module,)
                elif word in ("open", "set_option", "namespace", "end", "section", "universe"):
                    continue
                elif word in ("theorem", "lemma", "example"):
                    self.declaration(env, text, start, word)
                elif word == "axiom":
                    m = re.match(r"axiom\s+(\S+)\s*:(.*)", text, re.S)
                    if not m:
                        raise LeanFail("unexpected axiom syntax", start, end)
                    prop = self.prop(m.group(2), set(), start, end)
                    env.decls[m.group(1)] = Decl(prop, {m.group(1)}, show(prop))
                elif word == "#print":
                    m = re.match(r"#print\s+axioms\s+(?:_root_\.)?(\S+)", text)  # `_root_.` resolves as in Lean
                    if not m or m.group(1) not in env.decls:
                        raise LeanFail(f"unknown constant '{m.group(1) if m else text.strip()}'", start, end)
                    axs = sorted(env.decls[m.group(1)].axioms)
                    data = (f"'{m.group(1)}' depends on axioms: [{', '.join(axs)}]" if axs
                            else f"'{m.group(1)}' does not depend on any axioms")
                    self.message("info", data, start, start + len(text.rstrip()))
                elif word == "#check":
                    m = re.match(r"#check\s+@?(?:_root_\.)?(\S+)\s*$", text)
                    if not m or m.group(1) not in env.decls:
                        raise LeanFail(f"unknown identifier '{m.group(1) if m else text.strip()}'", start, end)
                    self.message("info", f"{m.group(1)} : {env.decls[m.group(1)].type_text}", start,
                                 start + len(text.rstrip()))
                else:
                    raise LeanFail(f"fake Lean: unsupported command '{word}'", start, start + len(word))
            except LeanFail as e:
                self.message("error", e.msg, e.start, e.end)
        return env

    def prop(self, text: str, nat_vars: set[str], start: int, end: int):
        try:
            e = parse_expr(text)
            typecheck(e, nat_vars, True)
            return e
        except ValueError as err:
            raise LeanFail(f"fake Lean: unsupported or ill-typed proposition: {err}", start, end) from None

    def declaration(self, env: Env, text: str, start: int, word: str) -> None:
        assign = top_level_find(text, ":=")
        if assign < 0:
            raise LeanFail("unexpected end of input; expected ':='", start, start + len(text))
        head = text[len(word):assign]
        name = None
        if word != "example":
            m = re.match(r"\s*([^\s(\[{:⦃]+)", head)
            if not m:
                raise LeanFail("expected identifier", start, start + len(text))
            name, head = m.group(1), head[m.end():]
            if name in env.decls:
                raise LeanFail(f"'{name}' has already been declared", start, start + len(word) + len(name) + 1)
        context: list[tuple[str, object]] = []
        i = 0
        while True:
            while i < len(head) and head[i].isspace():
                i += 1
            if i < len(head) and head[i] in "([{⦃":
                close = {"(": ")", "[": "]", "{": "}", "⦃": "⦄"}[head[i]]
                j = top_level_find(head, close, i + 1)
                inner = head[i + 1:j]
                names, _, typ = inner.partition(":")
                if not typ or head[i] == "[":
                    raise LeanFail(f"fake Lean: unsupported binder {head[i:j + 1]}", start, start + len(text))
                if typ.strip() in ("ℕ", "Nat"):
                    context += [(n, "ℕ") for n in names.split()]
                else:
                    p = self.prop(typ, {n for n, t in context if t == "ℕ"}, start, start + assign)
                    context += [(n, p) for n in names.split()]
                i = j + 1
                continue
            break
        if not head[i:].startswith(":"):
            raise LeanFail("unexpected token; expected ':'", start, start + assign)
        goal = Goal(context, self.prop(head[i + 1:], {n for n, t in context if t == "ℕ"}, start, start + assign))
        before = (len(self.messages), set(self.axioms))
        self.axioms = set()
        body_start = start + assign + 2
        body_end = start + len(text.rstrip())
        self.proof_term(goal, body_start, body_end, recover=True)
        errors = any(m["severity"] == "error" for m in self.messages[before[0]:])
        if errors:
            self.axioms.add("sorryAx")
        elif "sorryAx" in self.axioms:
            name_start = start + len(word) + 1
            self.message("warning", "declaration uses `sorry`", start if name is None else name_start,
                         start + len(word) if name is None else name_start + len(name))
        if name is not None:
            env.decls[name] = Decl(goal.target if not context else None, set(self.axioms),
                                   pi_type(context, goal.target))
        self.axioms = before[1] | self.axioms

    # ---- proofs ----
    def proof_term(self, goal: Goal, start: int, end: int, recover: bool) -> None:
        """`:= <term>` for `goal`: `by <tactics>`, `sorry`, or a hypothesis / closed declaration name."""
        text = self.src[start:end]
        lead = len(text) - len(text.lstrip())
        body = text.strip()
        at = start + lead
        if re.match(r"by\b", body):
            remaining = self.block(at + 2, end, [goal], recover)
            if remaining:
                raise_or_log = LeanFail("unsolved goals\n" + "\n\n".join(g.pretty() for g in remaining), at, end)
                if not recover:
                    raise raise_or_log
                self.message("error", raise_or_log.msg, at, end)
                self.axioms.add("sorryAx")
        elif body == "sorry":
            self.record_sorry(goal, at)
        else:
            try:
                self.close_by_name(goal, body, at, end)
            except LeanFail as e:
                if not recover:
                    raise
                self.message("error", e.msg, e.start, e.end)

    def close_by_name(self, goal: Goal, name: str, start: int, end: int) -> None:
        hyp = goal.lookup(name)
        if hyp is not None:
            if hyp != goal.target:
                raise LeanFail(f"type mismatch\n  {name}\nhas type\n  {show(hyp)} : Prop\nbut is expected to have "
                               f"type\n  {show(goal.target)} : Prop", start, end)
            return
        decl = self.env_now.decls.get(name)
        if decl is None:
            raise LeanFail(f"unknown identifier '{name}'", start, end)
        if decl.statement is None or decl.statement != goal.target:
            raise LeanFail(f"type mismatch: '{name}' does not prove\n  {show(goal.target)}", start, end)
        self.axioms |= decl.axioms

    def items(self, start: int, end: int) -> list[tuple[int, int]]:
        """Split a tactic block into tactics: new lines at the block's column start a new tactic."""
        text = self.src[start:end]
        first = len(text) - len(text.lstrip())
        if first == len(text):
            return []
        p = start + first
        inline = self.src[self.src.rfind("\n", 0, p) + 1:p].strip() != ""
        lines = []
        for m in re.finditer(r"(?m)^([ \t]*)(\S)", self.src[start:end]):
            off = start + m.start(2)
            if off > p:
                lines.append((off, len(m.group(1))))
        col = self.pos(p)["column"] if not inline else min((c for _, c in lines), default=0)
        starts = [p] + [off for off, c in lines if c <= col]
        return [(s, starts[k + 1] if k + 1 < len(starts) else end) for k, s in enumerate(starts)]

    def block(self, start: int, end: int, goals: list[Goal], recover: bool) -> list[Goal]:
        for s, e in self.items(start, end):
            e = s + len(self.src[s:e].rstrip())
            try:
                goals = self.tactic(s, e, goals)
            except LeanFail as err:
                if not recover:
                    raise
                self.message("error", err.msg, err.start, err.end)
                self.axioms.add("sorryAx")  # Lean's error recovery admits the goal
                return []
        return goals

    def tactic(self, start: int, end: int, goals: list[Goal]) -> list[Goal]:
        text = self.src[start:end]
        if text[:1] in ("·", "."):
            if not goals:
                raise LeanFail("no goals to be proved", start, end)
            rest = self.block(start + 1, end, [goals[0]], recover=False)
            if rest:
                raise LeanFail("unsolved goals\n" + "\n\n".join(g.pretty() for g in rest), start, end)
            return goals[1:]
        combine = top_level_find(text, "<;>")
        if combine >= 0:
            if not goals:
                raise LeanFail("no goals to be proved", start, end)
            produced = self.tactic(start, start + combine, [goals[0]])
            out: list[Goal] = []
            for g in produced:
                out += self.tactic(start + combine + 3 + self._lead(start + combine + 3, end), end, [g])
            return out + goals[1:]
        m = re.match(r"all_goals\s+", text)
        if m:
            out = []
            for g in goals:
                out += self.block(start + m.end(), end, [g], recover=False)
            return out
        if not goals:
            raise LeanFail("no goals to be proved", start, end)
        goal, rest = goals[0], goals[1:]
        word = re.match(r"[^\s\[]+", text).group(0)
        if word == "have":
            return [self.have(goal, start, end)] + rest
        if word == "sorry":
            self.record_sorry(goal, start)
            return rest
        if word in ("exact", "apply"):
            self.close_by_name(goal, text[len(word):].strip(), start, end)
            return rest
        if word == "assumption":
            if goal.target not in [t for _, t in goal.hyps()]:
                raise LeanFail("tactic 'assumption' failed\n" + goal.pretty(), start, end)
            return rest
        if word == "intro":
            names = text.split()[1:] or ["a✝"]
            for n in names:
                if goal.target[0] != "→":
                    raise LeanFail("no additional binders or let bindings in the goal to introduce", start, end)
                goal = Goal(goal.context + [(n, goal.target[1])], goal.target[2], goal.case)
            return [goal] + rest
        if word == "constructor":
            t = goal.target
            if t[0] == "∧":
                return [Goal(goal.context, t[1], "left"), Goal(goal.context, t[2], "right")] + rest
            if t[0] == "↔":
                return [Goal(goal.context, ("→", t[1], t[2]), "mp"),
                        Goal(goal.context, ("→", t[2], t[1]), "mpr")] + rest
            raise LeanFail("tactic 'constructor' failed, target is not an inductive datatype", start, end)
        if word in ("fake_hang", "fake_crash"):
            if word == "fake_crash":
                os._exit(3)
            time.sleep(10**6)
        if word in CORE_CLOSERS or word in MATHLIB_CLOSERS or word == "native_decide":
            if word in MATHLIB_CLOSERS and not self.env_now.mathlib:
                raise LeanFail(f"unknown tactic '{word}' (it needs `import Mathlib`)", start, end)
            self.closer(word, goal, start, end)
            return rest
        raise LeanFail(f"fake Lean: unsupported tactic '{word}'", start, end)

    def _lead(self, start: int, end: int) -> int:
        text = self.src[start:end]
        return len(text) - len(text.lstrip())

    def closer(self, word: str, goal: Goal, start: int, end: int) -> None:
        t = goal.target
        closed = not free_vars(t)
        if word in ("decide", "native_decide", "rfl"):
            ok = closed and (t[0] == "=" if word == "rfl" else True) and evaluate(t)
            if word == "rfl" and not closed and t[0] == "=" and t[1] == t[2]:
                ok = True
            if not ok:
                why = "is false" if closed else "has free variables"
                raise LeanFail(f"{word} failed: the proposition\n  {show(t)}\n{why}", start, end)
            if word == "native_decide":
                self.axioms.add("Lean.ofReduceBool")
            return
        hyps = [h for _, h in goal.hyps()]
        contradiction = any(not free_vars(h) and not evaluate(h) for h in hyps)
        ok = (closed and evaluate(t)) or polynomially_true(t) or t in hyps or contradiction
        if word in ("ring", "ring_nf"):
            ok = (closed and t[0] == "=" and evaluate(t)) or (t[0] == "=" and polynomially_true(t))
        if not ok:
            names = {"linarith": "linarith failed to find a contradiction", "omega": "omega could not prove the goal",
                     "nlinarith": "linarith failed to find a contradiction", "ring": "ring failed"}
            raise LeanFail(f"{names.get(word, word + ' failed')}\n{goal.pretty()}", start, end)
        if word not in ("decide", "rfl", "trivial"):
            self.axioms.update(STANDARD_AXIOMS)

    def have(self, goal: Goal, start: int, end: int) -> Goal:
        text = self.src[start:end]
        assign = top_level_find(text, ":=")
        if assign < 0:
            raise LeanFail("fake Lean: unsupported `have` without `:=`", start, end)
        m = re.match(r"have\s*([^\s:]*)\s*:", text[:assign])
        if not m:
            raise LeanFail("fake Lean: unsupported `have` syntax", start, end)
        name = m.group(1) or "this"
        prop = self.prop(text[m.end():assign], goal.nat_vars, start, start + assign)
        self.proof_term(Goal(goal.context, prop), start + assign + 2, end, recover=True)
        return goal.with_hyp(name, prop)


class FakeRepl:
    def __init__(self):
        self.envs: list[Env] = []
        self.proof_states: list[list[Goal]] = []
        self.current_env = Env()
        self.proof_state_env: list[Env] = []

    def new_proof_state(self, goals: list[Goal], env: Env) -> int:
        self.proof_states.append(goals)
        self.proof_state_env.append(env)
        return len(self.proof_states) - 1

    def handle(self, req: dict) -> dict:
        if "path" in req and "cmd" not in req:
            try:
                with open(req["path"], encoding="utf-8") as f:
                    req = {**req, "cmd": f.read()}
            except OSError as e:
                return {"message": f"fake Lean: cannot read {req['path']}: {e}"}
        if "cmd" in req:
            return self.command(req["cmd"], req.get("env"))
        if "tactic" in req:
            return self.tactic(req["tactic"], req.get("proofState"))
        if any(k in req for k in ("pickleTo", "unpickleEnvFrom", "unpickleProofStateFrom")):
            return {"message": "fake Lean: pickling is not supported"}
        return {"message": "Could not parse as a valid JSON command"}

    def command(self, cmd: str, env_id: int | None) -> dict:
        if env_id is not None and not (0 <= env_id < len(self.envs)):
            return {"message": "Unknown environment."}
        if env_id is not None and PROOF_DELAY_S > 0:
            time.sleep(PROOF_DELAY_S)
        self.current_env = self.envs[env_id] if env_id is not None else Env()
        elab = Elaborator(self, cmd, self.current_env)
        new_env = elab.run()
        self.envs.append(new_env)
        out: dict = {}
        if elab.sorries:
            out["sorries"] = elab.sorries
        if elab.messages:
            out["messages"] = elab.messages
        out["env"] = len(self.envs) - 1
        return out

    def tactic(self, tactic: str, state: int | None) -> dict:
        if state is None or not (0 <= state < len(self.proof_states)):
            return {"message": "Unknown proof state."}
        goals = list(self.proof_states[state])
        self.current_env = self.proof_state_env[state]
        elab = Elaborator(self, tactic, self.current_env)
        try:
            goals = elab.block(0, len(elab.src), goals, recover=False)
        except LeanFail as e:
            return {"message": f"Lean error:\n<input>:{elab.pos(e.start)['line']}:{elab.pos(e.start)['column']}: "
                               f"{e.msg}"}
        errors = [m for m in elab.messages if m["severity"] == "error"]
        if errors:
            return {"message": "Lean error:\n" + errors[0]["data"]}
        new = self.new_proof_state(goals, elab.env_now)
        out: dict = {}
        if elab.sorries:
            out["sorries"] = [{"proofState": s["proofState"], "goal": s["goal"]} for s in elab.sorries]
        status = ("Incomplete: contains sorry" if elab.sorries else
                  "Incomplete: open goals remain" if goals else "Completed")
        out.update({"proofStatus": status, "proofState": new, "goals": [g.pretty() for g in goals]})
        return out


def main() -> None:
    repl = FakeRepl()
    buf: list[str] = []

    def flush() -> None:
        text = "".join(buf).strip()
        buf.clear()
        if not text:
            return
        try:
            req = json.loads(text)
            out = repl.handle(req) if isinstance(req, dict) else {"message": "Could not parse as a valid JSON command"}
        except json.JSONDecodeError as e:
            out = {"message": f"Could not parse JSON:\n{e}"}
        sys.stdout.write(json.dumps(out, ensure_ascii=False, indent=1) + "\n\n")
        sys.stdout.flush()

    for line in sys.stdin:
        if line.strip() == "":
            flush()
        else:
            buf.append(line)
    flush()


if __name__ == "__main__":
    main()
