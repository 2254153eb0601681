"""Generic work units for the driver's tests, in one process (test_eval_distributed.py) and on Ray (test_eval_ray.py).

`TinyRecipe` runs tiny attempts (an optional short asynchronous sleep, so that several are in flight when an actor
is killed) whose verdict is checkable (odd attempt indices are 'proved'), checked through the checker exactly as
`prover.recipe.ProveRecipe` checks through the Lean verifier."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from data.store import Attempt, RunStore
from prover.runner import WorkUnit


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
