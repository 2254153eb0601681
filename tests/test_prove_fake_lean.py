"""tests/fakes/fake_lean.py (a FAKE Lean REPL, not Lean): the REPL protocol, honest checking of its fragment, and the
Verifier's exact commands answered (so a verdict from it means what it says)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fakes import FAKE_LEAN, fake_lean_settings
from helpers.prove import HEADER

from data.problem import Problem
from lean_env import make_verifier
from lean_env.repl import Repl


@pytest.fixture(scope="module")
def repl():
    r = Repl([str(FAKE_LEAN)], timeout_s=20, isolate_network=False)
    yield r
    r.close()


@pytest.fixture(scope="module")
def verifier():
    v = make_verifier(fake_lean_settings(workers=1))
    yield v
    v.close()


def test_raw_protocol_blank_line_framing_and_pretty_json():
    reqs = '{"cmd": "theorem t : 2 + 2 = 4 := by decide"}\n\n{"cmd": "#print axioms t", "env": 0}\n\n'
    out = subprocess.run([sys.executable, str(FAKE_LEAN)], input=reqs, capture_output=True, text=True, timeout=30)
    frames = [json.loads(f) for f in out.stdout.split("\n\n") if f.strip()]
    assert frames[0] == {"env": 0}
    assert frames[1]["messages"][0]["data"] == "'t' does not depend on any axioms"
    assert "\n" in out.stdout.split("\n\n")[1]  # multi-line JSON, as the real REPL prints it


def test_sorries_goals_proof_states_and_tactic_mode(repl):
    header = repl.run_cmd(HEADER)
    res = repl.run_cmd("theorem s (x : ℕ) (h₀ : x = 3) : x + 2 = 5 ∧ 1 < 2 := by\n  have h1 : x * 2 = 6 := by sorry\n"
                       "  sorry", env=header.env)
    assert [s.goal for s in res.sorries] == ["x : ℕ\nh₀ : x = 3\n⊢ x * 2 = 6",
                                             "x : ℕ\nh₀ : x = 3\nh1 : x * 2 = 6\n⊢ x + 2 = 5 ∧ 1 < 2"]
    assert (res.sorries[0].pos.line, res.sorries[0].pos.column) == (2, 28)
    assert any("declaration uses `sorry`" in m.data for m in res.messages)
    state = res.sorries[1].proof_state
    split = repl.run_tactic("constructor", state)
    assert split.goals[0].startswith("case left\n") and len(split.goals) == 2
    bad = repl.run_tactic("decide", split.proof_state)
    assert bad.error and "has free variables" in bad.error
    step = repl.run_tactic("· omega", split.proof_state)
    assert step.error and "omega could not prove" in step.error  # x + 2 = 5 needs h₀: not in the fragment
    closed = repl.run_tactic("exact h1", res.sorries[0].proof_state)
    assert closed.error  # h1 is not in scope of its own goal
    ok = repl.run_tactic("constructor\n· subst_vars\n· decide", res.sorries[1].proof_state)
    assert ok.error and "unsupported tactic 'subst_vars'" in ok.error
    done = repl.run_tactic("constructor <;> norm_num", repl.run_cmd(
        "theorem w : 2 + 3 = 5 ∧ 1 < 2 := by sorry", env=header.env).sorries[0].proof_state)
    assert done.proof_status == "Completed" and done.goals == []
    assert repl.run_tactic("rfl", 10_000).error == "Unknown proof state."
    assert repl.run_cmd("theorem z : 1 = 1 := by rfl", env=999).error == "Unknown environment."


@pytest.mark.parametrize("claim, ok", [
    ("2 + 2 = 4", True), ("2 + 2 = 5", False), ("10 - 20 = 0", True), ("7 / 2 = 3", True), ("2 ^ 10 = 1024", True),
    ("3 < 3", False), ("¬ (1 = 2)", True), ("1 = 1 ∨ 1 = 2", True), ("5 % 0 = 5", True), ("7 / 0 = 1", False),
])
def test_closed_arithmetic_is_evaluated_honestly(repl, claim, ok):
    res = repl.run_cmd(f"theorem c : {claim} := by decide")
    assert res.ok is ok


@pytest.mark.parametrize("claim, ok", [
    ("a + b = b + a", True), ("(a + b) ^ 2 = a ^ 2 + 2 * a * b + b ^ 2", True), ("a * b ≤ a * b + a", True),
    ("a ≤ a * b", False), ("a - b + b = a", False), ("a + 1 > a", True),
])
def test_polynomial_identities_with_variables(repl, claim, ok):
    header = repl.run_cmd(HEADER)
    assert repl.run_cmd(f"theorem p (a b : ℕ) : {claim} := by nlinarith", env=header.env).ok is ok


def test_mathlib_tactics_need_mathlib(repl):
    res = repl.run_cmd("theorem m : 1 + 1 = 2 := by norm_num")
    assert not res.ok and "needs `import Mathlib`" in res.errors[0].data
    assert repl.run_cmd("theorem m : 1 + 1 = 2 := by omega").ok


def test_error_recovery_per_nested_by(repl):
    header = repl.run_cmd(HEADER)
    res = repl.run_cmd("theorem r : 3 = 3 := by\n  have h1 : 1 = 2 := by norm_num\n  have h2 : 2 = 3 := by\n"
                       "    sorry\n  rfl", env=header.env)
    assert [m.pos.line for m in res.errors] == [2]
    assert len(res.sorries) == 1  # the second have was still elaborated


def verify(verifier, statement, proof_src):
    return verifier.verify(Problem("p", statement, header=HEADER), proof_src)


STATEMENT = "theorem p (h₀ : 2 + 2 = 4) : 2 + 3 = 5 := by"


def test_verifier_accepts_an_honest_proof(verifier):
    v = verify(verifier, STATEMENT, STATEMENT + "\n  norm_num")
    assert v.proved, v.reasons
    assert set(v.axioms) <= {"propext", "Classical.choice", "Quot.sound"}


@pytest.mark.parametrize("proof, why", [
    ("\n  sorry", "sorry"),
    ("\n  native_decide", "native_decide"),
    ("\n  norm_num\n  rfl", "error"),
    (" decide\n\naxiom cheat : 2 + 3 = 5", "axiom"),
])
def test_verifier_rejects_loopholes_and_errors(verifier, proof, why):
    v = verify(verifier, STATEMENT, STATEMENT + proof)
    assert not v.proved
    assert any(why in r for r in v.reasons), v.reasons


def test_verifier_rejects_a_changed_statement_and_a_wrong_claim(verifier):
    assert not verify(verifier, STATEMENT, "theorem p (h₀ : 2 + 2 = 4) : 2 + 3 = 5 ∨ False := by\n  norm_num").proved
    wrong = "theorem q : 2 + 3 = 6 := by"
    v = verifier.verify(Problem("q", wrong, header=HEADER), wrong + "\n  norm_num")
    assert v.status.value == "failed" and "norm_num failed" in v.errors[0].data
