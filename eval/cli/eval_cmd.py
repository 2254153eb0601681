"""`subgoal eval SET`: pass@k of a model + strategy on a benchmark, resumable, optionally on Ray."""

from __future__ import annotations

from pathlib import Path

import typer

from eval.cli import checks
from eval.cli import options as shared
from eval.cli.common import config, console, default_out, err_console


def _default_out(run_dir: Path, problem_set: str, model: str | None, strategy: str, k: int) -> Path:
    model_name = Path(model.rstrip("/")).name if model else "model"
    return default_out(run_dir, f"{Path(problem_set).stem}-{model_name}-{strategy}-k{k}")


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_(
        ctx: typer.Context,
        problem_set: str = typer.Argument(..., metavar="SET", help="minif2f-test, minif2f-valid, putnambench, "
                                          "proverbench, proofnet-test, proofnet-valid, a .jsonl/.lean path or an HF dataset."),
        model: str = shared.MODEL,
        strategy: str = shared.STRATEGY,
        k: int = typer.Option(1, "-k", min=1, max=checks.MAX_ATTEMPTS, help="Largest k the run is sized for (pass@1..k reported)."),
        samples: int = shared.SAMPLES,
        out: Path = typer.Option(None, "--out", "-o", help="Run directory (default <run_dir>/<set>-<model>-<strategy>-k<k>)."),
        split: str = shared.SPLIT,
        limit: int = shared.LIMIT,
        putnam_answers: str = typer.Option("produced", "--putnam-answers", help="PutnamBench: 'given' substitutes "
                                           "the recorded answer; 'produced' makes the prover fill it too."),
        seed: int = shared.SEED,
        temperature: float = shared.TEMPERATURE,
        top_p: float = shared.TOP_P,
        max_tokens: int = shared.MAX_TOKENS,
        opt: list[str] = shared.OPT,
        prompts: Path = shared.PROMPTS,
        interaction: str = shared.INTERACTION,
        backend: str = shared.BACKEND,
        base_url: str = shared.BASE_URL,
        planner_model: str = shared.PLANNER_MODEL,
        planner_backend: str = shared.PLANNER_BACKEND,
        planner_base_url: str = shared.PLANNER_BASE_URL,
        tensor_parallel_size: int = typer.Option(None, "--tensor-parallel-size", "--tp", min=1, help="GPUs per model replica."),
        budget_samples: int = shared.BUDGET_SAMPLES,
        budget_tokens: int = shared.BUDGET_TOKENS,
        budget_lean_calls: int = shared.BUDGET_LEAN_CALLS,
        budget_wall_s: float = shared.BUDGET_WALL_S,
        lean_workers: int = shared.LEAN_WORKERS,
        lean_timeout: float = shared.LEAN_TIMEOUT,
        checker: str = shared.CHECKER,
        checker_url: str = shared.CHECKER_URL,
        ray: bool = typer.Option(False, "--ray", help="Distribute over Ray (a local cluster unless --ray-address)."),
        ray_address: str = typer.Option(None, "--ray-address", help="Existing Ray cluster ('auto' or host:port); implies --ray."),
        workers: int = typer.Option(None, "--workers", min=1, help="Ray generation workers (default: one per GPU / TP group)."),
        max_in_flight: int = shared.MAX_IN_FLIGHT,
    ) -> None:
        """pass@k of a model + strategy on a problem set; results in a run store, a re-run resumes."""
        from eval.harness import CUT_WARNING, EvalSpec, run_eval
        from eval.report import render_table
        from prover.errors import ProverError

        if planner_model and strategy != "decompose":
            raise ProverError("--planner-model writes decomposition sketches: use it with --strategy decompose")

        cfg = config(ctx, model={"model": model, "backend": backend, "base_url": base_url,
                                  "tensor_parallel_size": tensor_parallel_size},
                     planner=shared.planner_overrides(planner_model, planner_backend, planner_base_url),
                     lean={"workers": lean_workers, "timeout_s": lean_timeout,
                           "checker": checker, "remote_url": checker_url})
        budget = shared.given(samples=budget_samples, tokens=budget_tokens, lean_calls=budget_lean_calls,
                              wall_s=budget_wall_s)
        sampling = shared.given(temperature=temperature, top_p=top_p, max_tokens=max_tokens)
        spec = EvalSpec(
            problem_set=problem_set,
            out=out or _default_out(cfg.run_dir, problem_set, cfg.model.model, strategy, k),
            strategy=strategy, k=k, samples=samples, split=split, limit=limit, putnam_answers=putnam_answers,
            seed=seed, budget=budget, sampling=sampling, options=shared.strategy_options(opt or [], strategy),
            prompts=str(prompts) if prompts else None, interaction=interaction,
            ray=ray or ray_address is not None, ray_address=ray_address,
            workers=workers, max_in_flight=max_in_flight,
        )
        try:
            result = run_eval(spec, cfg)
        except KeyboardInterrupt:
            err_console.print(f"interrupted; the attempts that finished are in {spec.out}; the ones in flight were "
                              "cancelled; re-run the same command to resume", highlight=False)
            raise typer.Exit(130) from None
        console.print(render_table(result.report))
        cuts = result.report.get("generation", {})
        if cuts.get("fraction", 0.0) > CUT_WARNING:
            err_console.print(f"[bold yellow]warning:[/] {cuts['cut_at_max_tokens']} of {cuts['completions']} "
                              f"completions ({cuts['fraction']:.0%}) stopped at --max-tokens "
                              f"({result.report['run'].get('sampling', {}).get('max_tokens')}); a cut proof fails: "
                              "raise --max-tokens", highlight=False)
        err_console.print(f"{result.recorded} attempts recorded, {result.skipped} already done; "
                          f"report: {result.report_path}")
