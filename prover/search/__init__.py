"""Search strategies over one interface: `run_attempt(problem, strategy, backend, verifier, budget, seed, ...)`.

Strategies: `sample` (whole-proof sampling), `decompose` (recursive subgoal decomposition), `repair`
(Lean-feedback repair), `tree` (best-first search over proof states through a `ProofSession`). All spend one
`Budget` and report progress through `on_event(dict)` (kinds: start, generate, candidate, sketch, subgoal,
expand, tactic, best, done). Strategies are coroutines over a shared `prover.runner.Engine` and async checker
(`arun_attempt`); `run_attempt` runs one attempt from synchronous code over a plain backend and verifier.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from data.problem import Problem
from lean_env.checker import Checker
from lean_env.verdict import Verdict
from prover.errors import ProverError
from prover.generate.base import Backend, SamplingParams, StreamingBackend, derive_seed
from prover.prompts import PromptSet
from prover.search.budget import Budget
from prover.search.core import AttemptResult, BudgetExhausted, Event, Search, no_candidate
from prover.search.decompose import run_decompose
from prover.search.options import OPTIONS, check_options, with_default_samples
from prover.search.repair import run_repair
from prover.search.sample import run_sample
from prover.search.tree import run_tree

if TYPE_CHECKING:
    from prover.runner import AsyncChecker, Engine

STRATEGIES: dict[str, Callable[[Search], Coroutine[Any, Any, tuple[str, Verdict, dict[str, Any]]]]] = {
    "sample": run_sample,
    "decompose": run_decompose,
    "repair": run_repair,
    "tree": run_tree,
}
# Samples per attempt when the budget sets none (each strategy's options own the number).
DEFAULT_SAMPLES = {name: cls.default_samples for name, cls in OPTIONS.items()}


def attempt_seed(base_seed: int | None, problem: str, index: int) -> int | None:
    """The seed of attempt `index` of `problem` in a run seeded `base_seed`: mixed from all three, so no two
    attempts (of one run, or of runs with different base seeds) draw a sample with the same seed."""
    return None if base_seed is None else derive_seed(base_seed, problem, index)


async def arun_attempt(problem: Problem, strategy: str, engine: Engine, checker: AsyncChecker, budget: Budget | None,
                       seed: int | None, prompts: PromptSet | None = None,
                       on_event: Callable[[Event], None] | None = None, *, sampling: SamplingParams | None = None,
                       planner: Engine | None = None, **options: Any) -> AttemptResult:
    """One attempt of `strategy` on `problem`, awaiting `engine` (`prover.runner.Engine`) and `checker` (an async
    checker, `prover.runner.AsyncChecker`); `planner`: the engine that writes decomposition sketches (None:
    `engine` does). `options` are the fields of the strategy's options (`prover.search.options`), plus tree
    search's `session` / `sessions`; an unknown key is a `ProverError`."""
    fn = STRATEGIES.get(strategy)
    if fn is None:
        raise ProverError(f"unknown strategy {strategy!r} (choose from {', '.join(STRATEGIES)})")
    options = check_options(strategy, options)
    budget = budget.copy() if budget is not None else Budget()
    budget.samples = with_default_samples(strategy, {"samples": budget.samples})["samples"]
    search = Search(problem, engine, checker, budget, seed, prompts, on_event, sampling, options, planner=planner)
    t0 = time.perf_counter()
    search.event("start", strategy=strategy, budget=budget.limits())
    try:
        text, verdict, trace = await fn(search)
    except BudgetExhausted as e:  # spent before the strategy produced anything
        text, verdict, trace = "", no_candidate(f"budget spent ({e})"), {}
    stopped = "proved" if verdict.proved else (budget.exhausted() or "done")
    result = search.result(strategy, text, verdict, trace, stopped, time.perf_counter() - t0)
    search.event("done", status=verdict.status.value, text=text, stopped=stopped, usage=budget.usage())
    return result


def run_attempt(problem: Problem, strategy: str, backend: Backend | StreamingBackend | Engine,
                verifier: Checker | AsyncChecker, budget: Budget | None, seed: int | None,
                prompts: PromptSet | None = None, on_event: Callable[[Event], None] | None = None, *,
                sampling: SamplingParams | None = None, planner: Backend | StreamingBackend | Engine | None = None,
                **options: Any) -> AttemptResult:
    """`arun_attempt` from synchronous code, over a plain `backend` (any `Backend` or `StreamingBackend`) and
    `verifier` (a `lean_env.Verifier`); `planner` likewise a plain backend or an Engine."""
    from prover.runner import AsyncChecker, Engine, run_async

    engine = backend if isinstance(backend, Engine) else Engine(backend)
    if planner is not None and not isinstance(planner, Engine):
        planner = Engine(planner)
    checker = verifier if isinstance(verifier, AsyncChecker) else AsyncChecker(verifier)
    try:
        return run_async(arun_attempt(problem, strategy, engine, checker, budget, seed, prompts, on_event,
                                      sampling=sampling, planner=planner, **options))
    finally:
        if checker is not verifier:
            checker.close()  # its threads; the verifier stays the caller's


__all__ = ["DEFAULT_SAMPLES", "STRATEGIES", "AttemptResult", "Budget", "Search", "arun_attempt", "attempt_seed", "run_attempt"]
