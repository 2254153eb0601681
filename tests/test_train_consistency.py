"""GRPO's consistency reward (DeepSeek-Prover-V2): a CoT completion whose final proof drops a `have` lemma its own
sketch planned scores lower, during the first N steps only. Verdicts come from the FAKE Lean (tests/fakes/fake_lean.py)."""

from __future__ import annotations

from helpers.train import consistency_scores, write_toy_problems

from prover.train.consistency import consistency_penalty, missing_lemmas, plan_lemmas

STATEMENT = "theorem toy_0 (a : ℕ) (h₀ : a = 0) : a = 0 := by"
PLAN = f"""The plan: first `a = 0` from the hypothesis, then rewrite.
```lean4
{STATEMENT}
  have h1 : a = 0 := by sorry
  have h2 : 2 + 2 = 4 := by sorry
  exact h1
```
Now the complete proof.
"""
WITH_LEMMAS = f"```lean4\n{STATEMENT}\n  have h1 :  a = 0 := by exact h₀\n  have four : 2 + 2 = 4 := by decide\n  exact h1\n```"
WITHOUT = f"```lean4\n{STATEMENT}\n  exact h₀\n```"


def test_plan_lemmas_and_what_the_final_proof_leaves_out():
    assert plan_lemmas(PLAN + WITH_LEMMAS) == ["a = 0", "2 + 2 = 4"]
    assert missing_lemmas(PLAN + WITH_LEMMAS, WITH_LEMMAS.strip("`").removeprefix("lean4\n")) == []
    assert missing_lemmas(PLAN + WITHOUT, f"{STATEMENT}\n  exact h₀\n") == ["a = 0", "2 + 2 = 4"]
    assert consistency_penalty(WITHOUT, f"{STATEMENT}\n  exact h₀\n", 0.5) == 0.0  # no plan: nothing to keep


def test_the_trainer_penalizes_the_proof_without_its_lemmas_early_only(tmp_path, fake_lean_verifier):
    problems = write_toy_problems(tmp_path / "toy.jsonl", n=1)
    texts = [PLAN + WITH_LEMMAS, PLAN + WITHOUT]
    early = consistency_scores(tmp_path / "early", problems, texts, fake_lean_verifier, steps=10, step=0)
    assert early == ([1.0, 0.5], [True, True])  # both verified: only the consistency term differs
    late = consistency_scores(tmp_path / "late", problems, texts, fake_lean_verifier, steps=10, step=10)
    assert late == ([1.0, 1.0], [True, True])
