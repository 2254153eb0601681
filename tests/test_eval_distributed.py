"""The driver on generic work units in one process: resume, no double counting, bounded concurrency, events of
different problems interleaved. (Ray: test_eval_ray.py.)

`TinyRecipe` is also what the Ray tests run: tiny attempts (an optional short asynchronous sleep, so that
several are in flight when an actor is killed) whose verdict is checkable (odd attempt indices are 'proved'),
checked through the checker exactly as `prover.recipe.ProveRecipe` checks through the Lean verifier.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from data.store import Attempt, RunStore
from prover.runner import LocalExecutor, WorkUnit, run_units

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Item:
    name: str
    split: str = "test"


class Counter:
    """The 'generator': counts the units it ran, so a test can see work really happened in the actor."""

    model_id = "counter"

    def __init__(self):
        self.runs = 0
        self.live = 0  # attempts running now
        self.most_live = 0

    def close(self) -> None:
        pass


class ParityChecker:
    """The 'checker': an index is 'proved' when it is odd (a deterministic, checkable verdict)."""

    def check(self, index: int) -> str:
        return "proved" if index % 2 else "failed"


class BrokenChecker:
    def __init__(self):
        from lean_env.errors import LeanNotFound

        raise LeanNotFound("Lean toolchain not found (test)")


@dataclass
class TinyRecipe:
    delay_s: float = 0.0
    stagger_s: float = 0.0  # attempt i takes delay_s + i * stagger_s: some are still running when others finish
    broken_checker: bool = False

    def make_generator(self) -> Counter:
        return Counter()

    def make_checker(self) -> ParityChecker:
        return BrokenChecker() if self.broken_checker else ParityChecker()

    async def arun(self, engine, checker, problem: Item, index: int) -> Attempt:
        counter = engine.raw
        counter.runs += 1
        counter.live += 1
        counter.most_live = max(counter.most_live, counter.live)
        try:
            await asyncio.sleep(self.delay_s + index * self.stagger_s)
            status = await checker.check(index)
        finally:
            counter.live -= 1
        return Attempt(problem=problem.name, index=index, text=f"proof {index} by pid {os.getpid()}",
                       status=status, verdict={"status": status}, split=problem.split)


def tiny_attempt(problem: Item, index: int) -> Attempt:
    status = ParityChecker().check(index)
    return Attempt(problem=problem.name, index=index, text=f"proof {index}", status=status,
                   verdict={"status": status}, split=problem.split)


def units(problems: int, samples: int) -> list[WorkUnit]:
    return [WorkUnit(Item(f"p{i}"), j) for j in range(samples) for i in range(problems)]


def problem_major_units(problems: int, samples: int) -> list[WorkUnit]:
    return [WorkUnit(Item(f"p{i}"), j) for i in range(problems) for j in range(samples)]


def keys(store: RunStore, run_id) -> list[tuple[str, int]]:
    return sorted((a.problem, a.index) for a in store.attempts(run_id))


def test_local_drive_resumes_without_double_counting(tmp_path):
    with RunStore(tmp_path / "run") as store:
        run_id = store.start_run("run", {"samples": 3})
        first = run_units(units(4, 3)[:5], LocalExecutor(TinyRecipe()), store, run_id)
        assert (first.recorded, first.skipped) == (5, 0)
    with RunStore(tmp_path / "run") as store:  # a new process would see the same: resume from the store
        run_id = store.start_run("run", {"samples": 3})
        executor = LocalExecutor(TinyRecipe())
        second = run_units([*units(4, 3), *units(4, 3)[:2]], executor, store, run_id)  # duplicates in the input too
        assert (second.recorded, second.skipped) == (7, 7)
        assert executor.engine.raw.runs == 7  # only the missing units ran
        assert keys(store, run_id) == sorted((f"p{i}", j) for i in range(4) for j in range(3))
        proved = [a for a in store.attempts(run_id) if a.status == "proved"]
        assert len(proved) == 4  # index 1 of each problem


def test_local_attempts_run_concurrently_up_to_the_bound_and_fill_gaps_on_resume(tmp_path):
    with RunStore(tmp_path / "run") as store:
        run_id = store.start_run("run", {"samples": 5})
        for unit in problem_major_units(2, 5):  # some attempts already done, leaving gaps
            if unit.index in (1, 3):
                store.record(run_id, tiny_attempt(unit.problem, unit.index))
        executor = LocalExecutor(TinyRecipe(delay_s=0.02), max_live=3)
        stats = run_units(problem_major_units(2, 5), executor, store, run_id)
        assert (stats.recorded, stats.skipped, stats.duplicates) == (6, 4, 0)
        assert executor.engine.raw.runs == 6
        assert executor.engine.raw.most_live == 3  # three attempts at once, never more
        assert keys(store, run_id) == sorted((f"p{i}", j) for i in range(2) for j in range(5))
