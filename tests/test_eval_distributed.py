"""The driver and its executors on generic work units: resume, no double counting, Ray with actors killed.

One real local Ray cluster for the module (`ray.init(num_cpus=2)`); units are tiny (a short sleep so that
several are in flight when an actor is killed).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from data.store import Attempt, RunStore
from eval.distributed import LocalExecutor, RayExecutor, WorkUnit, drive

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


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"}})
    yield ray
    ray.shutdown()


def test_ray_every_unit_exactly_once_with_a_worker_and_a_checker_killed(ray_cluster, tmp_path):
    ray = ray_cluster
    executor = RayExecutor(TinyRecipe(delay_s=0.15), workers=2, max_in_flight=4)
    killed: list[str] = []

    def kill_mid_run(unit: WorkUnit, attempt: Attempt) -> None:
        if not killed:  # after the first result, with up to 4 units in flight: kill a generation worker
            ray.kill(executor.workers[0])
            killed.append("worker")
        elif len(killed) == 1 and len(seen) >= 8:  # later: kill the node's checker (REPL-pool actor)
            ray.kill(next(iter(executor.checkers.values())))
            killed.append("checker")
        seen.append(unit.key)

    seen: list[tuple[str, int]] = []
    try:
        with RunStore(tmp_path / "run") as store:
            run_id = store.start_run("run", {"samples": 4})
            stats = drive(units(4, 4), executor, store, run_id, on_result=kill_mid_run)
            assert killed == ["worker", "checker"]
            assert executor.replaced >= 2  # the dead worker and the dead checker were replaced
            assert executor.retried >= 1  # units in flight on the dead actors ran again elsewhere
            assert stats.recorded == 16 and stats.duplicates == 0
            assert sorted(seen) == keys(store, run_id) == sorted((f"p{i}", j) for i in range(4) for j in range(4))
            assert sum(a.status == "proved" for a in store.attempts(run_id)) == 8
            pids = {a.text.rsplit(" ", 1)[1] for a in store.attempts(run_id)}
            assert str(os.getpid()) not in pids  # the work ran in actors, not in the driver
    finally:
        executor.close()


def test_ray_actor_construction_error_reaches_the_user_as_itself(ray_cluster):
    from lean_env.errors import LeanNotFound

    with pytest.raises(LeanNotFound, match="Lean toolchain not found"):
        RayExecutor(TinyRecipe(broken_checker=True), workers=1)
