"""Flags that `subgoal prove` and `subgoal eval` share, defined once so that both read and document them alike.

Defaults a library owns (strategy options, samples per attempt, tokens per mode) are left None here and named,
not repeated, in the help: the CLI must start without importing the library (`prover.search.options` owns them).
"""

from __future__ import annotations

import typer

from eval.cli import checks

STRATEGY = typer.Option("sample", "--strategy", "-s", help="sample | decompose | repair | tree.")
MODEL = typer.Option(None, "--model", "-m", help="HF id or checkpoint directory (else config model.model).")
BACKEND = typer.Option(None, "--backend", help="transformers | vllm | openai (else config).")
BASE_URL = typer.Option(None, "--base-url", help="OpenAI-compatible server for --backend openai.")
PLANNER_MODEL = typer.Option(None, "--planner-model", help="decompose: the model that writes the sketches (e.g. a "
                             "large general model); the prover proves the lemmas. Default: the prover plans.")
PLANNER_BACKEND = typer.Option(None, "--planner-backend", help="transformers | vllm | openai for --planner-model "
                               "(default: openai with --planner-base-url, else config planner.backend).")
PLANNER_BASE_URL = typer.Option(None, "--planner-base-url", help="OpenAI-compatible server of --planner-model.")
PROMPTS = typer.Option(None, "--prompts", help="TOML file overriding prompt templates.")
INTERACTION = typer.Option("repl", "--interaction", help="Tree search steps through: repl | dojo.")
SPLIT = typer.Option(None, "--split", help="Only this split of the problem set.")
LIMIT = typer.Option(None, "--limit", min=1, help="Only the first N problems (smoke runs).")
LEAN_WORKERS = typer.Option(None, "--lean-workers", min=1, help="REPL processes per verifier pool.")
LEAN_TIMEOUT = typer.Option(None, "--lean-timeout", callback=checks.positive, help="Seconds per Lean call.")
CHECKER = typer.Option(None, "--checker", help="Verify with: local (REPL pool here) | remote (a server; else config lean.checker).")
CHECKER_URL = typer.Option(None, "--checker-url", help="The remote checker: `subgoal lean serve` or a kimina-lean-server URL (else config lean.remote_url).")

# One meaning per flag in every command: -n/--samples = attempts per problem; -k = the k of pass@k a run is
# sized for (n defaults to k); --max-tokens = tokens per generation; --budget-* = limits of one attempt.
SAMPLES = typer.Option(None, "--samples", "-n", min=1, max=checks.MAX_ATTEMPTS, help="Attempts per problem, n >= k (default k).")
MAX_TOKENS = typer.Option(None, "--max-tokens", min=1, help="Tokens per generation (default by --mode, long for "
                          "cot: docs/prove.md).")
TEMPERATURE = typer.Option(None, "--temperature", "-t", callback=checks.non_negative, help="Sampling temperature, 0 = greedy (default 1.0).")
TOP_P = typer.Option(None, "--top-p", callback=checks.probability, help="Nucleus sampling p, in (0, 1] (default 0.95).")
SEED = typer.Option(0, "--seed", help="Base seed; attempt i of each problem gets its own seeds from it.")
BUDGET_SAMPLES = typer.Option(None, "--budget-samples", min=1, help="Budget: generations per attempt (default: the "
                              "strategy's own, 1 for sample: docs/prove.md).")
OPT = typer.Option(None, "--opt", help="Strategy option KEY=VALUE (repeatable), e.g. mode=cot, rounds=3; an unknown "
                   "key is refused with the strategy's valid ones.")
BUDGET_TOKENS = typer.Option(None, "--budget-tokens", min=1, help="Budget: generated tokens per attempt.")
BUDGET_LEAN_CALLS = typer.Option(None, "--budget-lean-calls", min=1, help="Budget: Lean calls per attempt.")
BUDGET_WALL_S = typer.Option(None, "--budget-wall-s", callback=checks.positive, help="Budget: wall seconds per attempt.")
MAX_IN_FLIGHT = typer.Option(None, "--max-in-flight", min=1, help="Attempts running at once (default: enough to fill "
                             "the generation engine and the Lean pool together).")


def given(**values: object) -> dict[str, object]:
    """The flags the user set (a None default means "not given": the library's default applies)."""
    return {key: value for key, value in values.items() if value is not None}


def strategy_options(pairs: list[str], strategy: str) -> dict[str, object]:
    """`--opt KEY=VALUE` pairs as the strategy's options (`prover.search.options`: the keys it has, the value
    read as the field's type)."""
    from prover.search.options import check_options

    values: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--opt wants KEY=VALUE, got {pair!r}")
        values[key.strip()] = raw
    return check_options(strategy, values)


def planner_overrides(model: str | None, backend: str | None, base_url: str | None) -> dict[str, str | None]:
    """Config overrides of the planner flags: a base URL alone means an OpenAI-compatible server."""
    return {"model": model, "backend": backend or ("openai" if base_url else None), "base_url": base_url}
