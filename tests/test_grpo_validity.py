"""GRPO judges what eval judges and follows the policy that sampled: one candidate extraction for search and the
reward, log-probabilities at the sampling temperature and top-p, and the two loss aggregations."""

from __future__ import annotations

import pytest
import torch
from helpers.tiny_models import tiny_llama, word_tokenizer
from helpers.train import TACTICS, write_toy_problems

from data.config import load_config
from prover.errors import ProverError
from prover.generate.base import Completion
from prover.prompts import load_prompts
from prover.prompts.extract import candidate_proof, extract_proof
from prover.search import Budget, Search
from prover.train.grpo import GRPOConfig, grpo_token_loss, sampled_logprobs, train_grpo

STATEMENT = "theorem toy_0 (a : ℕ) (h₀ : a = 0) : a = 0 := by"
# A CoT answer: the proof of the theorem asked for, then a helper lemma in a block of its own.
COMPLETION = (f"The hypothesis is the goal.\n```lean4\n{STATEMENT}\n  exact h₀\n```\nA helper for later:\n"
              "```lean4\nlemma helper : 1 = 1 := rfl\n```\n")


def test_sampled_logprobs_are_those_of_the_sampling_distribution():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 6, generator=g)
    tokens = torch.tensor([[0, 1, 2], [3, 4, 5]])
    torch.testing.assert_close(sampled_logprobs(logits, tokens, 1.0, 1.0),
                               torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0])
    t, top_p = 0.7, 0.8
    got = sampled_logprobs(logits, tokens, t, top_p)
    for b in range(2):
        for i in range(3):
            p = torch.softmax(logits[b, i] / t, -1)
            order = p.argsort(descending=True).tolist()
            nucleus, mass = [], 0.0
            for k in order:  # keep tokens while the mass before them is below top_p
                if mass >= top_p:
                    break
                nucleus.append(k)
                mass += float(p[k])
            want = torch.log(p[tokens[b, i]] / p[nucleus].sum())
            assert float(got[b, i]) == pytest.approx(float(want), abs=1e-5)


def test_the_gradient_follows_the_temperature():
    logits = torch.randn(1, 1, 5, requires_grad=True)
    token = torch.tensor([[2]])
    sampled_logprobs(logits, token, 0.5, 1.0).sum().backward()
    want = (torch.nn.functional.one_hot(token, 5).float() - torch.softmax(logits.detach() / 0.5, -1)) / 0.5
    torch.testing.assert_close(logits.grad, want)


def test_seq_mean_is_the_mean_of_sequence_means():
    g = torch.Generator().manual_seed(1)
    logp, old = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    adv = torch.tensor([1.0, -0.5, 2.0])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.float)
    ratio = torch.exp(logp - old)
    per = -torch.minimum(ratio * adv[:, None], ratio.clamp(0.8, 1.2) * adv[:, None])
    token_sum, _ = grpo_token_loss(logp, old, adv, mask, 0.2)
    seq_sum, _ = grpo_token_loss(logp, old, adv, mask, 0.2, loss_agg="seq-mean")
    torch.testing.assert_close(token_sum / mask.sum(), (per * mask).sum() / mask.sum())
    by_hand = sum(float((per[i] * mask[i]).sum() / mask[i].sum()) for i in range(3)) / 3
    assert float(seq_sum) / 3 == pytest.approx(by_hand, rel=1e-6)
    assert float(seq_sum) / 3 != pytest.approx(float(token_sum / mask.sum()), rel=1e-3)  # they differ here


class ScriptedBackend:
    """TEST backend: every sample of every prompt is COMPLETION (the reward's extraction is under test)."""

    model_id = "scripted"
    max_in_flight = 8

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.backend = self  # also the trainer's sampler seam (backend, format_chat, sync)

    def format_chat(self, text: str) -> str:
        return text

    async def agenerate(self, prompt, params, n=1):
        ids = self.tokenizer("assumption")["input_ids"]
        return [Completion(COMPLETION, 0, len(ids), token_ids=ids) for _ in range(n)]

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_grpo_rewards_the_candidate_search_and_eval_verify(tmp_path, fake_lean_verifier):
    from prover.runner import AsyncChecker, Engine, run_async
    from prover.train.distributed import init_distributed
    from prover.train.grpo import GRPOTrainer
    from prover.train.rollout import RewardChecker

    rows = write_toy_problems(tmp_path / "toy.jsonl", n=1)
    cfg = GRPOConfig(model=str(tiny_llama(tmp_path / "m", word_tokenizer(TACTICS), hidden=16, layers=1)),
                     problems=str(rows), out=str(tmp_path / "grpo"), device="cpu", group_size=2, temperature=0.7,
                     top_p=0.9, prompt_kind="cot")
    trainer = GRPOTrainer(cfg, load_config(environ={}), init_distributed("cpu"), fake_lean_verifier)
    trainer.sampler = ScriptedBackend(trainer.tokenizer)
    streamed = run_async(trainer.rollout(Engine(trainer.sampler), RewardChecker(AsyncChecker(fake_lean_verifier)), 0))
    rollout = streamed.rollout
    problem = trainer.problems[0]
    searched = Search(problem, None, None, Budget(), None, load_prompts()).extract("cot", COMPLETION)
    assert rollout.proofs == [searched, searched] == [candidate_proof(COMPLETION, problem, False)] * 2
    assert searched.startswith(STATEMENT) and "exact h₀" in searched  # the block of the theorem asked for
    # what GRPO extracted before (no theorem name): the helper, another candidate than eval would verify
    assert extract_proof(COMPLETION, problem.formal_statement, False).startswith("lemma helper")
    rewards, outcomes = trainer.score(rollout)
    assert [o.proved for o in outcomes] == [True, True] and rewards == [1.0, 1.0]  # the FAKE Lean accepts it


def test_unknown_loss_agg_is_refused(tmp_path):
    with pytest.raises(ProverError, match="--loss-agg"):
        train_grpo(GRPOConfig(model="m", problems="p", out=str(tmp_path), loss_agg="sum"), load_config(environ={}))


def test_the_verl_reward_extracts_the_same_candidate():
    from prover.train.verl_reward import _candidate

    problem, text = _candidate(COMPLETION, STATEMENT, {"name": "toy_0"})
    assert text == candidate_proof(COMPLETION, problem, False) and "exact h₀" in text
