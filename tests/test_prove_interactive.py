"""The interactive `prove` of one theorem: its k attempts run at once through the shared engine (one batch of
generation, not k in turn), the first proof cancels the rest, and the engine and checker serve one event loop per
theorem in turn (asyncio primitives made in one loop fail in another once they must wait)."""

from __future__ import annotations

import asyncio

from fakes.fake_engine import FakeLatencyBackend, FakeLatencyChecker

from data.problem import Problem
from eval.cli.live_view import ProveSession
from prover.generate.base import SamplingParams
from prover.recipe import ProveRecipe
from prover.runner import AsyncChecker, Engine, run_async

STATEMENT = "theorem t (a b : ℕ) : a + b = b + a := by"


class CountingBackend(FakeLatencyBackend):
    """FAKE: the fixed-latency backend, counting the requests it holds at once."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.now = self.most = 0

    async def agenerate(self, prompt, params, n=1):
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            return await super().agenerate(prompt, params, n)
        finally:
            self.now -= 1


def session(backend, attempts: int, name: str = "t") -> ProveSession:
    recipe = ProveRecipe(strategy="sample", budget={"samples": 1}, seed=0)
    problem = Problem(name=name, formal_statement=STATEMENT)
    return ProveSession(problem, recipe, Engine(backend), AsyncChecker(FakeLatencyChecker(latency_s=0.0)), attempts)


def test_a_theorems_attempts_run_at_once_and_the_first_proof_stops_them():
    backend = CountingBackend(latency_s=0.2)
    s = session(backend, attempts=8)
    result = s.run()
    # The fake proves a sample whose seed is 0 mod 4: with 8 attempts some attempt proves.
    assert result is not None and result.proved
    assert backend.most == 8  # all eight in flight together (one at a time: most == 1)
    assert s.results[-1] is result and len(s.results) <= 8


def test_one_engine_and_checker_serve_one_loop_after_another_under_contention():
    backend = FakeLatencyBackend(latency_s=0.05)
    engine = Engine(backend, max_in_flight=1)  # every second request waits: the primitives bind to their loop
    checker = AsyncChecker(FakeLatencyChecker(latency_s=0.0), capacity=1)
    params = SamplingParams(max_tokens=8, seed=0)
    problem = Problem(name="t", formal_statement=STATEMENT)

    async def burst():
        outs = await asyncio.gather(*(engine.generate("p", params) for _ in range(3)))
        await asyncio.gather(*(checker.verify_many([(problem, "  decide")]) for _ in range(3)))
        return outs

    for _ in range(3):  # three loops in turn, as the interactive prove makes for three theorems
        assert len(run_async(burst())) == 3
    assert engine.in_flight == 0
