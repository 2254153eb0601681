"""Everything on a real local Ray cluster, started once for this module (`ray.init(num_cpus=2)`).

- generic units (`TinyRecipe`): every (problem, index) exactly once while a generation actor and the
  node's checker actor are killed mid-run; every attempt in flight on a killed worker (an asyncio actor runs
  many at once) is sent again; an actor's construction error reaches the user as itself;
- `subgoal eval minif2f-test --ray` end to end with the tiny model and the FAKE Lean REPL;
- the scripted fragment run on Ray gives the same exact pass@k as in one process (slow).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.eval_runs import check_minif2f_run, check_scripted_fragment_run, minif2f_cli
from helpers.tiny_runs import TinyRecipe, keys, problem_major_units, units

from data.store import Attempt, RunStore
from eval.distributed import RayExecutor
from prover.runner import WorkUnit, run_units

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    # Workers import the recipes and scripted backend of these test modules: tests/ goes on their path.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", "OMP_NUM_THREADS": "1"}})
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
            stats = run_units(units(4, 4), executor, store, run_id, on_result=kill_mid_run)
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


def test_ray_every_attempt_in_flight_on_a_killed_worker_is_sent_again(ray_cluster, tmp_path):
    ray = ray_cluster
    executor = RayExecutor(TinyRecipe(delay_s=0.2, stagger_s=0.3), workers=2, max_in_flight=8)
    seen: list[tuple[str, int]] = []

    def kill_first_worker(unit: WorkUnit, attempt: Attempt) -> None:
        if not seen:  # one attempt is done; each asyncio worker still runs several (slower) ones at once
            ray.kill(executor.workers[0])
        seen.append(unit.key)

    try:
        with RunStore(tmp_path / "run") as store:
            run_id = store.start_run("run", {"samples": 4})
            stats = run_units(problem_major_units(4, 4), executor, store, run_id, on_result=kill_first_worker)
            assert executor.replaced >= 1 and executor.retried >= 2  # several were in flight on the dead one
            assert stats.recorded == 16 and stats.duplicates == 0
            assert sorted(seen) == keys(store, run_id) == sorted((f"p{i}", j) for i in range(4) for j in range(4))
    finally:
        executor.close()


def test_ray_actor_construction_error_reaches_the_user_as_itself(ray_cluster):
    from lean_env.errors import LeanNotFound

    with pytest.raises(LeanNotFound, match="Lean toolchain not found"):
        RayExecutor(TinyRecipe(broken_checker=True), workers=1)


def test_eval_minif2f_on_local_ray(tiny_model, fake_lean_env, ray_cluster, tmp_path):
    out = tmp_path / "runs" / "tiny-minif2f-ray"
    assert minif2f_cli(tiny_model, out, "--ray", "--workers", "1") == 0
    report = check_minif2f_run(out, tiny_model)
    assert report["run"]["distributed"] == "ray"


@pytest.mark.slow
def test_scripted_fragment_run_on_ray_gives_exact_pass_at_k(ray_cluster, fragment_jsonl, fake_lean_env, tmp_path):
    check_scripted_fragment_run(fragment_jsonl, tmp_path / "fragment-ray", ray=True)
