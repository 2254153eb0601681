"""The subgoal curriculum: decomposition lemmas (both forms, proved or not) become problems, merged across
attempts by normalized statement, with stable unique names and where they came from."""

from __future__ import annotations

from data.problem import Problem
from data.store import Attempt
from prover.train.curriculum import lemma_entries, subgoal_problems

PARENT = Problem("p", "theorem p (a : ℕ) (h₀ : a = 2) : a + 1 = 3 := by", header="import Mathlib\n", split="train")


def lemma(name: str, statement: str, original: str, status: str, deeper: dict | None = None) -> dict:
    return {"name": name, "statement": f"theorem {name} {statement} := by",
            "original_statement": f"theorem {name} {original} := by", "status": status,
            "trace": {"decompose": deeper} if deeper else {}}


def decompose_attempt(index: int, subgoals: list[dict]) -> Attempt:
    return Attempt(problem="p", index=index, text="", status="failed", verdict={}, strategy="decompose",
                   trace={"sketches": [{"status": "lemma_failed", "subgoals": subgoals}]})


def test_both_forms_of_every_lemma_join_once_with_their_status():
    inner = {"sketches": [{"subgoals": [lemma("p_sub2_sub1", "(a : ℕ) (h1 : a = 2) : 1 = 1", "(a : ℕ) : 1 = 1", "proved")]}]}
    first = decompose_attempt(0, [
        lemma("p_sub1", "(a : ℕ) (h₀ : a = 2) : a = 2", "(a : ℕ) (h₀ : a = 2) : a = 2", "proved"),
        lemma("p_sub2", "(a : ℕ) (h₀ : a = 2) (h1 : a = 2) : a + 1 = 3", "(a : ℕ) (h₀ : a = 2) : a + 1 = 3",
              "failed", deeper=inner)])
    again = decompose_attempt(1, [lemma("p_sub1", "(b : ℕ) (h : b = 2) : b = 2", "(b : ℕ) (h : b = 2) : b = 2",
                                        "proved")])  # the same lemma from another attempt, names differ
    assert [e["name"] for e in lemma_entries(first.trace)] == ["p_sub1", "p_sub2", "p_sub2_sub1"]
    seen = {"theorem p (a : ℕ) (h₀ : a = 2) : a + 1 = 3"}  # the base pool is not added again
    from data.decontam import normalize_statement

    seen = {normalize_statement(s) for s in seen}
    out = subgoal_problems([first, again], {"p": PARENT}, seen)
    # p_sub1's two forms coincide; p_sub2's original form is the parent theorem itself (already in the pool)
    assert [(p.extra["form"], p.extra["lemma_status"]) for p in out] == [
        ("with_steps", "proved"), ("with_steps", "failed"), ("with_steps", "proved"), ("original", "unattempted")]
    assert len({p.name for p in out}) == 4 and all(p.name.startswith("p_lemma_") for p in out)
    assert all(p.formal_statement.startswith(f"theorem {p.name} ") for p in out)
    assert {p.header for p in out} == {"import Mathlib\n"} and {p.extra["parent"] for p in out} == {"p"}
    assert subgoal_problems([first], {"p": PARENT}, seen) == []  # a later round adds nothing it already has
