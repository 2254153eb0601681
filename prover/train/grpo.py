"""GRPO (DeepSeekMath / DeepSeek-Prover-V1.5/V2): G samples per problem from the current policy, reward 1 for a
proof the sound Verifier accepts (plus an optional format reward), group-normalized advantages, PPO-style
clipped objective against the sampling policy's log-probabilities (taken at the sampling temperature and top-p:
the policy that sampled is the one whose gradient is followed), optional k3 KL to a frozen reference model, and
a token-level loss (`--loss-agg token-mean`) or DeepSeekMath's mean of per-sequence means (`seq-mean`).

Rollouts run on the streaming runner (`prover.train.rollout`): Lean checks each group's candidates while later
groups still generate, and (`async_verify`) batch t+1 is sampled before the update on batch t while Lean
finishes batch t (its old log-probabilities are taken right after sampling, so the one-step lag is corrected by
the importance ratio).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from data.manifest import Manifest, check_resume, content_id, json_sha256, make_manifest, problems_id
from prover.errors import ProverError
from prover.generate.base import SamplingParams, derive_seed
from prover.runner import AsyncChecker, Engine, run_async
from prover.train.checkpoint import (
    clear_checkpoints,
    export_final,
    latest_checkpoint,
    load_training_state,
    save_checkpoint,
)
from prover.train.common import (
    MetricLog,
    autocast,
    load_policy,
    load_tokenizer,
    moe_after_step,
    seed_everything,
)
from prover.train.consistency import consistency_penalty
from prover.train.distributed import DistEnv, init_distributed
from prover.train.rollout import (
    Outcome,
    RewardChecker,
    Rollout,
    StreamedRollout,
    make_sampler,
    stream_rollout,
)

INFRA_PATIENCE = 3  # steps in a row with every check failed for the machine's reasons before the run stops


@dataclass
class GRPOConfig:
    model: str
    problems: str  # training problem set: registry name, JSONL/.lean path or HF dataset
    out: str
    tokenizer: str | None = None
    split: str | None = None
    steps: int = 100
    problems_per_step: int = 8
    group_size: int = 8  # G samples per problem
    lr: float = 1e-6
    clip_eps: float = 0.2
    kl_coef: float = 0.0  # beta; > 0 loads a frozen reference copy of the starting model
    ppo_epochs: int = 1  # optimizer passes over each batch
    micro_batch_size: int = 8  # sequences per forward/backward
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    format_reward: float = 0.0  # added when the completion holds a well-formed candidate proof
    consistency_penalty: float = 0.0  # subtracted when the final proof leaves out a `have` its CoT planned
    consistency_steps: int | None = None  # ... during the first N steps only (the paper's early term); None: all
    prompt_kind: str = "complete"  # a `prover.prompts` template
    prompts: str | None = None  # TOML overriding the prompt templates
    sampler: Literal["auto", "transformers", "vllm"] = "auto"
    async_verify: bool = True
    grad_clip: float = 1.0
    weight_decay: float = 0.0
    bias_update_gamma: float = 1e-3
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    device: str = "auto"
    seed: int = 0
    save_every: int = 0
    keep_last: int = 2
    resume: bool = True
    adv_eps: float = 1e-4
    loss_agg: Literal["token-mean", "seq-mean"] = "token-mean"  # seq-mean: DeepSeekMath's per-sequence mean


@dataclass
class GRPOResult:
    out: str
    steps: int
    reward_history: list[float]
    pass_history: list[float]
    timings: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["first_reward"] = self.reward_history[0] if self.reward_history else None
        d["final_reward"] = self.reward_history[-1] if self.reward_history else None
        return d


# ------------------------------------------------------------------------------------------- math
LOSS_AGGS = ("token-mean", "seq-mean")


def group_advantages(rewards: torch.Tensor, group: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """(r - mean of its group) / (std of its group + eps); a group with equal rewards gets 0."""
    adv = torch.zeros_like(rewards)
    for g in group.unique():
        idx = group == g
        r = rewards[idx]
        adv[idx] = (r - r.mean()) / (r.std(unbiased=False) + eps)
    return adv


def grpo_token_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    loss_agg: str = "token-mean",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token clipped surrogate (+ beta * k3 KL), summed for `loss_agg`: over completion tokens for
    "token-mean" (divide by the batch's token count: every token weighs the same), over sequences of their
    token means for "seq-mean" (DeepSeekMath's GRPO, 1/G sum_i 1/|o_i| sum_t: divide by the sequence count).

    logp, old_logp, ref_logp, mask: [B, T]; advantages: [B]."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None]
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
    per_token = -surrogate
    stats = {"clip_frac": (((ratio - 1).abs() > clip_eps).float() * mask).sum()}
    if ref_logp is not None:
        d = ref_logp - logp
        kl = torch.exp(d) - d - 1  # k3: unbiased, non-negative estimate of KL(pi || ref)
        per_token = per_token + kl_coef * kl
        stats["kl"] = (kl.detach() * mask).sum()
    if loss_agg == "seq-mean":
        return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).sum(), stats
    return (per_token * mask).sum(), stats


def sampled_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """log p(token) under softmax(logits / T) restricted to the nucleus (the smallest top set holding `top_p`
    of the mass, the top token always in) and renormalized, as the samplers draw. A token outside the current
    nucleus (possible only once the policy has moved) keeps its renormalized value instead of -inf, so ratios
    stay finite; PPO's clip bounds what it does."""
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    logp = torch.log_softmax(logits, dim=-1)
    out = logp.gather(-1, tokens[..., None])[..., 0]
    if top_p < 1.0:
        p_sorted = logp.exp().sort(dim=-1, descending=True).values
        nucleus = (p_sorted.cumsum(-1) - p_sorted) < top_p  # the mass before a token is below top_p
        out = out - (p_sorted * nucleus).sum(-1).log()
    return out


