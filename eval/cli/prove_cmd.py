"""`subgoal prove TARGET`: prove a statement, fill the sorries of a .lean file, or run a problem set in batch."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from eval.cli import checks
from eval.cli import options as shared
from eval.cli.common import config, console, default_out, err_console

if TYPE_CHECKING:  # the CLI starts without the library: these names are for the signatures only
    from data.config import Config
    from data.problem import Problem
    from data.store import Attempt, RunStore
    from eval.cli.live_view import Outcome
    from lean_env.checker import Checker
    from prover.generate.base import Backend, StreamingBackend
    from prover.recipe import ProveRecipe
    from prover.runner import DriveStats, WorkUnit


def register(app: typer.Typer) -> None:
    @app.command("prove")
    def prove(
        ctx: typer.Context,
        target: str = typer.Argument(..., metavar="TARGET", help="A statement (\"theorem t (a b : ℕ) : a + b = b + a "
                                     ":= by\"), a .lean file whose sorries to fill, or a problem set / JSONL (batch)."),
        strategy: str = shared.STRATEGY,
        model: str = shared.MODEL,
        backend: str = shared.BACKEND,
        base_url: str = shared.BASE_URL,
        planner_model: str = shared.PLANNER_MODEL,
        planner_backend: str = shared.PLANNER_BACKEND,
        planner_base_url: str = shared.PLANNER_BASE_URL,
        k: int = typer.Option(None, "-k", min=1, max=checks.MAX_ATTEMPTS, help="pass@k the run is sized for: attempts per problem unless -n "
                              "(default 8, or -n)."),
        samples: int = shared.SAMPLES,
        all_attempts: bool = typer.Option(False, "--all-attempts", help="Run all n attempts even after a proof "
                                          "(pass@k); default: stop at the first verified proof."),
        budget_samples: int = shared.BUDGET_SAMPLES,
        budget_tokens: int = shared.BUDGET_TOKENS,
        budget_lean_calls: int = shared.BUDGET_LEAN_CALLS,
        budget_wall_s: float = shared.BUDGET_WALL_S,
        max_tokens: int = shared.MAX_TOKENS,
        temperature: float = shared.TEMPERATURE,
        top_p: float = shared.TOP_P,
        seed: int = shared.SEED,
        mode: str = typer.Option("complete", "--mode", help="Whole-proof prompt: complete (non-CoT) | cot."),
        prompts: Path = shared.PROMPTS,
        interaction: str = shared.INTERACTION,
        rounds: int = typer.Option(None, "--rounds", min=1, help="repair: repairs per chain (default: repair's)."),
        lemma_samples: int = typer.Option(None, "--lemma-samples", min=1, help="decompose: samples per lemma "
                                          "(default: decompose's)."),
        max_depth: int = typer.Option(None, "--max-depth", min=0, help="decompose: recursion depth (default: "
                                      "decompose's)."),
        width: int = typer.Option(None, "--width", min=1, help="tree: tactic candidates per state (default: tree's)."),
        out: Path = typer.Option(None, "--out", "-o", help="Batch: run directory (default <run_dir>/<set>). "
                                 ".lean: the completed file (default NAME.proved.lean beside it)."),
        in_place: bool = typer.Option(False, "--in-place", help=".lean: overwrite the input file."),
        header: str = typer.Option(None, "--header", help="Statement: header text (default: import Mathlib ...)."),
        split: str = shared.SPLIT,
        limit: int = shared.LIMIT,
        lean_workers: int = shared.LEAN_WORKERS,
        lean_timeout: float = shared.LEAN_TIMEOUT,
        checker: str = shared.CHECKER,
        checker_url: str = shared.CHECKER_URL,
        no_live: bool = typer.Option(False, "--no-live", help="No live view (logs only)."),
        max_in_flight: int = shared.MAX_IN_FLIGHT,
    ) -> None:
        """Prove a statement, fill a .lean file's sorries, or prove a problem set in batch (resumable)."""
        from data.store import check_run_directory
        from eval.cli.prove_targets import target_kind
        from lean_env import make_verifier
        from prover.errors import ProverError
        from prover.recipe import ProveRecipe
        from prover.search import STRATEGIES
        from prover.search.options import MODES

        if strategy not in STRATEGIES:
            raise ProverError(f"unknown strategy {strategy!r} (choose from {', '.join(STRATEGIES)})")
        if mode not in MODES:
            raise ProverError(f"--mode must be {' or '.join(MODES)}, not {mode!r}")
        k = k if k is not None else (samples if samples is not None else 8)
        n = samples if samples is not None else k
        if k < 1 or n < k:
            raise ProverError(f"-k must be >= 1 and -n/--samples >= -k (pass@k needs n >= k), got -k {k} -n {n}")
        if planner_model and strategy != "decompose":
            raise ProverError("--planner-model writes decomposition sketches: use it with --strategy decompose")
        cfg = config(ctx, model={"model": model, "backend": backend, "base_url": base_url},
                     planner=shared.planner_overrides(planner_model, planner_backend, planner_base_url),
                     lean={"workers": lean_workers, "timeout_s": lean_timeout,
                           "checker": checker, "remote_url": checker_url})
        budget = shared.given(samples=budget_samples, tokens=budget_tokens, lean_calls=budget_lean_calls,
                              wall_s=budget_wall_s)
        options = _strategy_options(strategy, mode, rounds=rounds, lemma_samples=lemma_samples, max_depth=max_depth,
                                    width=width)
        recipe = ProveRecipe(strategy=strategy, budget=budget, model_settings=cfg.model, lean_settings=cfg.lean,
                             seed=seed, prompts_path=str(prompts) if prompts else None,
                             sampling=shared.given(temperature=temperature, top_p=top_p, max_tokens=max_tokens),
                             options=options, interaction=interaction, planner_settings=cfg.planner)
        recipe.prompts()  # a bad --prompts file fails here, before Lean or the model start
        kind = target_kind(target)
        problems, text, dest = _read_target(target, kind, cfg, split, limit, out, in_place, header)
        if kind == "problem_set" and out is not None:
            check_run_directory(out)  # before Lean and the model start
        verifier = make_verifier(cfg.lean)  # no Lean: LeanNotFound, before loading a model
        try:
            recipe.check_generator()  # no such model / no server: one line now, not after a model load
            if kind == "problem_set":
                code = _batch(target, problems, cfg, recipe, verifier, n, not all_attempts, out, max_in_flight)
            else:
                gen = _load_generator(recipe, cfg)
                try:
                    code = _interactive(problems, text, dest, recipe, gen, verifier, n, no_live)
                finally:
                    gen.close()
        finally:
            recipe.close()  # tree search's proof session
            verifier.close(cancel_running=True)  # what still runs (after Ctrl-C) is wanted by no one: no waiting
        raise typer.Exit(code)


