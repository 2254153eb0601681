"""Batch proving over work units (problem, attempt index) -> `data.store.Attempt`, resumable.

`ProveRecipe` is plain, picklable configuration (strategy, budget, model and Lean settings, seed, prompts file,
strategy options); it builds a backend (`make_generator`) and a verifier (`make_checker`) wherever it runs and
turns one unit into an Attempt (`run`), the same three methods as `eval.distributed.Recipe`, so the eval
harness can ship it to Ray actors unchanged. `run_batch` is the local driver: it skips units already in the
store, runs the rest, and is the only process that writes the store (one row per unit, committed as it
arrives), so a killed job loses at most the units in flight and a re-run neither repeats nor duplicates work.
Whole-proof sampling with one sample per attempt is batched: the pending attempts of a problem are drawn in one
generation call (n samples, sample j seeded seed+j) and checked with one `verify_many`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lean_env.verdict import Status
from prover.generate.base import SamplingParams
from prover.prompts import load_prompts
from prover.search import DEFAULT_SAMPLES, Budget, attempt_seed, run_attempt
from prover.search.core import AttemptResult, Search, no_candidate


@dataclass
class ProveRecipe:
    strategy: str = "sample"
    budget: dict[str, Any] = field(default_factory=dict)  # Budget fields, per attempt
    model_settings: Any = None  # data.config.ModelSettings
    lean_settings: Any = None  # data.config.LeanSettings
    seed: int | None = 0
    prompts_path: str | None = None
    sampling: dict[str, Any] = field(default_factory=dict)  # SamplingParams fields
    options: dict[str, Any] = field(default_factory=dict)  # strategy options (plain values)
    interaction: str = "repl"  # tree search: repl | dojo
    group: int = 8  # sample strategy: attempts drawn per generation call

    def make_generator(self) -> Any:
        from prover.generate import make_backend

        return make_backend(self.model_settings)

    def make_checker(self) -> Any:
        from lean_env import make_verifier

        return make_verifier(self.lean_settings)

    def run(self, backend: Any, verifier: Any, problem: Any, index: int) -> Any:
        return self.run_many(backend, verifier, problem, [index])[0]

    # ---- beyond the eval Recipe protocol ---------------------------------------------------------------
    def batchable(self) -> bool:
        """One sample per attempt: attempts of a problem can share one generation call."""
        b = Budget(**self.budget)
        per_attempt = b.samples if b.samples is not None else (
            DEFAULT_SAMPLES[self.strategy] if all(v is None for v in b.limits().values()) else None)
        return self.strategy == "sample" and per_attempt == 1

    def run_many(self, backend: Any, verifier: Any, problem: Any, indices: list[int],
                 on_event: Callable[[dict], None] | None = None) -> list[Any]:
        if self.batchable() and len(indices) > 1 and not (getattr(problem, "extra", None) or {}).get("sketch"):
            results = sample_group(problem, backend, verifier, indices, self)
        else:
            results = [self.attempt(backend, verifier, problem, i, on_event) for i in indices]
        return [r.to_attempt(problem, i) for r, i in zip(results, indices, strict=True)]

    def attempt(self, backend: Any, verifier: Any, problem: Any, index: int,
                on_event: Callable[[dict], None] | None = None, strategy: str | None = None,
                **extra: Any) -> AttemptResult:
        """One attempt; a problem read from a .lean file with a sketch (`extra["sketch"]`) is completed from
        that sketch by decomposition, whatever the recipe's strategy."""
        strategy = strategy or self.strategy
        options = dict(self.options)
        sketch = (getattr(problem, "extra", None) or {}).get("sketch")
        if sketch and strategy == self.strategy:
            strategy = "decompose"
            options.update(sketch=sketch, sketch_only=True)
        session = None
        if strategy == "tree":
            from lean_env.interaction import open_session

            session = open_session(self.interaction, settings=self.lean_settings)
            options["session"] = session
        try:
            return run_attempt(problem, strategy, backend, verifier, Budget(**self.budget),
                               attempt_seed(self.seed, index), self.prompts(), on_event,
                               sampling=self.sampling_params(), **options, **extra)
        finally:
            if session is not None:
                session.close()

    def sampling_params(self) -> SamplingParams:
        return SamplingParams(**self.sampling)

    def prompts(self):
        return load_prompts(self.prompts_path)