def completion_logprobs(model, prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_id: int,
                        device: torch.device, precision: str, temperature: float = 1.0,
                        top_p: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of each completion token under the distribution it was sampled from: `model`'s logits
    at `temperature`, renormalized over the `top_p` nucleus (so the gradient is that of the sampling policy,
    not of the T=1 model). ([B, T], mask [B, T]) where T is the longest completion; sequences are prompt +
    completion, right-padded."""
    seqs = [p + c for p, c in zip(prompt_ids, completion_ids, strict=True)]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
    ids, attn = ids.to(device), attn.to(device)
    with autocast(device, precision):
        logits = model(input_ids=ids, attention_mask=attn).logits
    logp_all = sampled_logprobs(logits[:, :-1].float(), ids[:, 1:], temperature, top_p)
    t_max = max(1, max(len(c) for c in completion_ids))
    out = logp_all.new_zeros((len(seqs), t_max))
    mask = torch.zeros((len(seqs), t_max), device=device)
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids, strict=True)):
        if c:  # token j of the completion sits at position len(p) + j, predicted from position len(p) + j - 1
            out[i, : len(c)] = logp_all[i, len(p) - 1 : len(p) - 1 + len(c)]
            mask[i, : len(c)] = 1
    return out, mask


# ------------------------------------------------------------------------------------------- training
# How the run is carried out, not what it computes (`steps`: no schedule depends on it, so a run may be extended).
RUN_ONLY = ("out", "resume", "save_every", "keep_last", "device", "steps")


def grpo_manifest(cfg: GRPOConfig, problems: list[Any], template: Any) -> Manifest:
    """What a resume must match: every setting, the seed, the starting weights, the problems and the prompt
    template by content (a registry set or prompts file that changed under the same name is another run)."""
    settings = {k: v for k, v in asdict(cfg).items() if k not in (*RUN_ONLY, "seed")}
    inputs = {"--model": content_id(cfg.model, weights_only=True),
              "--problems": problems_id(problems),
              "--prompt": json_sha256(asdict(template) if is_dataclass(template) else str(template))}
    if cfg.tokenizer:
        inputs["--tokenizer"] = content_id(cfg.tokenizer)
    return make_manifest("grpo", settings, {"seed": cfg.seed}, inputs)


class GRPOTrainer:
    def __init__(self, cfg: GRPOConfig, config: Any, env: DistEnv, verifier: Any):
        from data import load_problems
        from prover.prompts import load_prompts

        if env.distributed:
            raise ProverError("GRPO runs in one process (generation and verification are the bottleneck); "
                              "launch it without torchrun")
        self.cfg, self.env = cfg, env
        seed_everything(cfg.seed)
        self.problems = load_problems(cfg.problems, config, split=cfg.split)
        self.verifier = verifier
        self.prompts = load_prompts(cfg.prompts)
        self.template = self.prompts[cfg.prompt_kind]
        self.out = Path(cfg.out)
        self.resume_from = latest_checkpoint(self.out) if cfg.resume else None
        check_resume(self.out, grpo_manifest(cfg, self.problems, self.template), self.resume_from is not None)
        if not cfg.resume:
            clear_checkpoints(self.out, env)  # the earlier run's, started over
        self.tokenizer = load_tokenizer(cfg.tokenizer or cfg.model)
        self.policy = load_policy(str(self.resume_from or cfg.model), env.device)
        self.policy.train()
        self.ref = None
        if cfg.kl_coef > 0:
            self.ref = load_policy(cfg.model, env.device).eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                           betas=(0.9, 0.99))
        self.sampler = make_sampler(cfg.sampler, self.policy, self.tokenizer, str(self.resume_from or cfg.model),
                                    env.device, batch_size=cfg.problems_per_step * cfg.group_size)
        self.policy.train()  # the sampler may have switched it to eval
        self.step = 0
        self.rewards: list[float] = []
        self.passes: list[float] = []
        if self.resume_from is not None:
            state = load_training_state(self.resume_from, self.policy, self.optimizer, None, env)
            self.step = state["step"]
            self.rewards = list(state["extra"].get("rewards", []))
            self.passes = list(state["extra"].get("passes", []))
        self.start_step = self.step
        self.log = MetricLog(self.out, enabled=env.is_main, from_step=self.step)
        self._infra_steps = 0  # steps in a row in which every check failed for the machine's reasons
        self.timings = {"generate_s": 0.0, "verify_wait_s": 0.0, "verify_s": 0.0, "update_s": 0.0}

    # ---- one batch of samples
    def _problems_for(self, step: int) -> list[Any]:
        n = len(self.problems)
        k = self.cfg.problems_per_step
        epoch, start = divmod(step * k, n)
        order = [i for e in (epoch, epoch + 1) for i in torch.randperm(
            n, generator=torch.Generator().manual_seed(derive_seed(self.cfg.seed, "order", e))).tolist()]
        return [self.problems[i] for i in order[start : start + min(k, n)]]

    def sampling(self, step: int) -> SamplingParams:
        cfg = self.cfg
        return SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_new_tokens,
                              seed=derive_seed(cfg.seed, "rollout", step), stop=self.template.stop, logprobs=False)

    async def rollout(self, engine: Engine, rewards: RewardChecker, step: int) -> StreamedRollout:
        """Step `step`'s samples from the current policy through `engine`, each group's checks started as it
        arrives; the sampling policy's log-probabilities are taken once every generation is in."""
        from prover.prompts.extract import candidate_proof

        t0 = time.perf_counter()
        problems = self._problems_for(step)
        texts = [self.prompts.render(self.cfg.prompt_kind, p, chat_format=self.sampler.format_chat) for p in problems]
        self.policy.eval()  # sampling never runs in training mode (dropout, MoE load counting)
        try:
            streamed = await stream_rollout(
                engine, rewards, step, problems, texts, self.sampling(step), self.cfg.group_size,
                tokenize=lambda text: self.tokenizer(text)["input_ids"],
                extract=lambda text, p: candidate_proof(text, p, self.template.continues_code))
        finally:
            self.policy.train()
        r = streamed.rollout
        r.old_logprobs = await asyncio.to_thread(self._logprobs_no_grad, self.policy, r)
        r.gen_s = time.perf_counter() - t0
        return streamed

    @torch.no_grad()
    def _logprobs_no_grad(self, model, r: Rollout) -> list[torch.Tensor]:
        was_training = model.training
        model.eval()  # no MoE load counting for scoring passes
        out = []
        mb = self.cfg.micro_batch_size
        for s in range(0, len(r.prompt_ids), mb):
            completions = r.completion_ids[s : s + mb]
            lp, _ = completion_logprobs(model, r.prompt_ids[s : s + mb], completions, self.tokenizer.pad_token_id,
                                        self.env.device, self.cfg.precision, self.cfg.temperature, self.cfg.top_p)
            lp = lp.cpu()  # one copy per micro-batch, not one per row
            out += [lp[i, : len(c)] for i, c in enumerate(completions)]
        model.train(was_training)
        return out

    def rewards_for(self, r: Rollout, outcomes: list[Outcome]) -> list[float]:
        """1 per verified proof, + format reward per candidate, - consistency penalty early on."""
        rewards = [float(o.proved) + (self.cfg.format_reward if proof is not None else 0.0)
                   for o, proof in zip(outcomes, r.proofs, strict=True)]
        steps = self.cfg.consistency_steps
        if self.cfg.consistency_penalty and (steps is None or r.step < steps):
            rewards = [x + consistency_penalty(text, proof, self.cfg.consistency_penalty)
                       for x, text, proof in zip(rewards, r.texts, r.proofs, strict=True)]
        return rewards

    def score(self, r: Rollout) -> tuple[list[float], list[Outcome]]:
        """Rewards and Lean's outcomes for a rollout built elsewhere, checked as a streamed rollout's are."""

        async def check_all() -> list[Outcome]:
            rewards = RewardChecker(AsyncChecker(self.verifier))
            return list(await asyncio.gather(*(rewards.check(r.problems[g], proof)
                                               for g, proof in zip(r.group, r.proofs, strict=True))))

        outcomes = run_async(check_all())
        return self.rewards_for(r, outcomes), outcomes

    # ---- one optimizer update on a scored batch
    def update(self, r: Rollout, rewards: list[float], usable: list[bool] | None = None) -> dict[str, float]:
        """`usable`: False for a sequence whose check failed for the machine's reasons; it is left out of its
        group's statistics and of the loss (its reward says nothing about the policy)."""
        cfg, dev = self.cfg, self.env.device
        ok = torch.tensor(usable if usable is not None else [True] * len(rewards), dtype=torch.bool)
        adv = torch.zeros(len(rewards))
        adv[ok] = group_advantages(torch.tensor(rewards)[ok], torch.tensor(r.group)[ok], cfg.adv_eps)
        keep = [i for i in range(len(rewards)) if r.completion_ids[i] and ok[i]]
        total_tokens = sum(len(r.completion_ids[i]) for i in keep)
        if total_tokens == 0:
            return {}
        denominator = total_tokens if cfg.loss_agg == "token-mean" else len(keep)
        ref_lp = None
        if self.ref is not None:
            ref_lp = self._logprobs_no_grad(self.ref, r)
        # Summed on the device and read once at the end: no host sync per micro-batch.
        sums = {k: torch.zeros((), device=dev) for k in ("loss", "kl", "clip_frac")}
        stats: dict[str, float] = {}
        for _ in range(cfg.ppo_epochs):
            for s in range(0, len(keep), cfg.micro_batch_size):
                idx = keep[s : s + cfg.micro_batch_size]
                lp, mask = completion_logprobs(self.policy, [r.prompt_ids[i] for i in idx],
                                               [r.completion_ids[i] for i in idx], self.tokenizer.pad_token_id,
                                               dev, cfg.precision, cfg.temperature, cfg.top_p)
                old = _pad([r.old_logprobs[i] for i in idx], lp.shape[1]).to(dev)
                ref = _pad([ref_lp[i] for i in idx], lp.shape[1]).to(dev) if ref_lp is not None else None
                loss_sum, st = grpo_token_loss(lp, old, adv[idx].to(dev), mask, cfg.clip_eps, ref, cfg.kl_coef,
                                               cfg.loss_agg)
                (loss_sum / denominator).backward()
                sums["loss"] += loss_sum.detach()
                for k in ("kl", "clip_frac"):
                    if k in st:
                        sums[k] += st[k]
            if cfg.grad_clip > 0:
                stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip))
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            stats.update(moe_after_step(self.policy, cfg.bias_update_gamma))
        stats.update({k: float(v) / (denominator if k == "loss" else total_tokens) / cfg.ppo_epochs
                      for k, v in sums.items()})
        self.sampler.sync()
        return stats

    def train(self, progress: bool = True) -> GRPOResult:
        bar = _progress(progress, self.cfg.steps, self.step)
        try:
            run_async(self._train(bar))
            # Nothing trained: the checkpoint resumed from stands (rewriting it in place could tear it).
            ckpt = self._checkpoint() if self.step > self.start_step else self.resume_from
            export_final(ckpt, self.out, self.env)
        finally:
            if bar is not None:
                bar[0].stop()
            self.log.close()
        return GRPOResult(str(self.out), self.step, self.rewards, self.passes, dict(self.timings))

    async def _train(self, bar: Any) -> None:
        """The steps on the streaming runner. With `async_verify`, batch t+1 is sampled (from the weights batch t
        was sampled from) before the update on batch t, so Lean finishes batch t meanwhile."""
        cfg = self.cfg
        engine = Engine(self.sampler.backend)  # the sampler owns the backend: the engine is only its front
        rewards = RewardChecker(AsyncChecker(self.verifier))
        pending: StreamedRollout | None = None
        while self.step < cfg.steps:
            current = pending or await self.rollout(engine, rewards, self.step)
            pending = None
            if cfg.async_verify and self.step + 1 < cfg.steps:
                pending = await self.rollout(engine, rewards, self.step + 1)
            t0 = time.perf_counter()
            outcomes = await current.outcomes
            self.timings["verify_wait_s"] += time.perf_counter() - t0
            r = current.rollout
            started, finished = current.verify_span
            verify_s = finished - started if started else 0.0
            self.timings["generate_s"] += r.gen_s
            self.timings["verify_s"] += verify_s
            rewards_r = self.rewards_for(r, outcomes)
            t0 = time.perf_counter()
            stats = await asyncio.to_thread(self.update, r, rewards_r, [not o.infra for o in outcomes])
            update_s = time.perf_counter() - t0
            self.timings["update_s"] += update_s
            self.step += 1
            self._record(r, rewards_r, outcomes, stats, verify_s, update_s)
            self._check_lean_alive(r, outcomes)
            if bar is not None:
                bar[0].update(bar[1], advance=1, description=f"grpo reward {self.rewards[-1]:.3f}")
            if cfg.save_every and self.step % cfg.save_every == 0 and self.step < cfg.steps:
                await asyncio.to_thread(self._checkpoint)

    def _check_lean_alive(self, r: Rollout, outcomes: list[Outcome]) -> None:
        """A step whose checks failed for the machine's reasons trains on the rest; `INFRA_PATIENCE` steps in a row
        in which every check failed so stop the run (Lean is down: more steps would only burn the GPU)."""
        checked = [o for o, proof in zip(outcomes, r.proofs, strict=True) if proof is not None]
        if not checked or not all(o.infra for o in checked):
            self._infra_steps = 0
            return
        self._infra_steps += 1
        if self._infra_steps >= INFRA_PATIENCE:
            raise ProverError(f"Lean failed for the machine's reasons on every candidate of {self._infra_steps} "
                              f"steps in a row (last: {checked[-1].infra}); fix the Lean setup and re-run "
                              "(it resumes from the last checkpoint)")

    def _record(self, r: Rollout, rewards: list[float], outcomes: list[Outcome], stats: dict[str, float],
                verify_s: float, update_s: float) -> None:
        judged = [i for i, o in enumerate(outcomes) if not o.infra] or list(range(len(outcomes)))
        mean_r = sum(rewards[i] for i in judged) / len(judged)
        pass_rate = sum(outcomes[i].proved for i in judged) / len(judged)
        by_problem: dict[int, bool] = {}
        for g, o in zip(r.group, outcomes, strict=True):
            by_problem[g] = by_problem.get(g, False) or o.proved
        lengths = [len(c) for c in r.completion_ids]
        infra = sum(bool(o.infra) for o in outcomes)
        self.rewards.append(mean_r)
        self.passes.append(pass_rate)
        metrics = {"reward": mean_r, "pass_rate": pass_rate, "problems_solved": sum(by_problem.values()),
                   "completion_len_mean": sum(lengths) / len(lengths), "completion_len_max": float(max(lengths)),
                   "extracted_frac": sum(p is not None for p in r.proofs) / len(r.proofs),
                   "infra_failures": infra, "generate_s": r.gen_s, "verify_s": verify_s, "update_s": update_s,
                   **stats}
        self.log.log(self.step, metrics, echo_keys=("reward", "pass_rate", "kl", "loss", "completion_len_mean",
                                                    *(("infra_failures",) if infra else ())))

    def _checkpoint(self) -> Path:
        return save_checkpoint(self.out, self.step, self.policy, self.optimizer, None, self.tokenizer, self.env,
                        {"rewards": self.rewards, "passes": self.passes}, self.cfg.keep_last)