def _strategy_options(strategy: str, mode: str, **flags: int | None) -> dict[str, Any]:
    """The options a prove run records: the mode and the strategy's own flags, unset ones at the strategy's
    defaults (its options dataclass), so the record names every knob of the strategy."""
    from prover.search.options import option_names, options_type

    defaults = options_type(strategy)()
    own = [name for name in flags if name in option_names(strategy)]
    return {"mode": mode, **{name: flags[name] if flags[name] is not None else getattr(defaults, name) for name in own}}


def _load_generator(recipe: ProveRecipe, cfg: Config) -> Backend | StreamingBackend:
    err_console.print(f"loading {cfg.model.model} ({cfg.model.backend})", highlight=False)
    return recipe.make_generator()


def _read_target(target: str, kind: str, cfg: Config, split: str | None, limit: int | None, out: Path | None,
                 in_place: bool, header: str | None) -> tuple[list[Problem], str | None, Path | None]:
    """The problems of TARGET (and, for a .lean file, its text and where the completed file goes)."""
    from eval.cli.prove_targets import completed_file_path, lean_file_problems, statement_problem

    if kind == "statement":
        return [statement_problem(target, header)], None, None
    if kind == "lean_file":
        path = Path(target)
        dest = completed_file_path(path, out, in_place)
        text, problems = lean_file_problems(path)
        return problems, text, dest
    from data import load_problems

    problems = load_problems(target, cfg, split=split)
    return (problems[:limit] if limit is not None else problems), None, None


