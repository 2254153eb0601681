"""pass@k by the unbiased estimator, bootstrap intervals over problems, and cost accounting.

pass@k for one problem with n samples of which c are correct is 1 - C(n-c, k) / C(n, k) (Chen et al. 2021):
the probability that a random k-subset of the n samples holds at least one correct proof. The ratio of
binomials is computed as a product of factors in [0, 1], so nothing overflows for n in the thousands.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

PROVED = "proved"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: n samples, c of them correct, k <= n."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k/i): c factors, each in [0, 1)
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def pass_at_k_curve(n: int, c: int, k_max: int | None = None) -> np.ndarray:
    """pass@k for k = 1..k_max (default n) at once: out[k-1]. Same estimator, O(k_max) work.

    C(n-c, k) / C(n, k) = prod_{j=0}^{k-1} (n-c-j) / (n-j): a running product of factors in [0, 1].
    """
    k_max = n if k_max is None else k_max
    if not 0 <= c <= n or not 0 <= k_max <= n:
        raise ValueError(f"need 0 <= c <= n and k_max <= n, got n={n}, c={c}, k_max={k_max}")
    j = np.arange(k_max, dtype=np.float64)
    factors = np.clip((n - c - j) / (n - j), 0.0, 1.0)  # hits 0 once j >= n-c: all later k are certain
    return 1.0 - np.cumprod(factors)


@dataclass(frozen=True)
class ProblemCount:
    """One problem's tally: n attempts recorded, c of them proved (n = 0: planned but never attempted)."""

    name: str
    n: int
    c: int
    split: str = ""


@dataclass
class PassAtK:
    k: int
    value: float  # mean over the problems it covers of the per-problem unbiased estimate
    ci_low: float
    ci_high: float
    problems: int = 0  # problems it covers: those with n >= k, plus the never-attempted ones (failures)


def pass_at_k_table(
    counts: Sequence[ProblemCount],
    ks: Iterable[int] | None = None,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[PassAtK]:
    """pass@k over a set of problems for every k <= the largest n (or the given ks), with a bootstrap interval.

    A problem never attempted (n = 0) is a failure at every k: dropping it would report pass@1 0.75 for a run
    that proved 2 of 4 planned problems with one missing. A problem with 0 < n < k has no unbiased pass@k and
    is left out at that k only, so one short problem does not cut the curve; `PassAtK.problems` says how many
    problems each k covers. The interval resamples problems with replacement (the benchmark is the random
    part; the per-problem estimate is already unbiased), seeded so the same store gives the same report.
    """
    if not counts:
        return []
    n_max = max(p.n for p in counts)
    ks = list(range(1, n_max + 1)) if ks is None else sorted({k for k in ks if 1 <= k <= n_max})
    if not ks:
        return []
    k_max = max(ks)
    # problems x k_max; a missing problem's row is 0 (failed), a short problem's row is 0 past its n (masked)
    per_problem = np.stack([np.pad(pass_at_k_curve(p.n, p.c, min(p.n, k_max)), (0, k_max - min(p.n, k_max)))
                            for p in counts])[:, [k - 1 for k in ks]]
    n = np.array([p.n for p in counts])[:, None]
    covered = ((n == 0) | (n >= np.array(ks)[None, :])).astype(np.float64)  # problems x len(ks)
    covers = covered.sum(axis=0)
    means = (per_problem * covered).sum(axis=0) / covers
    rng = np.random.default_rng(seed)
    n_problems = len(counts)
    # Multinomial weights = how often each problem is drawn in each resample; one matmul for all ks.
    weights = rng.multinomial(n_problems, np.full(n_problems, 1.0 / n_problems), size=n_boot)
    drawn = weights @ covered  # n_boot x len(ks): covered problems in each resample
    boot = np.divide(weights @ (per_problem * covered), drawn, out=np.full(drawn.shape, np.nan), where=drawn > 0)
    alpha = (1.0 - confidence) / 2
    low, high = np.nanquantile(boot, [alpha, 1.0 - alpha], axis=0)
    return [PassAtK(k, float(m), float(lo), float(hi), int(c))
            for k, m, lo, hi, c in zip(ks, means, low, high, covers, strict=True)]


@dataclass
class Cost:
    """What a run spent. Seconds are sums over attempts (wall_s sums attempt wall times)."""

    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    gpu_s: float = 0.0
    gen_s: float = 0.0
    lean_wall_s: float = 0.0
    lean_cpu_s: float = 0.0
    wall_s: float = 0.0
    # A separate planner model (decomposition sketches, often a large model behind a server): its own usage.
    # The fields above are the prover's.
    planner_prompt_tokens: int = 0
    planner_completion_tokens: int = 0
    planner_gen_s: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def planner_tokens(self) -> int:
        return self.planner_prompt_tokens + self.planner_completion_tokens

    def add(self, prompt_tokens: int, completion_tokens: int, timings: dict[str, Any]) -> None:
        self.attempts += 1
        self.prompt_tokens += int(prompt_tokens or 0)
        self.completion_tokens += int(completion_tokens or 0)
        timings = timings or {}
        for key in ("gpu_s", "gen_s", "lean_wall_s", "lean_cpu_s", "wall_s", "planner_gen_s"):
            setattr(self, key, getattr(self, key) + float(timings.get(key, 0.0) or 0.0))
        for key in ("planner_prompt_tokens", "planner_completion_tokens"):
            setattr(self, key, getattr(self, key) + int(timings.get(key, 0) or 0))

    def per(self, divisor: int) -> dict[str, float] | None:
        """Every figure divided by `divisor` (e.g. per solved problem); None when nothing to divide by."""
        if divisor <= 0:
            return None
        d = self.to_dict()
        return {k: v / divisor for k, v in d.items() if k != "attempts"}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tokens": self.tokens, "planner_tokens": self.planner_tokens}


@dataclass
class SetReport:
    """pass@k of one group of problems (a whole set, or one split of it)."""

    problems: int
    solved: int
    samples_min: int  # over the problems attempted at least once
    samples_max: int
    pass_at_k: list[PassAtK] = field(default_factory=list)
    missing: int = 0  # planned problems never attempted (failures in every pass@k)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pass_at_k"] = {str(p.k): {"value": p.value, "ci_low": p.ci_low, "ci_high": p.ci_high,
                                     "problems": p.problems} for p in self.pass_at_k}
        return d


def set_report(counts: Sequence[ProblemCount], *, n_boot: int = 1000, seed: int = 0) -> SetReport:
    attempted = [p.n for p in counts if p.n > 0]
    return SetReport(
        problems=len(counts),
        solved=sum(1 for p in counts if p.c > 0),
        samples_min=min(attempted, default=0),
        samples_max=max(attempted, default=0),
        pass_at_k=pass_at_k_table(counts, n_boot=n_boot, seed=seed),
        missing=len(counts) - len(attempted),
    )


def count_attempts(rows: Iterable[tuple[str, str, str]], planned: Iterable[str] = ()) -> list[ProblemCount]:
    """(problem, split, status) rows -> one ProblemCount per problem. Only `proved` counts as correct; each
    `planned` problem without a row gets n = 0 (a failure, not a smaller denominator)."""
    tally: dict[str, list[Any]] = {}
    for problem, split, status in rows:
        entry = tally.setdefault(problem, [split, 0, 0])
        entry[1] += 1
        entry[2] += status == PROVED
    for name in planned:
        tally.setdefault(name, ["", 0, 0])
    return [ProblemCount(name, n, c, split) for name, (split, n, c) in sorted(tally.items())]
