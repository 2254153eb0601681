"""FAKE generation engines and a FAKE Lean checker with fixed latencies, for the runner's benchmarks and tests: no
model, no Lean. `FakeLatencyBackend` answers every request after `latency_s` (asyncio sleep, up to
`max_in_flight` at once, like a server with continuous batching); `FakeBurstBackend` answers requests in bursts
(all at once, as a random-weight model's do) and takes time to close; `FakeLatencyChecker` takes `latency_s` of a
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


class FakeBurstBackend:
    """FAKE engine whose answers all arrive at once, as a random-weight checkpoint's do when every sample runs
    to --max-tokens: requests wait until `burst` of them are pending, then all are answered together with
    `texts` (cycled per request). `close()` takes `close_s` of a thread (vLLM's shutdown takes seconds) and
    records when it started and ended, and whether a request came after it started."""

    model_id = "fake-burst-backend"

    def __init__(self, texts: list[str], burst: int, close_s: float = 0.0, max_in_flight: int = 1024,
                 tokens: int = 512):
        self.texts, self.burst, self.close_s, self.max_in_flight, self.tokens = texts, burst, close_s, max_in_flight, tokens
        self.requests = 0
        self.last_answer: float | None = None  # perf_counter of the last burst's answer
        self.closed: tuple[float, float] | None = None  # (start, end) of close()
        self.requests_after_close = 0  # requests that arrived once close() had begun (must stay 0)
        self._closing = False
        self._pending: list[asyncio.Future] = []

    async def agenerate(self, prompt: Any, params: SamplingParams, n: int = 1) -> list[Completion]:
        if self._closing:
            self.requests_after_close += 1
        k = self.requests
        self.requests += 1
        ready = asyncio.get_running_loop().create_future()
        self._pending.append(ready)
        if len(self._pending) >= self.burst:
            self.last_answer = time.perf_counter()
            for f in self._pending:
                if not f.done():
                    f.set_result(None)
            self._pending = []
        await ready
        return [Completion(self.texts[(k + j) % len(self.texts)], 32, self.tokens, [-0.1] * self.tokens, "length")
                for j in range(n)]

    def close(self) -> None:
        self._closing = True
        t0 = time.perf_counter()
        time.sleep(self.close_s)
        self.closed = (t0, time.perf_counter())
