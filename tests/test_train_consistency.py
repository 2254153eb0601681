"""GRPO's consistency reward (DeepSeek-Prover-V2): a CoT completion whose final proof drops a `have` lemma its own
sketch planned scores lower, during the first N steps only. Verdicts come from the FAKE Lean (tests/fake_lean.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_train_grpo import TACTICS, write_toy_problems
from test_train_tiny import tiny_llama, word_tokenizer

from data.config import LeanSettings, load_config
from prover.train.consistency import consistency_penalty, missing_lemmas, plan_lemmas

FAKE_LEAN = Path(__file__).with_name("fake_lean.py")
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


@pytest.fixture(scope="module")
def verifier():
    from lean_env import make_verifier

    v = make_verifier(LeanSettings(repl_path=FAKE_LEAN, workers=1, timeout_s=30))
    yield v
    v.close()


def trainer_scores(tmp_path: Path, verifier, steps: int, step: int) -> list[float]:
    """The real GRPOTrainer's `score` on a hand-written rollout: two verified proofs of one problem, with and
    without the planned lemmas."""
    from prover.prompts.extract import extract_proof
    from prover.train.distributed import init_distributed
    from prover.train.grpo import GRPOConfig, GRPOTrainer, Rollout

    tmp_path.mkdir()
    rows = write_toy_problems(tmp_path / "toy.jsonl", n=1)
    cfg = GRPOConfig(model=str(tiny_llama(tmp_path / "m", word_tokenizer(TACTICS), hidden=16, layers=1)),
                     problems=str(rows), out=str(tmp_path / "grpo"), device="cpu", prompt_kind="cot",
                     consistency_penalty=0.5, consistency_steps=steps)
    trainer = GRPOTrainer(cfg, load_config(environ={}), init_distributed("cpu"), verifier)
    texts = [PLAN + WITH_LEMMAS, PLAN + WITHOUT]
    proofs = [extract_proof(t, STATEMENT, False, "toy_0") for t in texts]
    rollout = Rollout(step, trainer.problems, [0, 0], [[1], [1]], [[1], [1]], texts, proofs)
    rewards, proved, _ = trainer.score(rollout)
    assert proved == [True, True]  # the fake Lean accepts both: only the consistency term differs
    return rewards


def test_the_trainer_penalizes_the_proof_without_its_lemmas_early_only(tmp_path, verifier):
    assert trainer_scores(tmp_path / "early", verifier, steps=10, step=0) == [1.0, 0.5]
    assert trainer_scores(tmp_path / "late", verifier, steps=10, step=10) == [1.0, 1.0]
