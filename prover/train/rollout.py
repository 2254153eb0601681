"""GRPO's rollout phase on the streaming runner (`prover.runner`): each problem's group of samples is one request to
the shared `Engine` over the rollout backend (the policy itself, or vLLM with the policy's weights pushed in), and
each candidate goes to the `AsyncChecker` the moment its group arrives, so Lean checks early groups while later
ones still generate.

The rule: a rollout does not depend on the order in which groups finish. Sequences are placed by problem, every
sample is drawn with its own seed (`sample_seed` of the step's seed), and a check that failed for the machine's
reasons (an infra verdict, or the checker raising) is marked as such, never scored as a failed proof.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from lean_env.verdict import Status
from prover.errors import ProverError
from prover.generate.base import Completion, SamplingParams, first_stop
from prover.generate.hf import TransformersBackend
from prover.runner import AsyncChecker, Engine
from prover.train.common import is_moe


@dataclass
class Rollout:
    """One step's samples: per sequence its problem index, prompt/completion ids, text, candidate proof."""

    step: int
    problems: list[Any]
    group: list[int]  # problem index (into `problems`) of each sequence
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    texts: list[str]
    proofs: list[str | None]
    old_logprobs: list[torch.Tensor] = field(default_factory=list)
    gen_s: float = 0.0


@dataclass(frozen=True)
class Outcome:
    """What Lean said about one sequence's candidate, as the reward reads it."""

    proved: bool = False
    infra: str = ""  # why the check failed for the machine's reasons ("" when Lean judged the proof)


