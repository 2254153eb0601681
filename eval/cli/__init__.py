"""`subgoal`: the command line. Thin: each command parses its options and calls one library function."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from eval.cli import (
    data_cmd,
    eval_cmd,
    formalize_cmd,
    lean_cmd,
    leaderboard_cmd,
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
    try:
        app(args=argv, prog_name="subgoal", standalone_mode=False)
    except user_errors() as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # click usage errors and aborts carry their own exit code
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(1)
        raise
