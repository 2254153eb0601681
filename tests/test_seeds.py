"""Seed derivation: every (base seed, problem, attempt, sample) gets its own seed, the same rule in every path,
so runs with neighbouring base seeds are independent replicates (with `seed + j` they shared 7 of 8 samples)."""

from __future__ import annotations

from test_prove_support import HEADER, ScriptedBackend

from data.problem import Problem
from prover.batch import ProveRecipe, sample_group
from prover.generate.base import SamplingParams, derive_seed, sample_seed, sample_seeds
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


def test_batched_sampling_seeds_follow_the_same_rule():
    recipe = ProveRecipe(strategy="sample", budget={"samples": 1}, seed=0)
    backend = ScriptedBackend([("", "no code here")])
    results = sample_group(PROBLEMS[0], backend, RejectingVerifier(), [0, 1, 2, 3], recipe)
    (_, params, n), = backend.calls
    assert params.seed == derive_seed(attempt_seed(0, "p0", 0), 0) and n == 4
    assert [r.seed for r in results] == [sample_seed(params.seed, j) for j in range(4)]
    assert len({r.seed for r in results}) == 4


def test_derive_seed_is_stable_and_separates_its_inputs():
    assert derive_seed(0, "p", 1) == derive_seed(0, "p", 1)  # same in every process: no Python hash()
    assert len({derive_seed(0, "p", 1), derive_seed(0, "p1"), derive_seed(0, 1, "p"), derive_seed(1, "p", 0)}) == 4
    assert all(0 <= derive_seed(s) < 2**63 for s in (-1, 0, 2**70))
    assert sample_seeds(SamplingParams(seed=None), 3) == [None] * 3
    assert sample_seeds(SamplingParams(seed=5), 2) == [sample_seed(5, 0), sample_seed(5, 1)]
