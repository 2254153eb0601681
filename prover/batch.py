"""Batch proving over work units (problem, attempt index) -> `data.store.Attempt`, resumable.

`ProveRecipe` is THE description of one unit of work, for `subgoal prove`, `subgoal eval` (one process or Ray
actors) and expert iteration: plain, picklable configuration (strategy, budget, model and Lean settings, seed,
prompts file, strategy options, tree-search interaction, model id to record). Wherever it runs it builds a
backend (`make_generator`) and a verifier (`make_checker`) and turns units into Attempts (`run`, `run_many`):
the `eval.distributed.Recipe` protocol. Per process it keeps what is expensive to open and cannot travel: the
parsed prompts and, for tree search, one `ProofSession` (REPL or LeanDojo, opened on first use, closed by
`close()`, never pickled).

`drive` is the one driver, here and in `eval` (which adds a Ray executor): it skips units already in the store,
streams the rest through an executor in *jobs* (consecutive units of one problem), and is the only code that
writes the store (one row per unit, committed as it arrives, never twice), so a killed job loses at most the
units in flight and a re-run neither repeats nor duplicates work. `run_batch` is `drive` in this process.
Whole-proof sampling with one sample per attempt is batched: a job of a problem's pending attempts is drawn in
one generation call (n samples, sample j seeded `sample_seed(seed, j)`) and checked with one `verify_many`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from lean_env.verdict import Status
from prover.errors import ProverError
from prover.generate.base import SamplingParams, sample_seed
from prover.prompts import PromptSet, load_prompts
from prover.search import DEFAULT_SAMPLES, Budget, attempt_seed, run_attempt
from prover.search.core import AttemptResult, Search, no_candidate

INTERACTIONS = ("repl", "dojo")


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
    model_id: str = ""  # recorded on every attempt (the id the user asked for); default: the backend's
    _prompts: PromptSet | None = field(default=None, init=False, repr=False, compare=False)  # parsed once, travels
    _session: Any = field(default=None, init=False, repr=False, compare=False)  # tree search, one per process

    def __post_init__(self) -> None:
        if self.interaction not in INTERACTIONS:
            raise ProverError(f"unknown interaction {self.interaction!r} (choose {' or '.join(INTERACTIONS)})")

    def make_generator(self) -> Any:
        from prover.generate import make_backend

        return make_backend(self.model_settings)

    def make_checker(self) -> Any:
        from lean_env import make_verifier

        return make_verifier(self.lean_settings)

    def run(self, backend: Any, verifier: Any, problem: Any, index: int) -> Any:
        return self.run_many(backend, verifier, problem, [index])[0]

    def run_many(self, backend: Any, verifier: Any, problem: Any, indices: list[int],
                 on_event: Callable[[dict], None] | None = None) -> list[Any]:
        """Attempts `indices` of `problem` as run-store rows: one generation call for all of them where the
        strategy samples one proof per attempt, else one attempt after the other."""
        if self.batchable() and len(indices) > 1 and not (getattr(problem, "extra", None) or {}).get("sketch"):
            results = sample_group(problem, backend, verifier, indices, self)
        else:
            results = [self.attempt(backend, verifier, problem, i, on_event) for i in indices]
        attempts = [r.to_attempt(problem, i) for r, i in zip(results, indices, strict=True)]
        for a in attempts:
            a.model = self.model_id or a.model
        return attempts

    def batchable(self) -> bool:
        """One sample per attempt and no per-attempt clock: attempts of a problem can share one generation call."""
        b = Budget(**self.budget)
        per_attempt = b.samples if b.samples is not None else (
            DEFAULT_SAMPLES[self.strategy] if all(v is None for v in b.limits().values()) else None)
        return self.strategy == "sample" and per_attempt == 1 and b.wall_s is None

    def group_size(self) -> int:
        """How many attempts of one problem are worth shipping together (to one generation call)."""
        return max(1, self.group) if self.batchable() else 1

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
        if strategy == "tree":  # step-wise search keeps proof states: a session beside the backend
            options["session"] = self.session()
        return run_attempt(problem, strategy, backend, verifier, Budget(**self.budget),
                           attempt_seed(self.seed, problem.name, index), self.prompts(), on_event,
                           sampling=self.sampling_params(), **options, **extra)

    def session(self) -> Any:
        """This process's proof session for tree search (`interaction`), opened on first use and reused: the
        REPL imports each header once, LeanDojo keeps its traced repositories."""
        if self._session is None:
            from lean_env.interaction import open_session

            self._session = open_session(self.interaction, settings=self.lean_settings)
        return self._session

    def sampling_params(self) -> SamplingParams:
        return SamplingParams(**self.sampling)

    def prompts(self) -> PromptSet:
        if self._prompts is None:  # a bad --prompts file fails on the first call (the CLIs call it up front)
            self._prompts = load_prompts(self.prompts_path)
        return self._prompts

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_session": None}  # a live Lean session never travels to another process


def sample_group(problem: Any, backend: Any, verifier: Any, indices: list[int], recipe: ProveRecipe) -> list[
        AttemptResult]:
    """One sample per attempt for `indices`, drawn in one call and checked with one `verify_many`."""
    t0 = time.perf_counter()
    seed = attempt_seed(recipe.seed, problem.name, indices[0])
    sampling = recipe.sampling_params()
    tokens = Budget(**recipe.budget).tokens  # a per-attempt token budget caps each sample
    if tokens is not None:
        sampling = replace(sampling, max_tokens=max(1, min(sampling.max_tokens, tokens)))
    search = Search(problem, backend, verifier, Budget(samples=len(indices)), seed, recipe.prompts(), None,
                    sampling, recipe.options)
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
        result.timings, result.seed = timings, (None if search.last_call_seed is None
                                               else sample_seed(search.last_call_seed, j))
        out.append(result)
    return out


# ---------------------------------------------------------------- units, jobs, and the driver (the only writer)


@dataclass(frozen=True)
class WorkUnit:
    """One attempt to run: `problem` is any picklable object with a `.name` (a data.Problem here)."""

    problem: Any
    index: int

    @property
    def key(self) -> tuple[str, int]:
        return (self.problem.name, self.index)


class Recipe(Protocol):
    """What to build where, and how to run one unit (`ProveRecipe` is the real one). Must pickle: it travels to
    Ray actors. It may also have `run_many(generator, checker, problem, indices) -> list[result]` for a job of
    several units of one problem, `group_size()` (how many units of a problem make a job) and `close()`."""

    def make_generator(self) -> Any: ...

    def make_checker(self) -> Any: ...

    def run(self, generator: Any, checker: Any, problem: Any, index: int) -> Any: ...


class Executor(Protocol):
    def stream(self, units: Iterable[WorkUnit]) -> Iterator[tuple[WorkUnit, Any]]: ...

    def close(self) -> None: ...


def close_all(*resources: Any) -> None:
    """Close whatever of `resources` can be closed."""
    for resource in resources:
        close = getattr(resource, "close", None)
        if callable(close):
            close()


class BoundRecipe:
    """A recipe with its generator (backend) and checker (verifier) built: runs units where they are."""

    def __init__(self, recipe: Recipe, generator: Any, checker: Any):
        self.recipe, self.generator, self.checker = recipe, generator, checker

    def __call__(self, problem: Any, index: int) -> Any:
        return self.recipe.run(self.generator, self.checker, problem, index)

    def run_many(self, problem: Any, indices: list[int]) -> list[Any]:
        many = getattr(self.recipe, "run_many", None)
        if many is not None and len(indices) > 1:
            return many(self.generator, self.checker, problem, indices)
        return [self(problem, i) for i in indices]

    def group_size(self) -> int:
        size = getattr(self.recipe, "group_size", None)
        return size() if callable(size) else 1


def jobs(units: Iterable[WorkUnit], group: int) -> Iterator[list[WorkUnit]]:
    """Consecutive units of the same problem, at most `group` per job, in the order of `units`. A full job is
    handed out at once, so the next unit is drawn only after its results are in (stop-at-first sees them)."""
    job: list[WorkUnit] = []
    for unit in units:
        if job and unit.problem.name != job[0].problem.name:
            yield job
            job = []
        job.append(unit)
        if len(job) >= group:
            yield job
            job = []
    if job:
        yield job


def run_job(work: Any, job: list[WorkUnit]) -> list[tuple[WorkUnit, Any]]:
    """Every unit of `job` with its result, from `work` (a `BoundRecipe`, or any object with
    `run_many(problem, indices)`, or a callable `work(problem, index)`)."""
    problem, indices = job[0].problem, [u.index for u in job]
    many = getattr(work, "run_many", None)
    results = many(problem, indices) if many is not None else [work(problem, i) for i in indices]
    return list(zip(job, results, strict=True))


class LocalExecutor:
    """Everything in this process, one job after the other (the backend batches inside a job).

    Given a `recipe`, it builds the generator and checker on the first job and closes them in `close()`; given
    `work` already bound (a `BoundRecipe`, ...), it uses it and leaves closing to its owner."""

    def __init__(self, recipe: Recipe | None = None, group: int = 1, work: Any = None):
        self.recipe, self.group, self.work = recipe, group, work
        self._built = False

    def stream(self, units: Iterable[WorkUnit]) -> Iterator[tuple[WorkUnit, Any]]:
        for job in jobs(units, self.group):
            if self.work is None:
                self.work = BoundRecipe(self.recipe, self.recipe.make_generator(), self.recipe.make_checker())
                self._built = True
            yield from run_job(self.work, job)

    def close(self) -> None:
        if self._built:
            close_all(self.work.generator, self.work.checker, self.recipe)
            self.work, self._built = None, False


@dataclass
class DriveStats:
    submitted: int = 0
    recorded: int = 0
    duplicates: int = 0  # results for keys already recorded (never written twice)
    skipped: int = 0  # units already done before this run started (resume)
    skipped_proved: int = 0  # units not run because their problem was already proved (stop_at_first)


def drive(units: Iterable[WorkUnit], executor: Executor, store: Any, run_id: Any, *,
          on_result: Callable[[WorkUnit, Any], None] | None = None, stop_at_first: bool = False) -> DriveStats:
    """Stream units through `executor`, record every result once in `store`: the only code that writes a run
    store, in one process and on Ray. Resumes: done keys are skipped. With `stop_at_first`, a problem's
    remaining units are skipped once one attempt proved it (attempts in the store count too)."""
    stats = DriveStats()
    done: set[tuple[str, int]] = set(store.done(run_id))
    proved = {a.problem for a in store.attempts(run_id, status=Status.PROVED.value)} if stop_at_first else set()

    def todo() -> Iterator[WorkUnit]:
        for unit in units:
            if unit.key in done:
                stats.skipped += 1
            elif unit.problem.name in proved:
                stats.skipped_proved += 1
            else:
                stats.submitted += 1
                yield unit

    for unit, attempt in executor.stream(todo()):
        if unit.key in done:
            stats.duplicates += 1
            continue
        if store.record(run_id, attempt) is False:
            stats.duplicates += 1
        else:
            stats.recorded += 1
        done.add(unit.key)
        if stop_at_first and attempt.status == Status.PROVED.value:
            proved.add(unit.problem.name)
        if on_result is not None:
            on_result(unit, attempt)
    return stats


def run_batch(problems: Iterable[Any], store: Any, run_id: Any, make_work: Callable[[], Any],
              attempts_per_problem: int, stop_at_first: bool = False,
              on_result: Callable[[Any, Any], None] | None = None, group: int | None = None) -> DriveStats:
    """Run every pending (problem, index < attempts_per_problem) unit in this process and record its Attempt.

    `make_work()` is called once, in this (driver) process, and returns a `BoundRecipe`, or any object with
    `run_many(problem, indices) -> list[Attempt]`, or a callable `work(problem, index) -> Attempt`. A problem's
    attempts run `group` at a time (default: the work's `group_size()`, else 1); `on_result(problem, attempt)`.
    """
    work = make_work()
    group = group or (work.group_size() if hasattr(work, "group_size") else 1)
    units = [WorkUnit(p, i) for p in problems for i in range(attempts_per_problem)]
    report = None if on_result is None else (lambda unit, attempt: on_result(unit.problem, attempt))
    return drive(units, LocalExecutor(group=group, work=work), store, run_id, on_result=report,
                 stop_at_first=stop_at_first)
