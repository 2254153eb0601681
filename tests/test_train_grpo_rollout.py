"""GRPO's rollouts on the streaming runner: the same samples, rewards, losses and weights as the loop it replaced
(one `generate` per step, then one `verify_many`), Lean checking early groups while later ones still generate,
and checks that fail for the machine's reasons costing those samples, not the run. The generation backend is
a FAKE (tests/fakes/fake_rollout_backend.py), the Lean behind the checker the FAKE REPL."""

from __future__ import annotations

import json

import pytest
import torch
from fakes.fake_rollout_backend import FakeChecker, FakeRolloutBackend, FakeRolloutSampler
from helpers.tiny_models import tiny_llama, word_tokenizer
from helpers.train import TACTICS, write_toy_problems

from data.config import load_config
from prover.errors import ProverError
from prover.prompts.extract import candidate_proof
from prover.train.distributed import init_distributed
from prover.train.grpo import GRPOConfig, GRPOTrainer
from prover.train.rollout import Rollout


def make_trainer(tmp_path, name: str, checker, backend: FakeRolloutBackend, **overrides) -> GRPOTrainer:
    settings = dict(model=str(tmp_path / "m"), problems=str(tmp_path / "toy.jsonl"), out=str(tmp_path / name),
                    steps=3, problems_per_step=2, group_size=4, lr=1e-2, kl_coef=0.05, format_reward=0.1,
                    max_new_tokens=2, micro_batch_size=3, device="cpu", seed=3)
    trainer = GRPOTrainer(GRPOConfig(**(settings | overrides)), load_config(environ={}), init_distributed("cpu"),
                          checker)
    trainer.sampler = FakeRolloutSampler(backend)
    return trainer


@pytest.fixture
def toy(tmp_path):
    tok = word_tokenizer(TACTICS)
    tiny_llama(tmp_path / "m", tok, hidden=16, layers=1)
    write_toy_problems(tmp_path / "toy.jsonl", n=4)
    return tok


def spy_updates(trainer: GRPOTrainer) -> list[dict]:
    """What each update was given and what it computed (the trainer's own `update` still does the work)."""
    seen: list[dict] = []
    real = trainer.update

    def update(r: Rollout, rewards, usable=None):
        stats = real(r, rewards, usable)
        seen.append({"step": r.step, "group": r.group, "completions": r.completion_ids, "rewards": rewards,
                     "usable": usable, "loss": stats.get("loss")})
        return stats

    trainer.update = update
    return seen


def reference_grpo(trainer: GRPOTrainer, backend: FakeRolloutBackend, verifier) -> list[dict]:
    """GRPO's loop before its rollouts streamed, transcribed from the code this replaced: one `generate` over
    every prompt of the step, then every candidate in one `verify_many`, and (async_verify) batch t+1 sampled
    before the update on batch t."""
    cfg, tok, seen = trainer.cfg, trainer.tokenizer, []

    def rollout(step: int) -> Rollout:
        problems = trainer._problems_for(step)
        texts = [trainer.prompts.render(cfg.prompt_kind, p, chat_format=backend.format_chat) for p in problems]
        samples = backend.generate(texts, trainer.sampling(step), n=cfg.group_size)
        r = Rollout(step, problems, [], [], [], [], [])
        for i, (p, prompt, outs) in enumerate(zip(problems, texts, samples, strict=True)):
            for c in outs:
                r.group.append(i)
                r.prompt_ids.append(tok(prompt)["input_ids"])
                r.completion_ids.append(list(c.token_ids))
                r.texts.append(c.text)
                r.proofs.append(candidate_proof(c.text, p, trainer.template.continues_code))
        r.old_logprobs = trainer._logprobs_no_grad(trainer.policy, r)
        return r

    def rewards(r: Rollout) -> list[float]:
        todo = [i for i, proof in enumerate(r.proofs) if proof is not None]
        verdicts = verifier.verify_many([(r.problems[r.group[i]], r.proofs[i]) for i in todo])
        proved = dict(zip(todo, (v.proved for v in verdicts), strict=True))
        return [float(proved.get(i, False)) + (cfg.format_reward if r.proofs[i] is not None else 0.0)
                for i in range(len(r.proofs))]

    r = rollout(0)
    for step in range(cfg.steps):
        nxt = rollout(step + 1) if step + 1 < cfg.steps else None
        got = rewards(r)
        stats = trainer.update(r, got)
        seen.append({"step": step, "group": r.group, "completions": r.completion_ids, "rewards": got,
                     "loss": stats.get("loss")})
        r = nxt
    return seen


