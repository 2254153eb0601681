"""Seed derivation: every (base seed, problem, attempt, sample) gets its own seed, the same rule in every path,
so runs with neighbouring base seeds are independent replicates (with `seed + j` they shared 7 of 8 samples)."""

from __future__ import annotations

from fakes.scripted import ScriptedBackend
from helpers.prove import HEADER

from data.problem import Problem
from prover.generate.base import SamplingParams, derive_seed, sample_seed, sample_seeds
from prover.recipe import ProveRecipe
from prover.search import Budget, attempt_seed, run_attempt
from prover.search.core import no_candidate

PROBLEMS = [Problem(f"p{i}", f"theorem p{i} : {i} + 0 = {i} := by", header=HEADER) for i in range(3)]


class RejectingVerifier:
    """TEST verifier that fails every candidate: only the seeds are under test here, not Lean."""

    def verify_many(self, items):
        return [no_candidate("rejected by the test verifier") for _ in items]


def drawn_seeds(base: int, attempts: int = 8, samples: int = 8) -> set[int]:
    """The seed of every sample of a run: each attempt through `run_attempt`, as `subgoal prove` draws them."""
    seeds: set[int] = set()
    for p in PROBLEMS:
        for g in range(attempts):
            backend = ScriptedBackend([("", "no code here")])
            run_attempt(p, "sample", backend, RejectingVerifier(), Budget(samples=samples), attempt_seed(base, p.name, g),
                        batch=samples)
            for _, params, n in backend.calls:
                seeds |= {sample_seed(params.seed, j) for j in range(n)}
    return seeds


def test_neighbouring_base_seeds_share_no_sample():
    s0, s1 = drawn_seeds(0), drawn_seeds(1)
    assert len(s0) == len(s1) == 3 * 8 * 8  # no two samples of one run share a seed either
    assert not s0 & s1


def test_concurrent_attempts_seeds_follow_the_same_rule(tmp_path):
    from data.store import RunStore
    from prover.runner import Engine, LocalExecutor, WorkUnit, run_units

    recipe = ProveRecipe(strategy="sample", budget={"samples": 1}, seed=0)
    backend = ScriptedBackend([("", "no code here")])
    with RunStore(tmp_path / "run") as store:
        run_id = store.start_run("run", {})
        executor = LocalExecutor(recipe, engine=Engine(backend), checker=RejectingVerifier())
        run_units([WorkUnit(PROBLEMS[0], i) for i in range(4)], executor, store, run_id)
        attempts = store.attempts(run_id)
    # each attempt is its own request, seeded from its own attempt seed whatever order the tasks ran in
    assert sorted(params.seed for _, params, _ in backend.calls) == sorted(
        derive_seed(attempt_seed(0, "p0", i), 0) for i in range(4))
    assert [a.seed for a in attempts] == [attempt_seed(0, "p0", i) for i in range(4)]
    assert len({a.seed for a in attempts}) == 4


def test_derive_seed_is_stable_and_separates_its_inputs():
    assert derive_seed(0, "p", 1) == derive_seed(0, "p", 1)  # same in every process: no Python hash()
    assert len({derive_seed(0, "p", 1), derive_seed(0, "p1"), derive_seed(0, 1, "p"), derive_seed(1, "p", 0)}) == 4
    assert all(0 <= derive_seed(s) < 2**63 for s in (-1, 0, 2**70))
    assert sample_seeds(SamplingParams(seed=None), 3) == [None] * 3
    assert sample_seeds(SamplingParams(seed=5), 2) == [sample_seed(5, 0), sample_seed(5, 1)]
