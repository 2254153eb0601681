"""`subgoal`: the command line. Thin: each command parses its options and calls one library function."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.markup import escape

from eval.cli import (
    data_cmd,
    eval_cmd,
    formalize_cmd,
    leaderboard_cmd,
    lean_cmd,
    prove_cmd,
    train_cmd,
)
from eval.cli.common import err_console, user_errors

app = typer.Typer(
    name="subgoal",
    help="Subgoal: Lean 4 theorem proving with a DeepSeek-V3-style prover, verified by a pool of Lean REPLs.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", help="TOML config file (else $SUBGOAL_CONFIG, ./subgoal.toml)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Problem-set directory (else $SUBGOAL_DATA_DIR)."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Where run stores go (else $SUBGOAL_RUN_DIR, ./runs)."),
) -> None:
    ctx.obj = {"config_path": config, "overrides": {"data_dir": data_dir, "run_dir": run_dir}}


for module in (prove_cmd, eval_cmd, leaderboard_cmd, train_cmd, formalize_cmd, lean_cmd, data_cmd):
    module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point. Click/typer handle usage errors themselves (exit 2); our typed user errors become one line."""
    try:
        app(args=argv, prog_name="subgoal")
    except user_errors() as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
