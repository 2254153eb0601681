"""The run's tail: the engine is closed in the background once no attempt may ask it for anything (every unit
started, every live attempt past its last generation), while the last checks go on; never while a generation may
still be asked for (a `repair` round), and nothing is lost.

Generation is `FakeBurstBackend` (a FAKE engine, answering each request at once, whose close takes time and
notes any request made after it began); Lean is `FakeLatencyChecker` (a FAKE checker taking time per proof)."""

from __future__ import annotations

import time

import pytest
from fakes.fake_engine import FakeBurstBackend, FakeLatencyChecker

from data.problem import Problem
from data.store import RunStore
from prover.generate.base import SamplingParams
from prover.recipe import ProveRecipe
from prover.runner import Engine, LocalExecutor, WorkUnit, run_async, run_units


class TimedChecker(FakeLatencyChecker):
    """The FAKE checker, noting when each verdict was given, and whether it was closed."""

    def __init__(self, latency_s: float):
        super().__init__(latency_s, workers=2)
        self.verdict_times: list[float] = []
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def verify_many(self, items):
        out = super().verify_many(items)
        self.verdict_times += [time.perf_counter()] * len(out)
        return out


class TailRecipe(ProveRecipe):
    """The production recipe over the fakes above (built by the executor, which therefore owns the engine)."""

    backend: FakeBurstBackend
    checker: TimedChecker

    def make_generator(self):
        return TailRecipe.backend

    def make_checker(self):
        return TailRecipe.checker


def run(strategy: str, tmp_path, *, budget: dict, options: dict | None = None, close_s: float = 0.2,
        latency_s: float = 0.02, units: int = 8):
    TailRecipe.backend = FakeBurstBackend(["  simp\n```"], burst=1, close_s=close_s)
    TailRecipe.checker = TimedChecker(latency_s)
    recipe = TailRecipe(strategy, budget, seed=0, options=options or {})
    problems = [Problem(f"p{i}", f"theorem p{i} (n : ℕ) : n + {i} = {i} + n := by") for i in range(units // 2)]
    with RunStore(tmp_path / "run") as store:
        run_id = store.start_run("run", {})
        executor = LocalExecutor(recipe)
        try:
            stats = run_units((WorkUnit(p, i) for i in range(2) for p in problems), executor, store, run_id)
        finally:
            executor.close()
        return stats, store.attempts(run_id)


def test_sample_closes_the_engine_before_the_last_verdict(tmp_path):
    stats, attempts = run("sample", tmp_path, budget={"samples": 1}, latency_s=0.05)
    backend, checker = TailRecipe.backend, TailRecipe.checker
    assert stats.recorded == len(attempts) == 8  # nothing lost
    assert all(a.status == "failed" and a.completion_tokens > 0 for a in attempts)
    assert backend.requests == 8 and backend.requests_after_close == 0
    close_start, _ = backend.closed
    assert close_start < max(checker.verdict_times)  # the close overlapped the checks
    assert close_start >= backend.last_answer  # ... and began only once the last generation had returned


def test_repair_keeps_the_engine_until_its_last_round(tmp_path):
    stats, attempts = run("repair", tmp_path, budget={"samples": 3}, options={"rounds": 2})
    backend, checker = TailRecipe.backend, TailRecipe.checker
    assert stats.recorded == len(attempts) == 8
    assert backend.requests == 3 * 8 and backend.requests_after_close == 0  # every round reached an open engine
    close_start, _ = backend.closed
    assert close_start >= max(checker.verdict_times)  # a repair attempt may generate until it ends


@pytest.mark.parametrize("own_engine", [False, True])
def test_an_engine_given_to_the_executor_is_left_to_its_owner_unless_given_away(tmp_path, own_engine):
    backend = FakeBurstBackend(["  simp\n```"], burst=1)
    with RunStore(tmp_path / "run") as store:
        run_id = store.start_run("run", {})
        executor = LocalExecutor(ProveRecipe("sample", {"samples": 1}), engine=Engine(backend),
                                 checker=FakeLatencyChecker(0.0), own_engine=own_engine)
        run_units([WorkUnit(Problem("p", "theorem p : 1 = 1 := by"), i) for i in range(3)], executor, store, run_id)
        closed_by_the_run = executor._early_close is not None  # the run began the close (its thread may still run)
        executor.close()
    assert backend.requests == 3 and backend.requests_after_close == 0
    assert closed_by_the_run == own_engine  # given away (`subgoal prove`'s): closed early, before `close()`
    assert (backend.closed is not None) == own_engine


def test_an_error_in_the_early_close_surfaces_once(tmp_path):
    class FailingClose(FakeBurstBackend):
        def close(self):
            super().close()
            raise RuntimeError("engine core died while shutting down")

    TailRecipe.backend = FailingClose(["  simp\n```"], burst=1)
    TailRecipe.checker = TimedChecker(0.0)
    with RunStore(tmp_path / "run") as store:
        run_id = store.start_run("run", {})
        executor = LocalExecutor(TailRecipe("sample", {"samples": 1}))
        stats = run_units([WorkUnit(Problem("p", "theorem p : 1 = 1 := by"), i) for i in range(2)], executor,
                          store, run_id)
        with pytest.raises(RuntimeError, match="shutting down"):
            executor.close()
        executor.close()  # once: the second close has nothing left to raise
    assert stats.recorded == 2
    assert TailRecipe.checker.closed  # the rest is closed all the same (a verifier's REPLs are not left running)


def test_a_generation_after_the_last_word_raises_and_seal_waits_for_open_handles():
    backend = FakeBurstBackend(["x"], burst=1)
    engine = Engine(backend)
    idle: list[int] = []
    first, second = engine.attempt(), engine.attempt()

    async def main():
        request = first.generate("p", SamplingParams(), 1)  # counted when asked for, though not yet run
        first.done_generating()
        engine.seal(lambda: idle.append(engine.may_generate))
        assert not idle  # `first`'s request and `second` are still open
        await request
        assert not idle
        second.done_generating()
        assert idle == [0]
        with pytest.raises(RuntimeError, match="done generating"):
            second.generate("p", SamplingParams(), 1)

    run_async(main())
    assert backend.requests == 1
