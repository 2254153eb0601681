"""pass@k estimator against exhaustive enumeration; bootstrap intervals; cost accounting."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from eval.metrics import Cost, ProblemCount, count_attempts, pass_at_k, pass_at_k_curve, pass_at_k_table


def enumerated_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of all k-subsets of n samples (first c correct) that hold a correct sample."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_estimator_matches_exhaustive_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            expected = enumerated_pass_at_k(n, c, k)
            assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12), (n, c, k)
            assert pass_at_k_curve(n, c)[k - 1] == pytest.approx(expected, abs=1e-12), (n, c, k)


def test_estimator_edge_cases_and_large_n():
    assert pass_at_k(10, 0, 3) == 0.0
    assert pass_at_k(10, 8, 3) == 1.0  # n - c = 2 < k
    assert pass_at_k(5, 1, 1) == pytest.approx(0.2)
    # Large n: binomials here have thousands of digits; the product form stays finite and exact enough.
    n, c, k = 8192, 37, 1024
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-9)
    assert pass_at_k_curve(n, c)[k - 1] == pytest.approx(exact, rel=1e-9)
    for bad in [(3, 4, 1), (3, 1, 0), (3, 1, 4), (3, -1, 1)]:
        with pytest.raises(ValueError):
            pass_at_k(*bad)


def test_table_means_over_problems_and_bootstrap_is_seeded():
    counts = [ProblemCount(f"p{i}", 8, c) for i, c in enumerate([0, 1, 2, 8, 0, 3])]
    table = pass_at_k_table(counts, n_boot=500, seed=1)
    assert [p.k for p in table] == list(range(1, 9))
    for row in table:
        expected = np.mean([pass_at_k(p.n, p.c, row.k) for p in counts])
        assert row.value == pytest.approx(expected)
        assert row.ci_low <= row.value <= row.ci_high
    assert table[-1].value == pytest.approx(4 / 6)  # pass@n = fraction of problems ever solved
    assert pass_at_k_table(counts, n_boot=500, seed=1) == table
    assert pass_at_k_table(counts, n_boot=500, seed=2) != table
    # one problem with 2 samples does not cut the curve: it is left out where k > 2, and each k says how many
    # problems it covers
    with_short = pass_at_k_table([*counts, ProblemCount("short", 2, 1)], n_boot=200)
    assert [p.k for p in with_short] == list(range(1, 9))
    assert [p.problems for p in with_short] == [7, 7, 6, 6, 6, 6, 6, 6]
    assert with_short[1].value == pytest.approx(np.mean([pass_at_k(p.n, p.c, 2) for p in counts] + [1.0]))
    assert with_short[7].value == pytest.approx(4 / 6)
    one = pass_at_k_table([ProblemCount("n1", 1, 0), *counts], n_boot=200)
    assert len(one) == 8 and one[0].problems == 7 and one[1].problems == 6


def test_never_attempted_problems_count_as_failures():
    # 4 planned, 1 never attempted, 2 of the other 3 always proved: pass@1 is 2/4, not 2/3
    counts = count_attempts([("a", "", "proved"), ("b", "", "proved"), ("c", "", "failed")], planned="abcd")
    assert ProblemCount("d", 0, 0) in counts
    table = pass_at_k_table(counts, n_boot=200)
    assert [(p.k, p.value, p.problems) for p in table] == [(1, 0.5, 4)]
    assert table[0].ci_low <= 0.5 <= table[0].ci_high
    # 3 planned with 2 samples each; one missing: pass@1 = (1 + 0.5 + 0) / 3 over all three
    counts = count_attempts([("a", "", "proved")] * 2 + [("b", "", "proved"), ("b", "", "failed")], planned="abc")
    assert pass_at_k_table(counts, n_boot=10)[0].value == pytest.approx(0.5)


def test_count_attempts_counts_only_proved():
    rows = [("a", "test", "proved"), ("a", "test", "failed"), ("a", "test", "unsound"), ("b", "test", "timeout")]
    assert count_attempts(rows) == [ProblemCount("a", 3, 1, "test"), ProblemCount("b", 1, 0, "test")]


def test_cost_accounting_totals_and_per_solved():
    cost = Cost()
    cost.add(10, 90, {"gpu_s": 1.5, "lean_cpu_s": 2.0, "wall_s": 4.0})
    cost.add(10, 30, {"gpu_s": 0.5, "lean_cpu_s": 1.0, "wall_s": 2.0, "unknown": 7})
    assert (cost.attempts, cost.tokens, cost.gpu_s, cost.lean_cpu_s, cost.wall_s) == (2, 140, 2.0, 3.0, 6.0)
    per = cost.per(2)
    assert per["tokens"] == 70 and per["gpu_s"] == 1.0
    assert cost.per(0) is None
