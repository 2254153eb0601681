"""The driver on generic work units in one process: resume, no double counting. (Ray: test_eval_ray.py.)

`TinyRecipe` is also what the Ray tests run: tiny units (an optional short sleep, so that several are in
flight when an actor is killed) whose verdict is checkable (odd attempt indices are 'proved').
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from data.store import Attempt, RunStore
from eval.distributed import LocalExecutor, WorkUnit, drive

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Item:
    name: str
    split: str = "test"


class Counter:
    """The 'generator': counts the units it ran, so a test can see work really happened in the actor."""

    def __init__(self):
        self.runs = 0

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
    broken_checker: bool = False

    def make_generator(self) -> Counter:
        return Counter()

    def make_checker(self) -> ParityChecker:
        return BrokenChecker() if self.broken_checker else ParityChecker()

    def run(self, generator: Counter, checker, problem: Item, index: int) -> Attempt:
        time.sleep(self.delay_s)
        generator.runs += 1
        status = checker.check(index)
        return Attempt(problem=problem.name, index=index, text=f"proof {index} by pid {os.getpid()}",
                       status=status, verdict={"status": status}, split=problem.split)


def units(problems: int, samples: int) -> list[WorkUnit]:
    return [WorkUnit(Item(f"p{i}"), j) for j in range(samples) for i in range(problems)]


def keys(store: RunStore, run_id) -> list[tuple[str, int]]:
    return sorted((a.problem, a.index) for a in store.attempts(run_id))


def test_local_drive_resumes_without_double_counting(tmp_path):
    with RunStore(tmp_path / "run") as store:
        run_id = store.start_run("run", {"samples": 3})
        first = drive(units(4, 3)[:5], LocalExecutor(TinyRecipe()), store, run_id)
        assert (first.recorded, first.skipped) == (5, 0)
    with RunStore(tmp_path / "run") as store:  # a new process would see the same: resume from the store
        run_id = store.start_run("run", {"samples": 3})
        executor = LocalExecutor(TinyRecipe())
        second = drive([*units(4, 3), *units(4, 3)[:2]], executor, store, run_id)  # duplicates in the input too
        assert (second.recorded, second.skipped) == (7, 7)
        assert executor._generator.runs == 7  # only the missing units ran
        assert keys(store, run_id) == sorted((f"p{i}", j) for i in range(4) for j in range(3))
        proved = [a for a in store.attempts(run_id) if a.status == "proved"]
        assert len(proved) == 4  # index 1 of each problem
