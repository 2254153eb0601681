"""The same checks against a real Lean toolchain + REPL + Mathlib, when one is configured (`-m lean`).

Skipped here (no Lean can be installed on this machine); run where `subgoal lean doctor` is green. The lexical
scan is switched off in the soundness cases so that each of Lean's own layers (messages, `#print axioms`, the
elaborated statement) is shown to catch the loophole by itself.
"""

from __future__ import annotations

import pytest

from lean_env import Status, Verifier, make_pool
from lean_env.toolchain import locate

pytestmark = pytest.mark.lean

HEADER = "import Mathlib\nimport Aesop\n\nset_option maxHeartbeats 400000\n\nopen BigOperators Real Nat Topology Rat\n\n"


class P:
    def __init__(self, name: str, statement: str, header: str = HEADER):
        self.name, self.formal_statement, self.header, self.extra = name, statement, header, {}


MINI = P("t_sq", "theorem t_sq (x : ℝ) (h₀ : x = 2) : x ^ 2 = 4 := by\n")


@pytest.fixture(scope="module")
def settings():
    from data.config import load_config

    return load_config().lean


@pytest.fixture(scope="module")
def verifier(settings):
    tc = locate(settings)
    v = Verifier(make_pool(settings, workers=1), lean_version=tc.lean_version, lexical=False)
    yield v
    v.close()


def test_honest_proof_is_proved(verifier):
    v = verifier.verify(MINI, "theorem t_sq (x : ℝ) (h₀ : x = 2) : x ^ 2 = 4 := by\n  subst h₀\n  norm_num\n")
    assert v.status is Status.PROVED, v.reasons
    assert set(v.axioms) <= {"propext", "Classical.choice", "Quot.sound"}


@pytest.mark.parametrize("proof,reason", [
    ("theorem t_sq (x : ℝ) (h₀ : x = 2) : x ^ 2 = 4 := by\n  sorry\n", "sorry"),
    ("axiom cheat : ∀ p : Prop, p\ntheorem t_sq (x : ℝ) (h₀ : x = 2) : x ^ 2 = 4 := cheat _\n", "cheat"),
    ("theorem t_sq (x : ℝ) (h₀ : x = 2) : x ^ 2 = 4 := by\n  have : (2:ℕ) + 2 = 4 := by native_decide\n"
     "  subst h₀; norm_num\n", "ofReduceBool"),
    ("namespace C\nnoncomputable def HPow.hPow (_ : ℝ) (_ : ℕ) : ℝ := 4\nend C\n"
     "local instance : HPow ℝ ℕ ℝ := ⟨fun _ _ => 4⟩\ntheorem t_sq (x : ℝ) (h₀ : x = 2) : x ^ 2 = 4 := rfl\n",
     "elaborated type differs"),
    ("variable (hF : False)\ninclude hF\ntheorem t_sq (x : ℝ) (h₀ : x = 2) : x ^ 2 = 4 := hF.elim\n",
     "elaborated type differs"),
    ("namespace N\ntheorem t_sq (x : ℝ) (h₀ : x = 2) : x ^ 2 = 4 := by\n  subst h₀; norm_num\nend N\n", "top-level"),
])
def test_lean_layers_catch_loopholes(verifier, proof, reason):
    v = verifier.verify(MINI, proof)
    assert v.status in (Status.UNSOUND, Status.FAILED) and any(reason in r for r in v.reasons), v.reasons


@pytest.mark.parametrize("proof", [
    "theorem t_sq (y : Real) (h : y = 2) : y ^ 2 = 4 := by\n  subst h\n  norm_num\n",  # names and notation differ
    "open Real in theorem t_sq (x : ℝ) (h₀ : x = 2) : x ^ 2 = 4 := by\n  subst h₀; norm_num\n",
    "/-- doc -/ theorem t_sq (x : ℝ) (h₀ : x = 2) : x ^ 2 = 4 := by\n  subst h₀; norm_num\n",
])
def test_honest_variants_are_proved(verifier, proof):
    """Real Lean: `#print axioms _root_.NAME` / `#check @_root_.NAME` answer as the verifier parses them, and a
    statement that differs only as text elaborates to the same type up to bound-variable names."""
    v = verifier.verify(MINI, proof)
    assert v.status is Status.PROVED, v.reasons


def test_compile_error_is_failed(verifier):
    v = verifier.verify(MINI, "theorem t_sq (x : ℝ) (h₀ : x = 2) : x ^ 2 = 4 := by\n  exact rfl\n")
    assert v.status is Status.FAILED and v.errors


def test_real_repl_readme_session(settings):
    from lean_env.repl import Repl

    tc = locate(settings)
    with Repl(tc.repl_command(), tc.cwd, timeout_s=300) as repl:
        r = repl.run_cmd("def f (x : Unit) : Nat := by sorry")
        assert r.env == 0 and r.sorries[0].goal == "x : Unit\n⊢ Nat" and r.sorries[0].proof_state == 0
        assert repl.run_tactic("apply Int.natAbs", 0).goals == ["x : Unit\n⊢ Int"]
        assert repl.run_tactic("exact -37", 1).completed
        assert repl.run_cmd("def g := 1", 99).error == "Unknown environment."


def test_recorded_answer_keeps_its_meaning(verifier):
    """Answer given: an instance the proof declares before its copy of the answer abbrev would make `6` mean 0 there;
    the verifier puts the recorded answer first, so the theorem is about 6 (and `6 = 0` does not compile)."""
    from lean_env.text import fill_answers

    problem = P("p_ans", "abbrev p_ans_sol : ℕ := sorry\ntheorem p_ans : p_ans_sol = 0 := by\n")
    problem.extra = {"answers": {"p_ans_sol": {"answer": "6"}}}
    proof = "instance : OfNat ℕ 6 := ⟨0⟩\nabbrev p_ans_sol : ℕ := 6\ntheorem p_ans : p_ans_sol = 0 := rfl\n"
    v = verifier.verify(fill_answers(problem), proof)
    assert v.status is Status.FAILED, v.reasons


def test_code_after_an_import_is_not_the_header(verifier):
    """A header-less problem takes the proof's import lines as its header; what follows a module name on its line
    is a command Lean runs (here an instance that made the problem's own statement mean `2 + 2 = 4` in the reference
    environment too). Only whole import lines are the header now: the rest is the body, where `import` is an error."""
    problem = P("t_hdr", "theorem t_hdr : (2 : ℕ) + 2 = 5 := by\n", header="")
    proof = "import Mathlib instance : OfNat ℕ 5 := ⟨4⟩\ntheorem t_hdr : (2 : ℕ) + 2 = 5 := rfl\n"
    v = verifier.verify(problem, proof)
    assert v.status is not Status.PROVED, v.reasons


def test_long_statement_is_printed_whole(verifier):
    """`pp.maxSteps` (5000 by default) would print this statement's type in part (`⋯`), which the verifier never
    takes as the problem's: the check raises it, so an honest proof of a long statement is still proved."""
    n = 1500
    statement = "theorem t_long : " + " + ".join(["(1 : ℕ)"] * n) + f" = {n} := by\n"
    v = verifier.verify(P("t_long", statement), statement + "  rfl\n")
    assert v.status is Status.PROVED, v.reasons
