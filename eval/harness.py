"""`subgoal eval`: a benchmark x model x strategy x budget run, resumable, in one process or on Ray.

Every problem gets `samples` (>= k) attempts, one work unit per (problem, attempt index), run by the same
recipe as `subgoal prove` (`prover.batch.ProveRecipe`). Units run through `eval.distributed` (the driver is
the only writer of the run store; a problem's pending one-sample attempts travel as one job, drawn in one
generation call), then the report (pass@k for every k <= n with bootstrap intervals, verdict counts, cost)
is rebuilt from the store and written to `<out>/report.json`.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from data.manifest import Manifest, check_resume, content_id, make_manifest, problems_id, read_manifest
from eval.distributed import LocalExecutor, RayExecutor, WorkUnit, drive
from eval.errors import EvalError
from eval.report import build_report, write_report
from prover.batch import INTERACTIONS, ProveRecipe

STRATEGIES = ("sample", "decompose", "repair", "tree")
CONFIG_META = "eval_config"  # run_meta key: the settings of the run (rewritten while it has no attempts)
# Recorded config keys that must match when a run is resumed: mixing them would make pass@k meaningless.
RESUME_KEYS = ("problem_set", "split", "model", "strategy", "putnam_answers", "budget", "sampling", "options", "seed",
               "prompts", "interaction")


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
    max_in_flight: int | None = None
    worker_concurrency: int = 1  # Ray: attempts run at once per generation actor (thread-safe backends only)
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
        if self.worker_concurrency < 1 or (self.worker_concurrency > 1 and self.strategy == "tree"):
            raise EvalError("--worker-concurrency must be >= 1, and 1 for the tree strategy (one REPL session per actor)")
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


def select_problems(spec: EvalSpec, config: Any) -> list[Any]:
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


def _with_given_answers(problem: Any) -> Any:
    """PutnamBench 'answer given': the recorded answer replaces the abbrev's `sorry` (lean_env.text helper)."""
    if not problem.extra.get("answers"):
        return problem
    from lean_env.text import fill_answers

    return fill_answers(problem)


