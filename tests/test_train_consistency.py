"""GRPO's consistency reward (DeepSeek-Prover-V2): a CoT completion whose final proof drops a `have` lemma its own
sketch planned scores lower, during the first N steps only. Verdicts come from the FAKE Lean (tests/fakes/fake_lean.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FAKE_LEAN
from test_train_grpo import TACTICS, write_toy_problems
from test_train_tiny import tiny_llama, word_tokenizer

from data.config import LeanSettings, load_config
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


@pytest.fixture(scope="module")
def verifier():
    from lean_env import make_verifier

    v = make_verifier(LeanSettings(repl_path=FAKE_LEAN, workers=1, timeout_s=30))
    yield v
    v.close()


def consistency_scores(tmp_path: Path, problems: Path, texts: list[str], verifier, steps: int, step: int
                       ) -> tuple[list[float], list[bool]]:
    """The real GRPOTrainer's `score` on a hand-written rollout of CoT completions for the first problem of
    `problems`, with the consistency penalty 0.5 for the first `steps` steps."""
    from prover.prompts.extract import extract_proof
    from prover.train.distributed import init_distributed
    from prover.train.grpo import GRPOConfig, GRPOTrainer, Rollout

    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = GRPOConfig(model=str(tiny_llama(tmp_path / "m", word_tokenizer(TACTICS), hidden=16, layers=1)),
                     problems=str(problems), out=str(tmp_path / "grpo"), device="cpu", prompt_kind="cot",
                     consistency_penalty=0.5, consistency_steps=steps)
    trainer = GRPOTrainer(cfg, load_config(environ={}), init_distributed("cpu"), verifier)
    problem = trainer.problems[0]
    name = problem.formal_statement.split()[1]
    proofs = [extract_proof(t, problem.formal_statement, False, name) for t in texts]
    rollout = Rollout(step, trainer.problems[:1], [0] * len(texts), [[1]] * len(texts), [[1]] * len(texts), texts,
                      proofs)
    rewards, outcomes = trainer.score(rollout)
    return rewards, [o.proved for o in outcomes]


def test_the_trainer_penalizes_the_proof_without_its_lemmas_early_only(tmp_path, verifier):
    problems = write_toy_problems(tmp_path / "toy.jsonl", n=1)
    texts = [PLAN + WITH_LEMMAS, PLAN + WITHOUT]
    early = consistency_scores(tmp_path / "early", problems, texts, verifier, steps=10, step=0)
    assert early == ([1.0, 0.5], [True, True])  # both verified: only the consistency term differs
    late = consistency_scores(tmp_path / "late", problems, texts, verifier, steps=10, step=10)
    assert late == ([1.0, 1.0], [True, True])