def _pad(rows: list[torch.Tensor], width: int) -> torch.Tensor:
    out = torch.zeros((len(rows), width))
    for i, row in enumerate(rows):
        out[i, : len(row)] = row[:width]
    return out


def _progress(enabled: bool, total: int, done: int):
    from prover.train.sft import _progress as sft_progress

    return sft_progress(enabled, total, done)


def train_grpo(cfg: GRPOConfig, config: Any, verifier: Any = None, progress: bool = True) -> GRPOResult:
    """Run (or resume) GRPO; `verifier` defaults to one made from `config.lean`."""
    if cfg.loss_agg not in LOSS_AGGS:
        raise ProverError(f"unknown --loss-agg {cfg.loss_agg!r} (choose from {', '.join(LOSS_AGGS)})")
    if cfg.group_size < 2:
        raise ProverError("GRPO needs --group-size >= 2 (advantages are relative within a group)")
    if not math.isfinite(cfg.lr) or cfg.lr < 0:
        raise ProverError(f"bad learning rate {cfg.lr}")
    env = init_distributed(cfg.device)
    own = verifier is None
    if own:  # before any model loads: a missing Lean fails fast
        from lean_env import make_verifier

        verifier = make_verifier(config.lean)
    try:
        trainer = GRPOTrainer(cfg, config, env, verifier)
        try:
            return trainer.train(progress)
        finally:
            trainer.sampler.close()
    finally:
        if own:
            verifier.close()