def test_streamed_rollouts_match_the_batch_loop_they_replaced(tmp_path, toy, fake_lean_verifier):
    streamed = make_trainer(tmp_path, "streamed", fake_lean_verifier, FakeRolloutBackend(toy, TACTICS, max_in_flight=4))
    seen = spy_updates(streamed)
    result = streamed.train(progress=False)
    reference = make_trainer(tmp_path, "reference", fake_lean_verifier, FakeRolloutBackend(toy, TACTICS))
    want = reference_grpo(reference, reference.sampler.backend, fake_lean_verifier)

    assert result.steps == 3 and len(seen) == len(want) == 3
    for got, ref in zip(seen, want, strict=True):
        assert (got["step"], got["group"], got["completions"]) == (ref["step"], ref["group"], ref["completions"])
        assert got["rewards"] == ref["rewards"]  # the same verdict for every sample
        assert got["usable"] == [True] * len(got["rewards"])
        assert got["loss"] == pytest.approx(ref["loss"], rel=1e-6, abs=1e-9)
    rewards = [x for step in seen for x in step["rewards"]]
    assert 1.1 in rewards and 0.1 in rewards  # proved and unproved samples: the advantages are not all zero
    for a, b in zip(streamed.policy.parameters(), reference.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)  # the same updates, step after step


def test_lean_checks_early_groups_while_later_groups_generate(tmp_path, toy, fake_lean_verifier):
    backend = FakeRolloutBackend(toy, TACTICS, delay_s=0.3, max_in_flight=4)  # one group of 4 at a time
    checker = FakeChecker(fake_lean_verifier, delay_s=0.05)
    trainer = make_trainer(tmp_path, "overlap", checker, backend, steps=1, problems_per_step=3, kl_coef=0.0)
    trainer.train(progress=False)
    gen_ends = sorted(t for t, what, _ in backend.events if what == "end")
    check_starts = sorted(t for t, what, _ in checker.events if what == "start")
    assert len(gen_ends) == 3 and check_starts
    assert check_starts[0] < gen_ends[-1]  # Lean was working before the last group had been generated
    # the first group's candidates were handed to Lean as soon as that group arrived, not after the others
    assert check_starts[0] < gen_ends[1]


def test_checks_that_fail_for_the_machine_cost_their_samples_not_the_run(tmp_path, toy, fake_lean_verifier):
    def broken(proof: str) -> bool:
        return "rfl" in proof or "decide" in proof

    for raises in (True, False):  # the checker raising (server unreachable) or answering an infra verdict
        checker = FakeChecker(fake_lean_verifier, broken=broken, raises=raises)
        name = f"flaky-{raises}"
        trainer = make_trainer(tmp_path, name, checker, FakeRolloutBackend(toy, TACTICS, max_in_flight=4))
        seen = spy_updates(trainer)
        assert trainer.train(progress=False).steps == 3
        for step in seen:
            expected = [proof is None or not broken(proof) for proof in _proofs(trainer, step)]
            assert step["usable"] == expected and not all(expected)  # marked, so left out of the update
        logged = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        assert [m["infra_failures"] for m in logged] == [step["usable"].count(False) for step in seen]


def test_lean_down_for_every_candidate_stops_the_run_with_one_message(tmp_path, toy, fake_lean_verifier):
    checker = FakeChecker(fake_lean_verifier, broken=lambda proof: True)
    trainer = make_trainer(tmp_path, "down", checker, FakeRolloutBackend(toy, TACTICS), steps=5)
    with pytest.raises(ProverError, match="every candidate of 3 steps in a row.*cannot be reached"):
        trainer.train(progress=False)
    assert len((tmp_path / "down" / "metrics.jsonl").read_text().splitlines()) == 3  # what ran is logged


def _proofs(trainer: GRPOTrainer, step: dict) -> list[str | None]:
    """The candidates of a recorded update's sequences (the fake backend's texts are a function of the step)."""
    problems = trainer._problems_for(step["step"])
    backend = trainer.sampler.backend
    texts = [trainer.prompts.render(trainer.cfg.prompt_kind, p, chat_format=backend.format_chat) for p in problems]
    samples = backend.generate(texts, trainer.sampling(step["step"]), n=trainer.cfg.group_size)
    return [candidate_proof(c.text, problems[i], trainer.template.continues_code)
            for i, outs in enumerate(samples) for c in outs]


def test_the_moe_policy_samples_do_not_depend_on_their_batch(tmp_path):
    """Our DeepSeek-V3 samples through its latent-cache `generate` with a generator per row: a group drawn alone
    equals the same group drawn beside another (groups arrive in whatever batches the queue makes)."""
    from prover.generate.base import SamplingParams
    from prover.model import DeepSeekV3
    from prover.model.testing import tiny_checkpoint
    from prover.train.rollout import LatentCacheBackend, PolicySampler

    tok = word_tokenizer(TACTICS)
    model = DeepSeekV3.from_pretrained(tiny_checkpoint(tmp_path / "moe", tokenizer=tok)).eval()
    sampler = PolicySampler(model, tok, torch.device("cpu"), batch_size=8)
    assert isinstance(sampler.backend, LatentCacheBackend)
    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=4, seed=11)
    prompts = [tok("rfl decide")["input_ids"], tok("intro sorry")["input_ids"]]
    try:
        together = sampler.backend.generate(prompts, params, n=3)
        alone = [sampler.backend.generate([p], params, n=3)[0] for p in prompts]
    finally:
        sampler.close()
    assert [[c.token_ids for c in g] for g in together] == [[c.token_ids for c in g] for g in alone]
    assert len({tuple(c.token_ids) for g in together for c in g}) > 1  # sampled, not one fixed answer


