"""FAKE generation backend for GRPO rollout tests. NOT A MODEL: each sample is a tactic picked by a hash of
(prompt, the sample's seed), so a sample depends on its seed and prompt only, never on its batch or on timing,
as the real backends promise. `delay_s` per request stands in for generation time; `events` records when each
request started and finished (the overlap test reads it)."""

from __future__ import annotations

import asyncio
import threading
import time

from prover.generate.base import Completion, SamplingParams, derive_seed, sample_seeds


class FakeRolloutBackend:
    model_id = "fake-rollout-backend"

    def __init__(self, tokenizer, tactics: list[str], delay_s: float = 0.0, max_in_flight: int = 64):
        self.tokenizer, self.tactics, self.delay_s, self.max_in_flight = tokenizer, tactics, delay_s, max_in_flight
        self.events: list[tuple[float, str, str]] = []  # (monotonic time, "start"|"end", prompt)
        self._lock = threading.Lock()

    def format_chat(self, text: str) -> str:
        return text

    def completions(self, prompt: str, params: SamplingParams, n: int) -> list[Completion]:
        out = []
        for seed in sample_seeds(params, n):
            tactic = self.tactics[derive_seed(prompt, seed or 0) % len(self.tactics)]
            text = f"\n  {tactic}\n```"
            ids = self.tokenizer(tactic, add_special_tokens=False)["input_ids"]
            out.append(Completion(text=text, prompt_tokens=0, completion_tokens=len(ids), token_ids=ids))
        return out

    def generate(self, prompts: list[str], params: SamplingParams, n: int = 1) -> list[list[Completion]]:
        return [self.completions(p, params, n) for p in prompts]

    async def agenerate(self, prompt: str, params: SamplingParams, n: int = 1) -> list[Completion]:
        self._note("start", prompt)
        await asyncio.sleep(self.delay_s)
        self._note("end", prompt)
        return self.completions(prompt, params, n)

    def _note(self, what: str, prompt: str) -> None:
        with self._lock:
            self.events.append((time.monotonic(), what, prompt))

    def close(self) -> None:
        pass


class FakeRolloutSampler:
    """The trainer's sampler seam (`backend`, `format_chat`, `sync`) over a FakeRolloutBackend."""

    def __init__(self, backend: FakeRolloutBackend):
        self.backend = backend
        self.syncs = 0

    def format_chat(self, text: str) -> str:
        return text

    def sync(self) -> None:
        self.syncs += 1

    def close(self) -> None:
        pass


class FakeChecker:
    """A checker in front of a real `Verifier` (over the FAKE Lean in tests): optional `delay_s` per check, the
    times each check started and finished in `events`, and `broken(proof)` checks that fail for the machine's
    reasons, either raising (`raises`, as a remote verifier that cannot be reached) or as an infra verdict."""

    def __init__(self, inner, delay_s: float = 0.0, broken=lambda proof: False, raises: bool = True):
        self.inner, self.delay_s, self.broken, self.raises = inner, delay_s, broken, raises
        self.events: list[tuple[float, str, str]] = []  # (monotonic time, "start"|"end", proof)
        self._lock = threading.Lock()

    def verify(self, problem, proof: str):
        from lean_env.verdict import Status, Verdict

        with self._lock:
            self.events.append((time.monotonic(), "start", proof))
        time.sleep(self.delay_s)
        try:
            if self.broken(proof):
                if self.raises:
                    raise ConnectionError("fake checker: the verification server cannot be reached")
                return Verdict(Status.CRASHED, reasons=["infrastructure: fake REPL would not start"], infra=True)
            return self.inner.verify(problem, proof)
        finally:
            with self._lock:
                self.events.append((time.monotonic(), "end", proof))
