"""GRPO: the math (group advantages, clipped surrogate, k3 KL) and a toy task the FAKE Lean checks, on which
the reward must rise: the policy has to learn to answer with the one tactic that proves the goals."""

from __future__ import annotations

import json
import math

import pytest
import torch
from fakes import FAKE_LEAN
from helpers.tiny_models import tiny_llama, word_tokenizer
from helpers.train import TACTICS, run_with_torn_checkpoint_writes, write_toy_problems

from data.config import LeanSettings, load_config
from prover.train.grpo import GRPOConfig, group_advantages, grpo_token_loss, train_grpo

torch.set_num_threads(1)


def test_group_advantages_are_normalized_within_groups():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    g = torch.tensor([0, 0, 0, 0, 1, 1])
    adv = group_advantages(r, g)
    assert adv[:4].sum().abs() < 1e-5 and adv[0] > 0 > adv[1]
    assert float(adv[0]) == pytest.approx((1 - 0.25) / (math.sqrt(0.1875) + 1e-4), rel=1e-4)
    assert torch.all(adv[4:] == 0)  # equal rewards: no signal


def test_clipped_surrogate_and_k3_kl():
    old = torch.zeros(1, 2)
    logp = torch.log(torch.tensor([[1.5, 0.9]]))  # ratios 1.5 (clipped at 1.2 for A > 0) and 0.9
    mask = torch.ones(1, 2)
    loss, stats = grpo_token_loss(logp, old, torch.tensor([1.0]), mask, clip_eps=0.2)
    assert float(loss) == pytest.approx(-(1.2 + 0.9))
    assert float(stats["clip_frac"]) == 1.0
    ref = torch.zeros(1, 2)
    loss_kl, stats = grpo_token_loss(logp, old, torch.tensor([1.0]), mask, 0.2, ref_logp=ref, kl_coef=0.5)
    d = ref - logp
    k3 = (torch.exp(d) - d - 1).sum()
    assert float(stats["kl"]) == pytest.approx(float(k3)) and float(k3) > 0
    assert float(loss_kl) == pytest.approx(float(loss) + 0.5 * float(k3))


def test_moe_sampler_cuts_tokens_at_the_stop_string():
    """Our MoE samples until EOS; the completion it hands GRPO must end where the stop string does, as the
    other backends' do, so that no gradient goes to tokens past the stop that the reward never saw."""
    from prover.train.rollout import _cut_at_stop

    tok = word_tokenizer(["rfl", "```", "junk"])
    ids = tok("rfl ``` junk junk", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    tokens, text = _cut_at_stop(ids, ("```",), tok, tok.eos_token_id)
    assert tokens == ids[:2] and text == "rfl "
    tokens, text = _cut_at_stop(ids, (), tok, tok.eos_token_id)
    assert tokens == ids and text == "rfl ``` junk junk"


@pytest.fixture(scope="module")
def verifier():
    from lean_env import make_verifier

    v = make_verifier(LeanSettings(repl_path=FAKE_LEAN, workers=2, timeout_s=30))
    yield v
    v.close()


def test_reward_rises_on_the_toy_task(tmp_path, verifier):
    model = tiny_llama(tmp_path / "m", word_tokenizer(TACTICS), hidden=32)
    cfg = GRPOConfig(model=str(model), problems=str(write_toy_problems(tmp_path / "toy.jsonl")),
                     out=str(tmp_path / "grpo"), steps=16, problems_per_step=4, group_size=8, lr=2e-2,
                     max_new_tokens=2, micro_batch_size=32, device="cpu", seed=1, kl_coef=0.05)
    res = train_grpo(cfg, load_config(environ={}), verifier=verifier, progress=False)
    first, last = sum(res.reward_history[:4]) / 4, sum(res.reward_history[-4:]) / 4
    assert res.steps == 16
    assert first < 0.5 and last > first + 0.3, res.reward_history
    logged = [json.loads(line) for line in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
    assert {"reward", "pass_rate", "kl", "completion_len_mean", "verify_s"} <= set(logged[-1])
    assert (tmp_path / "grpo" / "config.json").is_file()


def test_grpo_resumes_from_its_checkpoint(tmp_path, verifier):
    model = tiny_llama(tmp_path / "m", word_tokenizer(TACTICS), hidden=16, layers=1)
    common = dict(model=str(model), problems=str(write_toy_problems(tmp_path / "toy.jsonl", n=2)),
                  out=str(tmp_path / "grpo"), problems_per_step=2, group_size=2, max_new_tokens=2, device="cpu")
    first = train_grpo(GRPOConfig(steps=2, **common), load_config(environ={}), verifier=verifier, progress=False)
    again = train_grpo(GRPOConfig(steps=3, **common), load_config(environ={}), verifier=verifier, progress=False)
    assert again.steps == 3 and again.reward_history[:2] == first.reward_history
    assert sorted(p.name for p in (tmp_path / "grpo" / "checkpoints").iterdir())[-1] == "step-000003"


def test_a_rerun_with_nothing_left_to_train_leaves_its_checkpoint_whole(tmp_path, verifier, monkeypatch):
    """Rerunning a finished GRPO run trains nothing: it must not rewrite its checkpoint in place (a Ctrl-C
    mid-write left a complete-looking checkpoint with a torn model file, and the run could not be extended)."""
    model = tiny_llama(tmp_path / "m", word_tokenizer(TACTICS), hidden=16, layers=1)
    common = dict(model=str(model), problems=str(write_toy_problems(tmp_path / "toy.jsonl", n=2)),
                  out=str(tmp_path / "grpo"), problems_per_step=2, group_size=2, max_new_tokens=2, device="cpu")
    first = train_grpo(GRPOConfig(steps=2, **common), load_config(environ={}), verifier=verifier, progress=False)
    run_with_torn_checkpoint_writes(monkeypatch, lambda: train_grpo(
        GRPOConfig(steps=2, **common), load_config(environ={}), verifier=verifier, progress=False))
    again = train_grpo(GRPOConfig(steps=3, **common), load_config(environ={}), verifier=verifier, progress=False)
    assert again.steps == 3 and again.reward_history[:2] == first.reward_history