# ------------------------------------------------------------------------------------------- rollout backends
class LatentCacheBackend(TransformersBackend):
    """Our DeepSeek-V3 policy as a streaming backend: `TransformersBackend`'s queue batches whatever groups are
    pending, and the rows are drawn by the model's own latent-cache `generate` (its forward has no HF cache API),
    one generator per row, so a sample does not depend on the batch it happened to run in. A row ends at eos or
    at its first stop string, and a group is answered as soon as its own rows have ended, so Lean can start on
    it while the rest of the batch still decodes."""

    STOP_WINDOW = 16  # tokens decoded per step to spot a stop string (the final cut reads the whole text)

    def _generate_rows(self, prompts: list[list[int]], seeds: list[int | None], params: SamplingParams,
                       on_row: Callable[[int, Completion], None] | None = None) -> list[Completion]:
        tok, dev = self.tokenizer, self.device
        pad, eos = tok.pad_token_id, tok.eos_token_id
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=dev)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=dev)
        gens = [None if s is None else torch.Generator(device=dev).manual_seed(s) for s in seeds]
        tokens: list[list[int]] = [[] for _ in prompts]
        results: list[Completion | None] = [None] * len(prompts)

        def finish(i: int) -> None:
            cut, text = _cut_at_stop(tokens[i], params.stop, tok, eos)
            results[i] = Completion(text=text, prompt_tokens=len(prompts[i]), completion_tokens=len(cut),
                                    token_ids=cut, finish_reason="stop" if len(cut) < len(tokens[i]) or
                                    (tokens[i] and tokens[i][-1] == eos) else "length")
            if on_row is not None:
                on_row(i, results[i])

        def on_step(nxt: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
            ended = done.tolist()
            for i, t in enumerate(nxt.tolist()):
                if results[i] is not None:
                    continue
                tokens[i].append(t)  # the eos too: it is trained on, as sampled
                if not ended[i] and params.stop and first_stop(tok.decode(
                        tokens[i][-self.STOP_WINDOW:], skip_special_tokens=True), params.stop) is not None:
                    ended[i] = True
                if ended[i]:
                    finish(i)
            return torch.tensor(ended, device=done.device)

        with torch.inference_mode():
            self.model.generate(ids, max_new_tokens=params.max_tokens, attention_mask=mask,
                                temperature=params.temperature, top_p=params.top_p, eos_token_id=eos,
                                pad_token_id=pad, generator=gens, on_step=on_step)
        for i in range(len(prompts)):
            if results[i] is None:  # ran to max_tokens
                finish(i)
        return results


def _cut_at_stop(tokens: list[int], stop: tuple[str, ...], tok: Any, eos: int) -> tuple[list[int], str]:
    """Text up to the first stop string, and the shortest token prefix that reaches it: the tokens where the
    other backends end the sequence. Without the cut, GRPO would train on tokens generated past the stop,
    which the reward never saw."""

    def decode(ids: list[int]) -> str:
        return tok.decode([t for t in ids if t != eos], skip_special_tokens=True)

    text = decode(tokens)
    cut = first_stop(text, stop)
    if cut is None:
        return tokens, text
    lo, hi = 1, len(tokens)  # a stop string, once in the text of a prefix, stays in every longer one
    while lo < hi:
        mid = (lo + hi) // 2
        if first_stop(decode(tokens[:mid]), stop) is not None:
            hi = mid
        else:
            lo = mid + 1
    return tokens[:lo], text[:cut]


class PolicySampler:
    """Rollouts from the in-memory policy: `prover.generate`'s transformers backend for HF models, the latent-cache
    backend for our DeepSeek-V3. Both read the live weights, so there is nothing to sync after an update."""

    def __init__(self, model: Any, tokenizer: Any, device: torch.device, batch_size: int = 64):
        kind = LatentCacheBackend if is_moe(model) else TransformersBackend
        self.backend = kind(model, tokenizer=tokenizer, device=str(device), batch_size=batch_size)

    def format_chat(self, text: str) -> str:
        return self.backend.format_chat(text)

    def sync(self) -> None:
        """Nothing to do: this sampler reads the live weights."""

    def close(self) -> None:
        self.backend.close()


class VLLMSampler:
    """Rollouts from a vLLM engine on the GPU; after each optimizer step the policy's weights are pushed into the
    engine (`apply_model` + the vLLM model's `load_weights`). Not exercised by the CPU test suite."""

    def __init__(self, model: Any, tokenizer: Any, model_path: str, gpu_memory_utilization: float = 0.4):
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # apply_model ships a closure
        from prover.generate.vllm_engine import VLLMBackend

        self.model, self.tokenizer = model, tokenizer
        self.backend = VLLMBackend(model_path, gpu_memory_utilization=gpu_memory_utilization)

    def format_chat(self, text: str) -> str:
        return self.backend.format_chat(text)

    def sync(self) -> None:
        if is_moe(self.model):
            from prover.model.checkpoint import to_hf_tensors

            weights = [(k, v.detach()) for k, v in to_hf_tensors(self.model)]
        else:
            weights = [(k, v.detach()) for k, v in self.model.state_dict().items()]
        self.backend.apply_model(lambda m: m.load_weights(iter(weights)))
        self.backend.reset_prefix_cache()

    def close(self) -> None:
        self.backend.close()


def make_sampler(kind: str, model: Any, tokenizer: Any, model_path: str, device: torch.device,
                 batch_size: int = 64) -> PolicySampler | VLLMSampler:
    if kind == "vllm" or (kind == "auto" and device.type == "cuda" and _has_vllm()):
        return VLLMSampler(model, tokenizer, model_path)
    if kind not in ("auto", "transformers"):
        raise ProverError(f"unknown sampler {kind!r} (auto, transformers, vllm)")
    return PolicySampler(model, tokenizer, device, batch_size)


def _has_vllm() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


# ------------------------------------------------------------------------------------------- rewards
SETTLED = (Status.PROVED, Status.FAILED, Status.UNSOUND)  # Lean's verdict on this text will not change


class RewardChecker:
    """Proved or not, per (problem, candidate), through an `AsyncChecker`: each distinct pair is checked once, even
    when several groups hold it at the same time (a settled verdict is remembered; timeouts and crashes are not).
    A checker that raises (a remote verifier gone, a pool shut down) costs the candidate an infra outcome, not the
    run: the machine failed, not the proof."""

    def __init__(self, checker: AsyncChecker):
        self.checker = checker
        self._settled: dict[tuple[str, str], bool] = {}
        self._running: dict[tuple[str, str], asyncio.Future[Outcome]] = {}

    async def check(self, problem: Any, proof: str | None) -> Outcome:
        if proof is None:
            return Outcome()
        key = (problem.name, proof)
        if key in self._settled:
            return Outcome(self._settled[key])
        running = self._running.get(key)
        if running is None:
            running = self._running[key] = asyncio.ensure_future(self._verify(key, problem, proof))
        return await asyncio.shield(running)  # one waiter cancelled must not cancel the others' check

    async def _verify(self, key: tuple[str, str], problem: Any, proof: str) -> Outcome:
        try:
            verdict = await self.checker.verify(problem, proof)
        except Exception as e:  # noqa: BLE001 -- any checker error is the machine's, reported per candidate
            return Outcome(infra=f"{type(e).__name__}: {e}")
        finally:
            self._running.pop(key, None)
        if verdict.infra:
            return Outcome(infra="; ".join(verdict.reasons) or verdict.status.value)
        if verdict.status in SETTLED:
            self._settled[key] = verdict.proved
        return Outcome(verdict.proved)


# ------------------------------------------------------------------------------------------- one rollout
@dataclass
class StreamedRollout:
    """A rollout whose generations are all in; `outcomes` resolves once Lean has judged every candidate."""

    rollout: Rollout
    outcomes: asyncio.Future[list[Outcome]]
    verify_span: list[float]  # [first check started, last check finished] (monotonic), filled as Lean works


async def stream_rollout(engine: Engine, rewards: RewardChecker, step: int, problems: list[Any], prompts: list[str],
                         params: SamplingParams, group_size: int, tokenize: Callable[[str], list[int]],
                         extract: Callable[[str, Any], str | None]) -> StreamedRollout:
    """Every problem's `group_size` samples requested at once through `engine`; each group's candidates start
    their checks as soon as it arrives. Returns when every generation is in (checks may still be running)."""
    t0 = time.perf_counter()
    span = [0.0, 0.0]

    async def timed(problem: Any, proof: str | None) -> Outcome:
        if proof is not None and not span[0]:
            span[0] = time.monotonic()
        outcome = await rewards.check(problem, proof)
        span[1] = max(span[1], time.monotonic())
        return outcome

    async def one_group(problem: Any, prompt: str) -> tuple[list[Completion], list[str | None], list[asyncio.Task]]:
        completions = await engine.generate(prompt, params, n=group_size)
        proofs = [extract(c.text, problem) for c in completions]
        return completions, proofs, [asyncio.ensure_future(timed(problem, p)) for p in proofs]  # checks start now

    try:
        async with asyncio.TaskGroup() as tg:  # a failed generation cancels the other groups' requests
            groups = [tg.create_task(one_group(p, prompt)) for p, prompt in zip(problems, prompts, strict=True)]
    except ExceptionGroup as failed:  # the error itself (a user error stays one line), not its group
        raise failed.exceptions[0] from None
    r = Rollout(step, problems, [], [], [], [], [])
    checks: list[asyncio.Task] = []
    for i, (prompt, task) in enumerate(zip(prompts, groups, strict=True)):
        completions, proofs, group_checks = task.result()
        prompt_ids = tokenize(prompt)
        for c, proof in zip(completions, proofs, strict=True):
            r.group.append(i)
            r.prompt_ids.append(prompt_ids)
            r.completion_ids.append(list(c.token_ids))
            r.texts.append(c.text)
            r.proofs.append(proof)
        checks += group_checks
    r.gen_s = time.perf_counter() - t0
    return StreamedRollout(r, asyncio.gather(*checks), span)
