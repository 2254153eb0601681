"""`subgoal data trace` (LeanDojo tracing) and `subgoal data tactics` (tactic-level SFT examples).

Registered into the `data` group by `eval/cli/data_cmd.py` through `register_into`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from eval.cli.common import config, console, err_console


def trace(
    ctx: typer.Context,
    repo_url: str = typer.Argument(
        ..., help="Lean repository to trace (GitHub URL, other git URL or local path)."
    ),
    commit: str = typer.Option(..., "--commit", help="Commit hash (or tag) to trace."),
    out: Path = typer.Option(..., "--out", help="Empty directory for the benchmark layout (+ repos/<name>)."),
    num_val: int | None = typer.Option(
        None, "--num-val", help="Held-out theorems per split (default: min(2000, n/10))."
    ),
    num_test: int | None = typer.Option(None, "--num-test", help="Test theorems (default: as --num-val)."),
    no_deps: bool = typer.Option(False, "--no-deps", help="Do not trace the repository's dependencies."),
) -> None:
    """Trace a Lean repository with LeanDojo into the LeanDojo Benchmark 4 layout (random/ and novel_premises/)."""
    from data.leandojo import trace_repo

    err_console.print(f"tracing {repo_url} @ {commit} with LeanDojo (about 1.5x the repository's build time)")
    counts = trace_repo(repo_url, commit, out, num_val=num_val, num_test=num_test, build_deps=not no_deps)
    for strategy, splits in counts.items():
        console.print(f"{out}/{strategy}: " + ", ".join(f"{k} {v}" for k, v in splits.items()))


def tactics(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="JSONL file of SFT example records (kind 'tactic')."),
    strategy: str = typer.Option("random", "--strategy", help="Split strategy: random or novel_premises."),
    split: str = typer.Option("train", "--split", help="train, val or test."),
    leandojo_dir: Path | None = typer.Option(None, "--leandojo-dir", help="Benchmark root (else config)."),
    source_dir: Path | None = typer.Option(
        None,
        "--source-dir",
        help="Checkout of the traced repository (statements from source; else found beside).",
    ),
    prompt_format: str = typer.Option(
        "prover",
        "--prompt-format",
        help="prover: the tree search's `tactic` template; leandojo: [GOAL]/[PROOFSTEP].",
    ),
    prompts: Path | None = typer.Option(
        None, "--prompts", help="Prompt template file (TOML) for --prompt-format prover."
    ),
) -> None:
    """Write tactic-level training examples (goal state -> next tactic, with premises) from a LeanDojo benchmark."""
    from data.errors import DataError
    from data.leandojo import write_tactic_examples

    if prompt_format not in ("prover", "leandojo"):
        raise DataError(f"--prompt-format must be prover or leandojo, not {prompt_format!r}")
    render = _tree_search_render(prompts) if prompt_format == "prover" else None
    cfg = config(ctx, leandojo_dir=leandojo_dir)
    n = write_tactic_examples(cfg.leandojo_dir, strategy, split, out, source_dir=source_dir, render=render)
    console.print(f"{n} tactic examples -> {out}")


def _tree_search_render(prompts_file: Path | None):
    """Prompts in the prover's `tactic` template (what the tree search sends), with a short scope header."""
    from dataclasses import replace

    from data.leandojo import scope_header
    from lean_env.interaction import indent_tactic
    from prover.prompts import load_prompts

    prompt_set = load_prompts(prompts_file)

    def render(problem, tactics_so_far, state):
        short = replace(problem, header=problem.extra.get("prompt_header") or scope_header(problem.header))
        done = "".join(indent_tactic(t) + "\n" for t in tactics_so_far)
        return prompt_set.render("tactic", short, goals=state, tactics=done)

    return render


def register_into(data_app: typer.Typer) -> None:
    data_app.command("trace")(trace)
    data_app.command("tactics")(tactics)
