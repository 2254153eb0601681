"""Lean statement surgery for autoformalization: pull a statement out of a completion, give it a name, and
derive the variants the filters need (hypotheses -> False, the negation)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lean_env.text import Decl, code_tokens, declarations, find_at_depth0, last_lean_block, mask


@dataclass(frozen=True)
class Signature:
    name: str
    binders: str  # "(a b : ℕ) (h : a = b)", possibly empty
    conclusion: str  # the proposition after the last top-level `:`

    def statement(self, name: str | None = None, conclusion: str | None = None) -> str:
        binders = f" {self.binders}" if self.binders else ""
        return f"theorem {name or self.name}{binders} :\n    {conclusion or self.conclusion} := by"


def _theorem(text: str) -> tuple[Decl, int] | None:
    """The first named theorem/lemma with a `:=` (as lean_env.text reads it) and the end of its name as written
    (`«»` kept, where `Decl.name` drops them)."""
    for d in declarations(text):
        if d.kind in ("theorem", "lemma") and d.name and d.sig_end is not None:
            name = next(t for t in code_tokens(text) if t.start > d.keyword)  # the token after the keyword
            return d, name.end
    return None


def extract_statement(completion: str) -> str | None:
    """The last theorem/lemma statement (through `:= by`, no proof) in a completion's last Lean block (or the
    completion itself when it has no block); None when there is none."""
    text = last_lean_block(completion) or completion
    thms = [d for d in declarations(text) if d.kind in ("theorem", "lemma") and d.sig_end is not None]
    if not thms:
        return None
    d = thms[-1]
    return "theorem" + text[d.keyword + len(d.kind) : d.sig_end].rstrip() + " by"


def parse_signature(statement: str) -> Signature | None:
    """Split `theorem NAME BINDERS : CONCLUSION := by` at the colon at bracket depth 0 before the `:=`."""
    found = _theorem(statement)
    if found is None:
        return None
    d, name_end = found
    assign = d.sig_end - 2  # sig_end is just past the signature's `:=`
    colon = find_at_depth0(mask(statement), ":", name_end, assign)
    if colon is None:
        return None
    binders = " ".join(statement[name_end:colon].split())
    conclusion = " ".join(statement[colon + 1 : assign].split())
    return Signature(statement[d.keyword + len(d.kind) : name_end].strip(), binders, conclusion) if conclusion else None


def rename(statement: str, name: str) -> str:
    """The statement with its theorem called `name` (a `lemma` becomes a `theorem`); unchanged without one."""
    found = _theorem(statement)
    if found is None:
        return statement
    d, name_end = found
    return f"{statement[: d.keyword]}theorem {name}{statement[name_end:]}"


def false_from_hypotheses(sig: Signature) -> str:
    """Same hypotheses, goal `False`: provable exactly when the hypotheses are inconsistent."""
    return sig.statement(f"{sig.name}_inconsistent", "False")


def negation(sig: Signature) -> str:
    """`¬ (∀ binders, conclusion)`: provable exactly when the statement is false."""
    body = f"∀ {sig.binders}, {sig.conclusion}" if sig.binders else sig.conclusion
    return f"theorem {sig.name}_negation : ¬ ({body}) := by"


def safe_name(raw: str) -> str:
    """A Lean identifier from an informal problem id."""
    name = re.sub(r"[^\w]", "_", raw).strip("_") or "problem"
    return name if not name[0].isdigit() else f"p_{name}"