def test_grpo_trains_our_moe_policy_on_the_runner(tmp_path, fake_lean_verifier):
    from prover.model.testing import tiny_checkpoint
    from prover.train.grpo import train_grpo

    ckpt = tiny_checkpoint(tmp_path / "moe", tokenizer=word_tokenizer(TACTICS))
    cfg = GRPOConfig(model=str(ckpt), problems=str(write_toy_problems(tmp_path / "toy.jsonl", n=2)),
                     out=str(tmp_path / "grpo"), steps=2, problems_per_step=2, group_size=2, max_new_tokens=2,
                     device="cpu")
    result = train_grpo(cfg, load_config(environ={}), verifier=fake_lean_verifier, progress=False)
    assert result.steps == 2 and result.timings["generate_s"] > 0
    logged = [json.loads(line) for line in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
    assert len(logged) == 2 and all(m["infra_failures"] == 0 and m["completion_len_mean"] > 0 for m in logged)


def test_moe_rows_end_at_their_stop_and_groups_are_answered_as_they_end(tmp_path):
    """The latent-cache backend ends a row at its first stop string and answers a group once its own rows have
    ended (Lean can start on it while the batch decodes on); the completions are those of decoding every row to
    the end and cutting at the stop afterwards, as GRPO's sampler did before."""
    import asyncio

    from prover.generate.base import SamplingParams, sample_seeds
    from prover.model import DeepSeekV3
    from prover.model.testing import tiny_checkpoint
    from prover.train.rollout import LatentCacheBackend, _cut_at_stop

    tok = word_tokenizer(TACTICS)
    model = DeepSeekV3.from_pretrained(tiny_checkpoint(tmp_path / "moe", tokenizer=tok)).eval()
    backend = LatentCacheBackend(model, tokenizer=tok, device="cpu", batch_size=16)
    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=24, seed=5, stop=("rfl",))
    prompts = [tok(p)["input_ids"] for p in ("intro decide", "sorry constructor", "assumption intro")]
    steps, answered = [0], []
    generate = model.generate

    def counting(*a, on_step, **kw):
        def step(nxt, done):
            steps[0] += 1
            return on_step(nxt, done)
        return generate(*a, on_step=step, **kw)

    model.generate = counting

    async def one(i, p):
        out = await backend.agenerate(p, params, n=4)
        answered.append((steps[0], i))
        return out

    loop = asyncio.new_event_loop()
    try:
        with backend._model_lock:  # held: the three requests queue up and the worker batches them together
            tasks = [loop.create_task(one(i, p)) for i, p in enumerate(prompts)]
            loop.run_until_complete(asyncio.sleep(0.1))
        groups = loop.run_until_complete(asyncio.gather(*tasks))
    finally:
        loop.close()
        model.generate = generate
        backend.close()
    assert backend.batches == 1
    for p, group in zip(prompts, groups, strict=True):
        ids = torch.tensor([p] * 4)
        gens = [torch.Generator().manual_seed(s) for s in sample_seeds(params, 4)]
        full = generate(ids, max_new_tokens=24, temperature=1.0, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id, generator=gens)[:, len(p):].tolist()
        for row, c in zip(full, group, strict=True):
            row = row[: row.index(tok.eos_token_id) + 1] if tok.eos_token_id in row else row
            assert (c.token_ids, c.text) == _cut_at_stop(row, params.stop, tok, tok.eos_token_id)
    assert any(c.finish_reason == "stop" and len(c.token_ids) < 24 for g in groups for c in g)
    assert answered[0][0] < steps[0]  # the first group was answered before the batch's last step


def test_a_generation_error_in_a_rollout_is_raised_as_itself(tmp_path, toy, fake_lean_verifier):
    """A group's generation failing (a server rejecting a request, a closed engine) stops the run with that
    error, one line at the CLI, not wrapped in an ExceptionGroup that no handler knows (a traceback)."""

    class RejectingBackend(FakeRolloutBackend):  # a TEST backend: the server rejects every request
        async def agenerate(self, prompt, params, n=1):
            raise ProverError("http://server/v1/completions rejected the request: HTTP 400: prompt too long")

    trainer = make_trainer(tmp_path, "rejected", fake_lean_verifier, RejectingBackend(toy, TACTICS))
    with pytest.raises(ProverError, match="rejected the request"):
        trainer.train(progress=False)
