"""`subgoal eval`: a benchmark x model x strategy x budget run, resumable, in one process or on Ray.

Every problem gets `samples` (>= k) attempts, one work unit per (problem, attempt index), run by the same
recipe and runner as `subgoal prove` (`prover.recipe.ProveRecipe`, `prover.runner.drive`: every attempt a
concurrent task over one engine and one Lean checker, in this process or on Ray actors; the driver is the only
writer of the run store), then the report (pass@k for every k <= n with bootstrap intervals, verdict counts,
cost, completions cut at --max-tokens) is rebuilt from the store and written to `<out>/report.json`.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from data.manifest import Manifest, check_resume, content_id, make_manifest, problems_id, read_manifest
from eval.errors import EvalError
from eval.report import build_report, write_report
from prover.recipe import INTERACTIONS, RESUME_KEYS, ProveRecipe, open_run
from prover.runner import DriveStats, Executor, LocalExecutor, WorkUnit, drive, run_async

if TYPE_CHECKING:
    from data.config import Config
    from data.problem import Problem
    from data.store import Attempt, RunStore
    from lean_env.toolchain import Toolchain

STRATEGIES = ("sample", "decompose", "repair", "tree")
CONFIG_META = "eval_config"  # run_meta key: the settings of the run (rewritten while it has no attempts)
CUT_WARNING = 0.05  # warn when more than this fraction of completions stopped at --max-tokens


@dataclass
class EvalSpec:
    problem_set: str  # registry name, JSONL / Lean path, or HF dataset id
    out: Path  # run directory: <out>/store.sqlite, <out>/report.json
    strategy: str = "sample"
    k: int = 1
    samples: int | None = None  # attempts per problem; default k
    split: str | None = None
    limit: int | None = None  # first N problems only (smoke runs)
    putnam_answers: Literal["given", "produced"] = "produced"
    seed: int = 0  # attempt i of every problem samples from prover.search.attempt_seed(seed, problem, i)
    budget: dict[str, Any] = field(default_factory=dict)  # prover.search.Budget fields, per attempt
    sampling: dict[str, Any] = field(default_factory=dict)  # SamplingParams fields (temperature, top_p, max_tokens)
    options: dict[str, Any] = field(default_factory=dict)  # strategy knobs (mode, rounds, width, ...)
    prompts: str | None = None  # TOML file overriding prompt templates
    interaction: str = "repl"  # tree search steps through: repl | dojo
    model: str | None = None  # recorded model id (default: the configured model)
    ray: bool = False
    ray_address: str | None = None
    workers: int | None = None  # Ray generation workers (default: one per GPU / TP group)
    max_in_flight: int | None = None  # attempts live at once (default: sized by the engine and the Lean pool)
    n_boot: int = 1000

    @property
    def n(self) -> int:
        return self.samples if self.samples is not None else self.k

    def validate(self) -> None:
        if self.strategy not in STRATEGIES:
            raise EvalError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.k < 1:
            raise EvalError(f"-k must be >= 1, got {self.k}")
        if self.n < self.k:
            raise EvalError(f"--samples ({self.n}) must be >= -k ({self.k}): pass@k needs n >= k samples")
        if self.limit is not None and self.limit < 1:
            raise EvalError(f"--limit must be >= 1, got {self.limit}")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise EvalError(f"--max-in-flight must be >= 1, got {self.max_in_flight}")
        if self.interaction not in INTERACTIONS:
            raise EvalError(f"--interaction must be {' or '.join(INTERACTIONS)}, got {self.interaction!r}")
        if self.putnam_answers not in ("given", "produced"):
            raise EvalError(f"--putnam-answers must be 'given' or 'produced', got {self.putnam_answers!r}")


def versions() -> dict[str, str]:
    """Versions that decide a result: ours, the ML stack, Python (Lean's come with each verdict)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("subgoal", "torch", "transformers", "vllm", "ray"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def select_problems(spec: EvalSpec, config: Config) -> list[Problem]:
    """The run's problems: loaded, split-filtered, limited, and PutnamBench answers set per the setting."""
    from data import load_problems

    problems = load_problems(spec.problem_set, config, split=spec.split)
    if spec.limit is not None:
        problems = problems[: spec.limit]
    if not problems:
        raise EvalError(f"problem set {spec.problem_set!r} has no problems" + (f" in split {spec.split!r}" if spec.split else ""))
    if spec.putnam_answers == "given" and any(p.extra.get("answers") for p in problems):
        problems = [_with_given_answers(p) for p in problems]
    return problems


def _with_given_answers(problem: Problem) -> Problem:
    """PutnamBench 'answer given': the recorded answer replaces the abbrev's `sorry` (lean_env.text helper)."""
    if not problem.extra.get("answers"):
        return problem
    from lean_env.text import fill_answers

    return fill_answers(problem)


def run_config(spec: EvalSpec, config: Config, problems: list[Problem], recipe: ProveRecipe,
               toolchain: Toolchain | None = None) -> dict[str, Any]:
    """The run's settings as recorded in its store: the recipe's (what decides an attempt) plus the run's. Lean's
    versions are those of the toolchain found (`toolchain`, a `lean_env.toolchain.Toolchain`), never the
    configured pin: a REPL outside a Lake project has none to show."""
    return {
        **recipe.settings(),
        "problem_set": spec.problem_set,
        "split": spec.split or "",
        "model_content": content_id(recipe.model_id, weights_only=True),  # the model by its weights, not its path
        "backend": config.model.backend,
        "k": spec.k,
        "samples": spec.n,
        "putnam_answers": spec.putnam_answers,
        "limit": spec.limit,
        "problems": [p.name for p in problems],
        "lean": {"lean_version": getattr(toolchain, "lean_version", None),
                 "mathlib_version": getattr(toolchain, "mathlib_version", None),
                 "repl": str(getattr(toolchain, "repl", "") or ""), "timeout_s": config.lean.timeout_s},
        "versions": versions(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "distributed": "ray" if spec.ray else "local",
    }


def _budget(budget: dict[str, Any], strategy: str) -> dict[str, Any]:
    """The per-attempt budget as recorded, samples by the one rule (`with_default_samples`)."""
    from prover.search import Budget
    from prover.search.options import with_default_samples

    budget = with_default_samples(strategy, budget)
    try:
        return Budget(**budget).limits()
    except TypeError as e:
        raise EvalError(f"bad budget {budget}: {e}") from None


def _sampling(sampling: dict[str, Any]) -> dict[str, Any]:
    from prover.generate.base import SamplingParams

    try:
        SamplingParams(**sampling)
    except TypeError as e:
        raise EvalError(f"bad sampling parameters {sampling}: {e}") from None
    return dict(sampling)


def eval_manifest(current: dict[str, Any], problems: list[Problem]) -> Manifest:
    """What a resumed eval must match: the resume settings, the seed, and the model, problems and prompts by
    content, so a checkpoint retrained at the same path starts a new run instead of continuing the old one."""
    inputs = {"--model": current["model_content"], "--problems": problems_id(problems)}
    if current["prompts"]:
        inputs["--prompts"] = content_id(current["prompts"])
    return make_manifest("eval", {k: current[k] for k in RESUME_KEYS if k != "seed" and k in current},
                         {"seed": current["seed"]}, inputs)


def length_cuts(attempts: list[Attempt]) -> dict[str, Any]:
    """How many completions stopped at --max-tokens (finish_reason "length"): a truncated proof fails, so a
    large share means the run measures the token cap, not the prover."""
    completions = sum(int((a.sampling or {}).get("completions", 0)) for a in attempts)
    cut = sum(int((a.sampling or {}).get("cut_at_max_tokens", 0)) for a in attempts)
    return {"completions": completions, "cut_at_max_tokens": cut,
            "fraction": round(cut / completions, 4) if completions else 0.0}


@dataclass
class EvalResult:
    report: dict[str, Any]
    report_path: Path
    recorded: int  # attempts written by this invocation
    skipped: int  # attempts found already done (resume)
    wall_s: float


def make_recipe(spec: EvalSpec, config: Config, model_id: str,
                recipe_type: type[ProveRecipe] = ProveRecipe) -> ProveRecipe:
    """The run's unit of work; its prompts file is read here, so a bad one fails before Lean or a model start
    (and the parsed templates travel with the recipe to Ray actors)."""
    recipe = recipe_type(strategy=spec.strategy, budget=_budget(spec.budget, spec.strategy),
                         model_settings=config.model, lean_settings=config.lean, seed=spec.seed,
                         prompts_path=spec.prompts, sampling=_sampling(spec.sampling), options=dict(spec.options),
                         interaction=spec.interaction, model_id=model_id, planner_settings=config.planner)
    recipe.prompts()
    return recipe


def run_eval(
    spec: EvalSpec,
    config: Config,
    *,
    recipe_type: type[ProveRecipe] = ProveRecipe,
    ray_runtime_env: dict[str, Any] | None = None,
    on_result: Callable[[WorkUnit, Attempt], None] | None = None,
    progress: bool = True,
    executor_hook: Callable[[Executor], None] | None = None,
) -> EvalResult:
    """Run (or resume) one evaluation and write its report. See `EvalSpec` for the knobs. `recipe_type` is a
    `ProveRecipe` subclass (tests: one whose `make_generator` returns a scripted backend)."""
    from data.store import check_run_directory, remove_if_empty, run_directory

    spec.validate()
    start = time.perf_counter()
    problems = select_problems(spec, config)
    model_id = spec.model or config.model.model or ""
    if not model_id:
        raise EvalError("no model given: pass --model (an HF id or a checkpoint directory)")
    from lean_env.toolchain import locate

    local = getattr(config.lean, "checker", "auto") == "local" or not getattr(config.lean, "remote_url", None)
    # no Lean here (and no remote checker): its one message now, before a model loads or a directory exists
    toolchain = locate(config.lean) if local else None
    recipe = make_recipe(spec, config, model_id, recipe_type)  # a bad prompts file stops here
    current = run_config(spec, config, problems, recipe, toolchain)
    fresh = not check_run_directory(spec.out).exists()
    recipe.check_generator()  # no such model / server: now, not after a run directory exists
    out = run_directory(spec.out)
    try:
        return _run(spec, config, recipe, problems, current, out, start, ray_runtime_env, on_result, progress,
                    executor_hook)
    except BaseException:
        if fresh:
            remove_if_empty(out)  # a start that failed before any attempt leaves no empty run directory behind
        raise


def _run(spec: EvalSpec, config: Config, recipe: ProveRecipe, problems: list[Problem], current: dict[str, Any],
         out: Path, start: float, ray_runtime_env: dict[str, Any] | None,
         on_result: Callable[[WorkUnit, Attempt], None] | None, progress: bool,
         executor_hook: Callable[[Executor], None] | None) -> EvalResult:
    from data.store import RunStore

    # Index-major over problems: early pass@1 everywhere; every pending attempt is its own task.
    units = [WorkUnit(p, i) for i in range(spec.n) for p in problems]
    with RunStore(out) as store:
        run_id, recorded_config = open_run(store, out.name, current, out, CONFIG_META)
        recorded_config = {**recorded_config, "versions": {**store.run(run_id).versions,
                                                           **(recorded_config.get("versions") or {})}}
        done = store.done(run_id)
        check_resume(out, eval_manifest(current, problems), resuming=bool(done) and read_manifest(out) is not None,
                     what=("recorded attempts",))  # the model, problems and prompts by content too
        needs_work = any(u.key not in done for u in units)  # complete already: no actors, no model load
        if spec.ray and needs_work:
            from eval.distributed import RayExecutor

            executor: Executor = RayExecutor(recipe, address=spec.ray_address, workers=spec.workers,
                                        gpus_per_worker=config.model.tensor_parallel_size,
                                        max_in_flight=spec.max_in_flight, runtime_env=ray_runtime_env)
        else:
            executor = LocalExecutor(recipe, max_live=spec.max_in_flight)  # builds the model only if needed
        if executor_hook is not None:
            executor_hook(executor)
        stats = DriveStats()
        drive_t0 = time.perf_counter()
        try:
            run_async(_drive_with_progress(units, executor, store, run_id, on_result, progress, stats))
            # the report while the engine may still be closing (it began once the last generation was asked for)
            run = {**recorded_config, **{k: current[k] for k in ("samples", "k", "problems")}, "name": out.name}
            attempts = store.attempts(run_id)
            report = build_report(attempts, run, n_boot=spec.n_boot, seed=spec.seed)
            report["generation"] = length_cuts(attempts)
            report["run_wall_s"] = round(time.perf_counter() - drive_t0, 2)  # this invocation's clock
            path = write_report(report, out)
        finally:
            executor.close()
    return EvalResult(report, path, stats.recorded, stats.skipped, time.perf_counter() - start)


async def _drive_with_progress(units: list[WorkUnit], executor: Executor, store: RunStore, run_id: int,
                               on_result: Callable[[WorkUnit, Attempt], None] | None, progress: bool,
                               stats: DriveStats) -> DriveStats:
    if not progress:
        return await drive(units, executor, store, run_id, on_result=on_result, stats=stats)
    from rich.console import Console

    from eval.progress import AttemptProgress

    done = store.done(run_id)
    todo = sum(1 for u in units if u.key not in done)
    solved: set[str] = set()
    with AttemptProgress("eval", todo, Console(stderr=True)) as bar:  # (a library module: not the CLI's console)

        def tick(unit: WorkUnit, attempt: Attempt) -> None:
            if attempt.proved:
                solved.add(unit.problem.name)
            bar.advance(f"{len(solved)} newly proved problems")
            if on_result is not None:
                on_result(unit, attempt)

        return await drive(units, executor, store, run_id, on_result=tick, stats=stats)
