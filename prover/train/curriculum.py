"""The subgoal curriculum of DeepSeek-Prover-V2: the lemmas that decomposition produced in a round, proved or
not, in both of their forms, join the next round's problem pool.

Form (b) (earlier steps as hypotheses) is the lemma decomposition tried to prove, so it carries that status;
form (a) (the theorem's hypotheses only) was never attempted and may not even be true, which is why it is
worth training on. A lemma is one problem however many attempts produced it: identical statements (up to
names, the way decontamination compares them) are merged, and each gets a stable name from its text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from typing import Any

from data.decontam import normalize_statement
from data.problem import Problem

FORMS = {"statement": "with_steps", "original_statement": "original"}  # trace key -> form name


def lemma_entries(trace: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every lemma entry of a decompose trace, through lemmas that were decomposed again."""
    for node in trace.get("sketches") or []:
        for sub in node.get("subgoals") or []:
            yield sub
            deeper = (sub.get("trace") or {}).get("decompose")
            if isinstance(deeper, dict):
                yield from lemma_entries(deeper)


def subgoal_problems(attempts: Iterable[Any], parents: dict[str, Problem], seen: set[str] | None = None
                     ) -> list[Problem]:
    """The lemmas (both forms) of these attempts' decomposition traces as problems, minus those whose normalized
    statement is in `seen` (earlier rounds, the base pool); `seen` is updated."""
    seen = set() if seen is None else seen
    out: list[Problem] = []
    for att in attempts:
        parent = parents.get(att.problem)
        for entry in lemma_entries(att.trace or {}):
            for key, form in FORMS.items():
                statement = entry.get(key)
                if not statement:
                    continue
                norm = normalize_statement(statement)
                if norm in seen:
                    continue
                seen.add(norm)
                name = f"{att.problem}_lemma_{hashlib.sha256(norm.encode()).hexdigest()[:10]}"
                status = entry.get("status", "open") if form == "with_steps" else "unattempted"
                out.append(Problem(
                    name=name, formal_statement=_renamed(statement, entry.get("name", ""), name),
                    header=parent.header if parent else "", split=parent.split if parent else "", source="subgoal",
                    extra={"parent": att.problem, "form": form, "lemma_status": status}))
    return out


def _renamed(statement: str, old: str, new: str) -> str:
    """The lemma statement with its theorem called `new` (names must be unique across the pool)."""
    if old and re.match(rf"\s*theorem\s+{re.escape(old)}(?![\w'.])", statement):
        return re.sub(rf"theorem\s+{re.escape(old)}", f"theorem {new}", statement, count=1)
    return statement