def _interactive(problems: list[Problem], text: str | None, dest: Path | None, recipe: ProveRecipe,
                 gen: Backend | StreamingBackend, verifier: Checker, k: int, no_live: bool) -> int:
    """Prove each problem with the live view, then write the completed .lean file and print the outcomes."""
    from eval.cli.live_view import prove_interactive

    outcomes = prove_interactive(problems, recipe, gen, verifier, k, err_console, live=not no_live)
    proofs = {o.problem.name: o.result.text for o in outcomes if o.proved}
    try:
        _write_and_print(outcomes, proofs, problems, text, dest)
    except KeyboardInterrupt:  # held until the results were out (stops_held); typer would exit 130 silently
        err_console.print("interrupted", highlight=False)
        raise
    if any(o.interrupted for o in outcomes):
        return 130
    return 0 if len(proofs) == len(problems) else 1


def _write_and_print(outcomes: list[Outcome], proofs: dict[str, str], problems: list[Problem], text: str | None,
                     dest: Path | None) -> None:
    """The .lean file first, whole or not at all, then the outcomes, with a stop signal held until both are done:
    what is printed is on disk, and an interrupted write leaves the old file as it was."""
    from data.files import write_text_atomically
    from data.lean_file import fill_sorries
    from eval.cli.signals import stops_held

    with stops_held():
        written = text is not None and dest is not None and bool(proofs)  # a .lean file
        if written:
            write_text_atomically(dest, fill_sorries(text, problems, proofs))
        for o in outcomes:
            if o.proved:
                err_console.print(f"[bold green]proved[/] {o.problem.name}", highlight=False)
                console.print(o.result.text.rstrip(), markup=False, highlight=False)
            else:
                why = "interrupted" if o.interrupted else "not proved"
                err_console.print(f"[bold red]{why}[/] {o.problem.name}; best so far: {o.best.what or 'nothing'} "
                                  f"({o.best.status})", highlight=False)
                if o.best.text:
                    console.print(o.best.text.rstrip(), markup=False, highlight=False)
        if written:
            err_console.print(f"{len(proofs)}/{len(problems)} sorry theorems proved; wrote {dest}", highlight=False)
        elif text is not None and dest is not None:
            err_console.print(f"0/{len(problems)} sorry theorems proved; nothing written", highlight=False)


def _batch(target: str, problems: list[Problem], cfg: Config, recipe: ProveRecipe, verifier: Checker, n: int,
           stop_at_first: bool, out: Path | None, max_in_flight: int | None) -> int:
    """Every problem's n attempts through the runner into the run store `out`; resumes, refuses changed settings.
    The store (and with it the run directory's lock) is open before the model loads: a second run on the same
    `--out` is refused in one line, not after minutes of loading."""
    from data.store import RunStore, check_run_directory, remove_if_empty, run_directory
    from prover.runner import DriveStats

    out = check_run_directory(out or default_out(cfg.run_dir, f"prove-{Path(target).stem}"))
    fresh = not out.exists()
    stats = DriveStats()
    t0 = time.perf_counter()
    try:
        with RunStore(run_directory(out)) as store:
            attempts, interrupted = _run_batch(target, problems, cfg, recipe, verifier, n, stop_at_first, out,
                                               max_in_flight, store, stats)
    except BaseException:
        if fresh:
            remove_if_empty(out)  # a start that failed before any attempt leaves no empty run directory behind
        raise
    proofs_path = out / "proofs.jsonl"
    _summary(attempts, problems, time.perf_counter() - t0, stats)
    err_console.print(f"run store: {out / 'store.sqlite'}; verified proofs: {proofs_path}", highlight=False)
    if interrupted:
        err_console.print(f"interrupted; {stats.recorded} attempts recorded this run, the ones in flight "
                          f"cancelled; re-run the same command to resume ({out})", highlight=False)
        return 130
    return 0


