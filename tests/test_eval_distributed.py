"""The driver on generic work units in one process: resume, no double counting, bounded concurrency, events of
different problems interleaved, over the tiny units of tests/helpers/tiny_runs.py. (Ray: test_eval_ray.py.)"""

from __future__ import annotations

from helpers.tiny_runs import (
    TinyRecipe,
    keys,
    problem_major_units,
    tiny_attempt,
    units,
)

from data.store import RunStore
from prover.runner import LocalExecutor, run_units


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