def run_config(spec: EvalSpec, config: Any, problems: list[Any], model_id: str) -> dict[str, Any]:
    current_budget = _budget(spec.budget, spec.strategy)
    return {
        "problem_set": spec.problem_set,
        "split": spec.split or "",
        "model": model_id,
        "model_content": content_id(model_id, weights_only=True),  # the model by its weights, not its path
        "backend": config.model.backend,
        "strategy": spec.strategy,
        "k": spec.k,
        "samples": spec.n,
        "budget": current_budget,
        "sampling": _sampling(spec.sampling),
        "options": dict(spec.options),
        "seed": spec.seed,
        "prompts": spec.prompts or "",
        "interaction": spec.interaction,
        "putnam_answers": spec.putnam_answers,
        "limit": spec.limit,
        "problems": [p.name for p in problems],
        "lean": {"lean_version": config.lean.lean_version, "timeout_s": config.lean.timeout_s},
        "versions": versions(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "distributed": "ray" if spec.ray else "local",
    }


def _budget(budget: dict[str, Any], strategy: str) -> dict[str, Any]:
    """The per-attempt budget, with the strategy's default sample count unless the user set one: one attempt
    of `sample` is one sample, the unit pass@k counts (Budget's own default would allow 32)."""
    from prover.search import DEFAULT_SAMPLES, Budget

    budget = {"samples": DEFAULT_SAMPLES.get(strategy, 1), **budget}
    try:
        return Budget(**budget).limits()
    except TypeError as e:
        raise EvalError(f"bad budget {budget}: {e}") from None


def _sampling(sampling: dict[str, Any]) -> dict[str, Any]:
    from prover.generate.base import SamplingParams

    try:
        params = SamplingParams(**sampling)
    except TypeError as e:
        raise EvalError(f"bad sampling parameters {sampling}: {e}") from None
    return {k: v for k, v in asdict(params).items() if k in ("temperature", "top_p", "max_tokens")}


def eval_manifest(current: dict[str, Any], problems: list[Any]) -> Manifest:
    """What a resumed eval must match: the resume settings, the seed, and the model, problems and prompts by
    content, so a checkpoint retrained at the same path starts a new run instead of continuing the old one."""
    inputs = {"--model": current["model_content"], "--problems": problems_id(problems)}
    if current["prompts"]:
        inputs["--prompts"] = content_id(current["prompts"])
    return make_manifest("eval", {k: current[k] for k in RESUME_KEYS if k != "seed"}, {"seed": current["seed"]},
                         inputs)


def _check_resume(recorded: dict[str, Any], current: dict[str, Any], out: Path) -> None:
    for key in RESUME_KEYS:
        if key in recorded and recorded[key] != current[key]:
            raise EvalError(f"{out} was started with {key}={recorded[key]!r}, not {current[key]!r}; "
                            "use another --out (or the same settings to resume)")


@dataclass
class EvalResult:
    report: dict[str, Any]
    report_path: Path
    recorded: int  # attempts written by this invocation
    skipped: int  # attempts found already done (resume)
    wall_s: float


def make_recipe(spec: EvalSpec, config: Any, budget: dict[str, Any], model_id: str,
                recipe_type: type[ProveRecipe] = ProveRecipe) -> ProveRecipe:
    """The run's unit of work; its prompts file is read here, so a bad one fails before Lean or a model start
    (and the parsed templates travel with the recipe to Ray actors)."""
    recipe = recipe_type(strategy=spec.strategy, budget=dict(budget), model_settings=config.model,
                         lean_settings=config.lean, seed=spec.seed, prompts_path=spec.prompts,
                         sampling=dict(spec.sampling), options=dict(spec.options), interaction=spec.interaction,
                         model_id=model_id)
    recipe.prompts()
    return recipe


def run_eval(
    spec: EvalSpec,
    config: Any,
    *,
    recipe_type: type[ProveRecipe] = ProveRecipe,
    ray_runtime_env: dict[str, Any] | None = None,
    on_result: Callable[[WorkUnit, Any], None] | None = None,
    progress: bool = True,
    executor_hook: Callable[[Any], None] | None = None,
) -> EvalResult:
    """Run (or resume) one evaluation and write its report. See `EvalSpec` for the knobs. `recipe_type` is a
    `ProveRecipe` subclass (tests: one whose `make_generator` returns a scripted backend)."""
    from data.store import RunStore

    spec.validate()
    start = time.perf_counter()
    problems = select_problems(spec, config)
    model_id = spec.model or config.model.model or ""
    if not model_id:
        raise EvalError("no model given: pass --model (an HF id or a checkpoint directory)")
    current = run_config(spec, config, problems, model_id)
    recipe = make_recipe(spec, config, current["budget"], model_id, recipe_type)  # a bad prompts file stops here
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    # Round-robin over problems, a group of attempts at a time: early pass@1 everywhere, and each problem's
    # group (one generation call when the strategy samples one proof per attempt) stays together.
    group = recipe.group_size()
    units = [WorkUnit(p, i) for start in range(0, spec.n, group) for p in problems
             for i in range(start, min(spec.n, start + group))]
    with RunStore(out) as store:
        run_id = store.start_run(out.name, current)
        done = store.done(run_id)
        if not done:  # nothing recorded yet (new, or an earlier start that failed): these settings are the run's
            store.set_meta(run_id, CONFIG_META, current)
        recorded_config = _recorded_config(store, run_id)
        _check_resume(recorded_config, current, out)  # runs recorded before manifests: their settings at least
        check_resume(out, eval_manifest(current, problems), resuming=bool(done) and read_manifest(out) is not None,
                     what=("recorded attempts",))
        needs_work = any(u.key not in done for u in units)  # complete already: no actors, no model load
        executor = (RayExecutor(recipe, address=spec.ray_address, workers=spec.workers,
                                gpus_per_worker=config.model.tensor_parallel_size,
                                max_in_flight=spec.max_in_flight, worker_concurrency=spec.worker_concurrency,
                                runtime_env=ray_runtime_env, group=group)
                    if spec.ray and needs_work else LocalExecutor(recipe, group))  # LocalExecutor builds lazily
        if executor_hook is not None:
            executor_hook(executor)
        try:
            stats = _drive_with_progress(units, executor, store, run_id, on_result, progress)
        finally:
            executor.close()
        run = {**recorded_config, **{k: current[k] for k in ("samples", "k", "problems")}, "name": out.name}
        report = build_report(store.attempts(run_id), run, n_boot=spec.n_boot, seed=spec.seed)
    path = write_report(report, out)
    return EvalResult(report, path, stats.recorded, stats.skipped, time.perf_counter() - start)


def _recorded_config(store: Any, run_id: int) -> dict[str, Any]:
    info = store.run(run_id)
    config = store.get_meta(run_id, CONFIG_META) or info.config
    return {**config, "versions": {**info.versions, **(config.get("versions") or {})}}


def _drive_with_progress(units, executor, store, run_id, on_result, progress: bool):
    if not progress:
        return drive(units, executor, store, run_id, on_result=on_result)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from eval.cli.common import err_console

    done = store.done(run_id)
    todo = sum(1 for u in units if u.key not in done)
    solved: set[str] = set()
    with Progress(TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), console=err_console, transient=False) as bar:
        task = bar.add_task("attempts", total=todo, info="")

        def tick(unit: WorkUnit, attempt: Any) -> None:
            if attempt.status == "proved":
                solved.add(unit.problem.name)
            bar.update(task, advance=1, info=f"{len(solved)} newly proved problems")
            if on_result is not None:
                on_result(unit, attempt)

        return drive(units, executor, store, run_id, on_result=tick)
