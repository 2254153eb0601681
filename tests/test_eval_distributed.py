"""The driver on generic work units in one process: resume, no double counting. (Ray: test_eval_ray.py.)

`TinyRecipe` is also what the Ray tests run: tiny units (an optional short sleep, so that several are in
flight when an actor is killed) whose verdict is checkable (odd attempt indices are 'proved'). Its `run_many`
runs a job of several units of one problem in one call, as `prover.batch.ProveRecipe` draws them in one
generation call; the generator remembers every job it got.
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
        self.jobs: list[tuple[str, list[int]]] = []

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

    def run_many(self, generator: Counter, checker, problem: Item, indices: list[int]) -> list[Attempt]:
        generator.jobs.append((problem.name, list(indices)))
        return [self.run(generator, checker, problem, i) for i in indices]


def units(problems: int, samples: int) -> list[WorkUnit]:
    return [WorkUnit(Item(f"p{i}"), j) for j in range(samples) for i in range(problems)]


def problem_major_units(problems: int, samples: int) -> list[WorkUnit]:
    return [WorkUnit(Item(f"p{i}"), j) for i in range(problems) for j in range(samples)]


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
        assert executor.work.generator.runs == 7  # only the missing units ran
        assert keys(store, run_id) == sorted((f"p{i}", j) for i in range(4) for j in range(3))
        proved = [a for a in store.attempts(run_id) if a.status == "proved"]
        assert len(proved) == 4  # index 1 of each problem


def test_local_jobs_group_a_problems_pending_units_and_resume(tmp_path):
    with RunStore(tmp_path / "run") as store:
        run_id = store.start_run("run", {"samples": 5})
        for unit in problem_major_units(2, 5):  # some attempts already done, leaving gaps
            if unit.index in (1, 3):
                store.record(run_id, TinyRecipe().run(Counter(), ParityChecker(), unit.problem, unit.index))
        executor = LocalExecutor(TinyRecipe(), group=2)
        stats = drive(problem_major_units(2, 5), executor, store, run_id)
        assert (stats.recorded, stats.skipped, stats.duplicates) == (6, 4, 0)
        # pending indices 0, 2, 4 of each problem: jobs of at most 2 units, never mixing problems
        assert executor.work.generator.jobs == [("p0", [0, 2]), ("p1", [0, 2])]  # single units go through `run`
        assert executor.work.generator.runs == 6
        assert keys(store, run_id) == sorted((f"p{i}", j) for i in range(2) for j in range(5))