def _run_batch(target: str, problems: list[Problem], cfg: Config, recipe: ProveRecipe, verifier: Checker, n: int,
               stop_at_first: bool, out: Path, max_in_flight: int | None, store: RunStore,
               stats: DriveStats) -> tuple[list[Attempt], bool]:
    """The attempts still missing from `store`, run; (every attempt of the run, whether Ctrl-C stopped it). The
    model loads only once the run's settings are checked and something is left to do: a refused resume, or one
    of a finished run, costs no model load."""
    from eval.progress import AttemptProgress
    from prover.recipe import open_run
    from prover.runner import Engine, LocalExecutor, WorkUnit, run_units

    settings = {**recipe.settings(), "problem_set": target, "samples": n, "stop_at_first": stop_at_first,
                "backend": cfg.model.backend, "model": cfg.model.model or "", "problems": [p.name for p in problems]}
    run_id, _ = open_run(store, out.name, settings, out)
    done = store.done(run_id)
    proved: set[str] = {a.problem for a in store.iter_attempts(run_id, status="proved")}
    missing = [p.name for p in problems for i in range(n) if (p.name, i) not in done]
    # what will run: stop-at-first runs no further attempt of a proved problem (counted out as the driver skips them)
    todo = sum(1 for name in missing if not (stop_at_first and name in proved))
    if not todo:  # a finished run again: nothing to generate, no model to load
        return _recorded(store, run_id, problems, out), False
    gen = _load_generator(recipe, cfg)
    # the executor closes the engine as soon as no attempt can generate (vLLM's shutdown overlaps the last checks);
    # the close of `gen` below then finds it closed
    executor = LocalExecutor(recipe, engine=Engine(gen), checker=verifier, max_live=max_in_flight, own_engine=True)
    units = (WorkUnit(p, i) for i in range(n) for p in problems)  # index-major: every problem early
    interrupted = False
    with AttemptProgress("prove", todo, err_console, f"{len(proved)}/{len(problems)} proved") as bar:

        def count_out_skipped() -> None:
            bar.shrink_to(len(missing) - stats.skipped_proved - stats.cancelled)

        def tick(unit: WorkUnit, attempt: Attempt) -> None:
            if attempt.proved:
                proved.add(unit.problem.name)
            count_out_skipped()
            bar.advance(f"{len(proved)}/{len(problems)} proved")

        try:
            run_units(units, executor, store, run_id, on_result=tick, stop_at_first=stop_at_first, stats=stats)
            count_out_skipped()  # the attempts skipped after the last one that ran
        except KeyboardInterrupt:
            interrupted = True
        finally:
            try:
                executor.close()  # the engine (begun early), its checker threads; the caller closes the verifier
            finally:
                gen.close()
    return _recorded(store, run_id, problems, out), interrupted


def _recorded(store: RunStore, run_id: int, problems: list[Problem], out: Path) -> list[Attempt]:
    """Every attempt of the run, its proofs exported to `out`/proofs.jsonl."""
    attempts = store.attempts(run_id)
    _export_proofs(attempts, problems, out / "proofs.jsonl")
    return attempts


def _export_proofs(attempts: list[Attempt], problems: list[Problem], path: Path) -> None:
    """One line per proved problem (its first verified attempt), written atomically."""
    from data.files import atomic_path

    names = {p.name for p in problems}
    first: dict[str, Any] = {}
    for a in sorted(attempts, key=lambda a: (a.problem, a.index)):
        if a.proved and a.problem in names and a.problem not in first:
            first[a.problem] = a
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for name, a in first.items():
            fh.write(json.dumps({"problem": name, "index": a.index, "proof": a.text, "strategy": a.strategy,
                                 "model": a.model, "seed": a.seed}, ensure_ascii=False) + "\n")


def _summary(attempts: list[Attempt], problems: list[Problem], wall_s: float, stats: DriveStats) -> None:
    from rich.table import Table

    names = {p.name for p in problems}
    mine = [a for a in attempts if a.problem in names]
    proved = {a.problem for a in mine if a.proved}
    table = Table(title="subgoal prove")
    planner = sum(int((a.timings or {}).get(k, 0)) for a in mine
                  for k in ("planner_prompt_tokens", "planner_completion_tokens"))
    for col in ("proved", "attempts", "new this run", "time", "tokens (prompt+completion)", "Lean CPU",
                *(["planner tokens"] if planner else [])):
        table.add_column(col, justify="right")
    tokens = sum(a.prompt_tokens + a.completion_tokens for a in mine)  # the prover's; the planner's apart
    lean_cpu = sum(float((a.timings or {}).get("lean_cpu_s", 0.0)) for a in mine)
    table.add_row(f"{len(proved)}/{len(problems)}", str(len(mine)), str(stats.recorded), f"{wall_s:.1f}s",
                  f"{tokens:,}", f"{lean_cpu:.1f}s", *([f"{planner:,}"] if planner else []))
    console.print(table)
    sys.stdout.flush()
