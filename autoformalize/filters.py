"""Lean-based filters for autoformalized statements, in the manner of DeepSeek-Prover-V1.

Each check is a proof attempt that the sound Verifier judges, so a filter can only drop a statement on
Lean's word:
- compiles: the statement with a `sorry` proof elaborates under the header (no error; Lean reports the sorry);
- inconsistent: the same hypotheses prove `False` with a quick tactic;
- false: the negation `¬ (∀ binders, conclusion)` is proved with a quick tactic;
- trivial: the statement itself is proved with a quick tactic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from autoformalize.statement import false_from_hypotheses, negation, parse_signature
from data.problem import Problem
from lean_env.checker import Checker

QUICK_TACTICS = ("norm_num", "simp", "decide", "omega", "linarith", "nlinarith", "simp_all", "tauto")
NEGATION_TACTICS = ("decide", "norm_num", "simp", "push_neg; norm_num")


@dataclass
class FilterOutcome:
    passed: list[str] = field(default_factory=list)  # names of the filters passed, in order
    dropped: str | None = None  # reason, when dropped
    detail: str = ""


def _with_proof(statement: str, tactic: str) -> str:
    return statement.rstrip() + "\n  " + tactic + "\n"


def compile_check(problems: Sequence[Problem], verifier: Checker) -> list[FilterOutcome]:
    verdicts = verifier.verify_many([(p, _with_proof(p.formal_statement, "sorry")) for p in problems])
    out = []
    for v in verdicts:
        errors = [m.data.strip() for m in v.messages if m.severity == "error"]
        if v.status in ("timeout", "crashed"):
            out.append(FilterOutcome(dropped="lean_" + str(v.status), detail="; ".join(v.reasons)[:300]))
        elif errors:
            out.append(FilterOutcome(dropped="does_not_compile", detail=errors[0].splitlines()[0][:300]))
        elif not v.sorries:  # Lean must have seen the `sorry` goal, else the statement was not elaborated
            out.append(FilterOutcome(dropped="does_not_compile", detail="; ".join(v.reasons)[:300] or "no goal"))
        else:
            out.append(FilterOutcome(passed=["compiles"]))
    return out


STAGES = (  # (reason to drop, name of the filter passed, statement variant)
    ("inconsistent_hypotheses", "consistent", false_from_hypotheses),
    ("negation_provable", "not_refuted", negation),
    ("trivial", "nontrivial", None),  # None: the statement itself
)


def consistency_checks(
    problems: Sequence[Problem],
    verifier: Checker,
    tactics: Sequence[str] = QUICK_TACTICS,
    negation_tactics: Sequence[str] = NEGATION_TACTICS,
) -> list[FilterOutcome]:
    """Drop statements with inconsistent hypotheses, provably false statements and trivial ones. Each stage is
    one batch (statements still standing x quick tactics) through the Verifier."""
    out = [FilterOutcome() for _ in problems]
    sigs = [parse_signature(p.formal_statement) for p in problems]
    for o, sig in zip(out, sigs, strict=True):
        if sig is None:
            o.dropped, o.detail = "unparsable", "no `theorem name binders : goal := by`"
    for reason, passed_name, variant in STAGES:
        tacs = negation_tactics if reason == "negation_provable" else tactics
        jobs, owners = [], []
        for i, (p, sig) in enumerate(zip(problems, sigs, strict=True)):
            if out[i].dropped:
                continue
            statement = variant(sig) if variant else p.formal_statement
            checked = replace(p, formal_statement=statement)
            for tac in tacs:
                jobs.append((checked, _with_proof(statement, tac)))
                owners.append((i, tac))
        verdicts = verifier.verify_many(jobs) if jobs else []
        for (i, tac), verdict in zip(owners, verdicts, strict=True):
            if verdict.proved and not out[i].dropped:
                out[i].dropped, out[i].detail = reason, f"closed by `{tac}`"
        for o in out:
            if not o.dropped:
                o.passed.append(passed_name)
    return out
