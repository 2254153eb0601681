"""Lean statement surgery for autoformalization: pull a statement out of a completion, give it a name, and
derive the variants the filters need (hypotheses -> False, the negation)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lean_env.text import declarations, find_at_depth0, last_lean_block, mask


@dataclass(frozen=True)
class Signature:
    name: str
    binders: str  # "(a b : ℕ) (h : a = b)", possibly empty
    conclusion: str  # the proposition after the last top-level `:`

    def statement(self, name: str | None = None, conclusion: str | None = None) -> str:
        binders = f" {self.binders}" if self.binders else ""
        return f"theorem {name or self.name}{binders} :\n    {conclusion or self.conclusion} := by"


def extract_statement(completion: str) -> str | None:
    """The last theorem/lemma statement (through `:= by`, no proof) in a completion's last Lean block (or the
    completion itself when it has no block); None when there is none."""
    text = last_lean_block(completion) or completion
    thms = [d for d in declarations(text) if d.kind in ("theorem", "lemma") and d.sig_end is not None]
    if not thms:
        return None
    d = thms[-1]
    sig = text[d.keyword : d.sig_end].rstrip()
    return re.sub(r"^lemma\b", "theorem", sig) + " by"


def parse_signature(statement: str) -> Signature | None:
    """Split `theorem NAME BINDERS : CONCLUSION := by` at its top-level colon."""
    masked = mask(statement)
    m = re.search(r"\b(?:theorem|lemma)\s+([^\s:({\[⦃]+)", masked)
    if not m:
        return None
    end = masked.rfind(":=")
    if end < 0:
        return None
    colon = find_at_depth0(masked, ":", m.end(), end)
    if colon is not None and masked.startswith(":=", colon):
        colon = None
    if colon is None:
        return None
    binders = " ".join(statement[m.end() : colon].split())
    conclusion = " ".join(statement[colon + 1 : end].split())
    return Signature(m.group(1), binders, conclusion) if conclusion else None


def rename(statement: str, name: str) -> str:
    """The statement with its theorem called `name`."""
    return re.sub(r"\b(theorem|lemma)\s+[^\s:({\[⦃]+", lambda m: f"theorem {name}", statement, count=1)


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