def sample_group(problem: Any, backend: Any, verifier: Any, indices: list[int], recipe: ProveRecipe) -> list[
        AttemptResult]:
    """One sample per attempt for `indices`, drawn in one call and checked with one `verify_many`."""
    t0 = time.perf_counter()
    seed = attempt_seed(recipe.seed, indices[0])
    search = Search(problem, backend, verifier, Budget(samples=len(indices)), seed, recipe.prompts(), None,
                    recipe.sampling_params(), recipe.options)
    mode = recipe.options.get("mode", "complete")
    completions = search.generate([search.render(mode)], len(indices), mode)[0]
    texts = [search.extract(mode, c.text) or "" for c in completions]
    checked = iter(search.verify_many([t for t in texts if t]) if any(texts) else [])
    verdicts = [next(checked) if t else no_candidate("no Lean code in the completion") for t in texts]
    wall = time.perf_counter() - t0
    share = 1.0 / len(indices)
    out = []
    for j, (c, text, verdict) in enumerate(zip(completions, texts, verdicts, strict=True)):
        timings = {"wall_s": round(wall * share, 4), "gen_s": round(search.gen_s * share, 4),
                   "gpu_s": round(search.timings(0)["gpu_s"] * share, 4),
                   "lean_wall_s": round(verdict.wall_time, 4), "lean_cpu_s": round(verdict.cpu_time, 4)}
        trace = {"mode": mode, "samples": [{"status": verdict.status.value, "tokens": c.completion_tokens,
                                            "finish": c.finish_reason, "logprob": round(c.logprob, 3)}]}
        result = search.result("sample", text, verdict, trace, "proved" if verdict.proved else "samples", 0)
        result.prompt_tokens, result.completion_tokens = c.prompt_tokens, c.completion_tokens
        result.samples, result.lean_calls = 1, 1 if text else 0
        result.timings, result.seed = timings, None if seed is None else seed + j
        out.append(result)
    return out


@dataclass
class BatchStats:
    recorded: int = 0  # attempts written by this run
    skipped: int = 0  # attempts already in the store (resume)
    skipped_proved: int = 0  # attempts not run because the problem was already proved (stop_at_first)
    wall_s: float = 0.0


def run_batch(problems: Iterable[Any], store: Any, run_id: Any, make_work: Callable[[], Any],
              attempts_per_problem: int, stop_at_first: bool = False,
              on_result: Callable[[Any, Any], None] | None = None, group: int = 8) -> BatchStats:
    """Run every pending (problem, index < attempts_per_problem) unit and record its Attempt.

    `make_work()` is called once, in this (driver) process, and returns either a callable
    `work(problem, index) -> Attempt` or an object with `run_many(problem, indices) -> list[Attempt]` (used to
    batch several attempts of one problem, at most `group` at a time). With `stop_at_first`, a problem's
    remaining attempts are skipped once one attempt proved it (attempts in the store count too).
    """
    t0 = time.perf_counter()
    stats = BatchStats()
    done = store.done(run_id)
    proved = {a.problem for a in store.attempts(run_id) if a.status == Status.PROVED.value} if stop_at_first else set()
    work = make_work()
    run_many = getattr(work, "run_many", None) or (lambda p, idx: [work(p, i) for i in idx])
    for problem in problems:
        pending = [i for i in range(attempts_per_problem) if (problem.name, i) not in done]
        stats.skipped += attempts_per_problem - len(pending)
        step = group if not stop_at_first else max(1, min(group, 8))
        while pending:
            if stop_at_first and problem.name in proved:
                stats.skipped_proved += len(pending)
                break
            chunk, pending = pending[:step], pending[step:]
            for attempt in run_many(problem, chunk):
                if store.record(run_id, attempt):
                    stats.recorded += 1
                if attempt.status == Status.PROVED.value:
                    proved.add(problem.name)
                if on_result is not None:
                    on_result(problem, attempt)
    stats.wall_s = time.perf_counter() - t0
    return stats


class BoundRecipe:
    """A recipe with its backend and verifier built: the `work` object `run_batch` drives locally."""

    def __init__(self, recipe: ProveRecipe, backend: Any, verifier: Any,
                 on_event: Callable[[dict], None] | None = None):
        self.recipe, self.backend, self.verifier, self.on_event = recipe, backend, verifier, on_event

    def __call__(self, problem: Any, index: int) -> Any:
        return self.run_many(problem, [index])[0]

    def run_many(self, problem: Any, indices: list[int]) -> list[Any]:
        return self.recipe.run_many(self.backend, self.verifier, problem, indices, self.on_event)
