"""Autoformalization: each Lean filter drops what it should (judged by the FAKE Lean REPL), dedup and
decontamination work, survivors carry provenance, and every dropped candidate is reported with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import FAKE_LEAN

from autoformalize import FormalizeConfig, formalize, read_informal
from autoformalize.formalize import report_path
from autoformalize.statement import negation, parse_signature
from data.config import LeanSettings
from data.decontam import Decontaminator
from data.errors import DataError
from prover.generate.base import Completion

HEADER = "import Mathlib\nimport Aesop\n\nset_option maxHeartbeats 400000\n\nopen BigOperators Real Nat Topology Rat\n\n"


class ScriptedBackend:
    """TEST DOUBLE for a generation backend: answers each prompt with the completions scripted for the
    informal problem text it contains (no model)."""

    model_id = "scripted"

    def __init__(self, script: dict[str, list[str]]):
        self.script = script

    def generate(self, prompts, params, n=1):
        out = []
        for p in prompts:
            texts = next(v for k, v in self.script.items() if k in p)
            out.append([Completion(t, 1, 1) for t in (texts * n)[:n]])
        return out

    def close(self):
        pass


def lean_block(statement: str) -> str:
    return f"Here it is.\n```lean4\n{statement} := by sorry\n```"


SCRIPT = {
    "b is three": [lean_block("theorem x (a b : ℕ) (h₀ : a + b = 5) (h₁ : a = 2) : b = 3"),
                   lean_block("theorem y (a b : ℕ) (h₀ : a + b = 5) (h₁ : a = 2) : b = 3")],  # same, renamed
    "real numbers": [lean_block("theorem x (r : ℝ) (h : r = 2) : r + r = 4")],  # outside the fake fragment
    "silly premise": [lean_block("theorem x (a : ℕ) (h : 1 = 2) : a = 5")],
    "false claim": [lean_block("theorem x : 2 + 2 = 5")],
    "easy claim": [lean_block("theorem x (n : ℕ) : n + 0 = n")],
    "no answer": ["I cannot formalize this."],
    "copy of b": [lean_block("theorem z (p q : ℕ) (hp : p + q = 5) (hq : p = 2) : q = 3")],
    "benchmark": [lean_block("theorem w (n : ℕ) (h₀ : 123 * n + 17 = 39500) : n = 321")],  # = mathd_numbertheory_136
}


@pytest.fixture(scope="module")
def verifier():
    from lean_env import make_verifier

    v = make_verifier(LeanSettings(repl_path=FAKE_LEAN, workers=1, timeout_s=30))
    yield v
    v.close()


def write_informal(path: Path) -> Path:
    rows = [{"id": "p1", "informal_statement": "a plus b is five and a is two; show b is three"},
            {"id": "p2", "problem": "real numbers: two plus two"},
            {"id": "p3", "informal_statement": "a silly premise"},
            {"id": "p4", "informal_statement": "a false claim"},
            {"id": "p5", "informal_statement": "an easy claim"},
            {"id": "p6", "informal_statement": "no answer here"},
            {"id": "p7", "informal_statement": "a copy of b"},
            {"id": "p8", "informal_statement": "from a benchmark"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_filters_drop_each_kind_of_bad_statement(tmp_path, verifier, shared_dir):
    informal = read_informal(write_informal(tmp_path / "in.jsonl"), header=HEADER)
    decon = Decontaminator.from_data_dir(shared_dir / "benchmarks")
    kept, report = formalize(informal, ScriptedBackend(SCRIPT), verifier, FormalizeConfig(samples=2), None, decon)

    assert [p.name for p in kept] == ["p1"]
    p = kept[0]
    assert p.formal_statement.startswith("theorem p1 (a b : ℕ)") and p.formal_statement.endswith(":= by")
    assert p.extra["informal_id"] == "p1" and p.extra["model"] == "scripted"
    assert p.extra["filters_passed"] == ["compiles", "consistent", "not_refuted", "nontrivial", "unique",
                                         "decontaminated"]
    reasons = {(i["id"], i["reason"]) for i in report.items}
    assert ("p1", "duplicate_candidate") in reasons  # y restates x up to names
    assert ("p2", "does_not_compile") in reasons
    assert ("p3", "inconsistent_hypotheses") in reasons
    assert ("p4", "negation_provable") in reasons
    assert ("p5", "trivial") in reasons
    assert ("p6", "no_statement") in reasons
    assert ("p7", "duplicate") in reasons  # same statement as p1 up to binder names
    assert ("p8", "contaminated") in reasons
    assert report.kept == 1 and report.problems_without_statement == 7
    assert report.candidates == 16 and sum(report.dropped.values()) == 15


def test_faithfulness_grading_drops_low_scores(tmp_path, verifier):
    informal = read_informal(write_informal(tmp_path / "in.jsonl"), header=HEADER)[:1]
    # the grading prompt quotes the informal text too: its key must come first
    script = {"Does the formal statement": ["Mostly, but a hypothesis is missing.\nScore: 2"], **SCRIPT}
    kept, report = formalize(informal, ScriptedBackend(script), verifier,
                             FormalizeConfig(samples=1, faithfulness=True, min_faithfulness=0.5))
    assert kept == [] and report.dropped == {"unfaithful": 1}
    script["Does the formal statement"] = ["Exactly the problem.\nScore: 5"]
    kept, _ = formalize(informal, ScriptedBackend(script), verifier,
                        FormalizeConfig(samples=1, faithfulness=True, min_faithfulness=0.5))
    assert kept[0].extra["scores"] == {"faithfulness": 1.0} and "faithful" in kept[0].extra["filters_passed"]


def test_negation_and_signature_parsing():
    sig = parse_signature("theorem t {α : Type} [Fintype α] (f : α → ℕ) (h : ∀ x, f x = 1 := by") or parse_signature(
        "theorem t (a : ℕ) (h : a = (2 : ℕ)) :\n  a + 1 = 3 := by")
    assert sig.binders == "(a : ℕ) (h : a = (2 : ℕ))" and sig.conclusion == "a + 1 = 3"
    assert negation(sig) == "theorem t_negation : ¬ (∀ (a : ℕ) (h : a = (2 : ℕ)), a + 1 = 3) := by"


def test_bad_informal_input_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n')
    with pytest.raises(DataError, match="no problem text"):
        read_informal(bad)
    bad.write_text("{not json\n")
    with pytest.raises(DataError, match=r":1: bad JSON"):
        read_informal(bad)
    assert report_path(tmp_path / "formal.jsonl").name == "formal.report.json"
