"""FAKE generation engine and FAKE Lean checker with fixed latencies, for the runner's benchmark and tests: no
model, no Lean. `FakeLatencyBackend` answers every request after `latency_s` (asyncio sleep, up to
`max_in_flight` at once, like a server with continuous batching); `FakeLatencyChecker` takes `latency_s` of a
thread per proof (like a REPL worker) and calls a proof 'proved' when it ends in `decide`."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from lean_env.verdict import Status, Verdict
from prover.generate.base import Completion, SamplingParams


class FakeLatencyBackend:
    model_id = "fake-latency-backend"

    def __init__(self, latency_s: float = 0.01, max_in_flight: int = 256, tokens: int = 64):
        self.latency_s, self.max_in_flight, self.tokens = latency_s, max_in_flight, tokens
        self.requests = 0
        self.busy_s = 0.0  # summed request time (what one request at a time would take)

    async def agenerate(self, prompt: Any, params: SamplingParams, n: int = 1) -> list[Completion]:
        self.requests += 1
        t0 = time.perf_counter()
        await asyncio.sleep(self.latency_s)
        self.busy_s += time.perf_counter() - t0
        seed = params.seed or 0
        return [Completion(f"  {'decide' if (seed + j) % 4 == 0 else 'simp'}\n```", 32, self.tokens,
                           [-0.1] * self.tokens) for j in range(n)]

    def close(self) -> None:
        pass


class FakeLatencyChecker:
    """Verdicts from the proof's last tactic, after `latency_s` per proof on `workers` threads at most."""

    def __init__(self, latency_s: float = 0.01, workers: int = 8):
        self.latency_s = latency_s
        self._slots = threading.Semaphore(workers)
        self.checked = 0

    def verify_many(self, items: list[tuple[Any, str]]) -> list[Verdict]:
        out = []
        for _, text in items:
            with self._slots:
                time.sleep(self.latency_s)
                self.checked += 1
            proved = text.rstrip().endswith("decide")
            out.append(Verdict(Status.PROVED if proved else Status.FAILED, wall_time=self.latency_s,
                               reasons=[] if proved else ["fake: not decide"]))
        return out

    def close(self) -> None:
        pass
