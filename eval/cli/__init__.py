"""`subgoal`: the command line. Thin: each command parses its options and calls one library function."""

from __future__ import annotations

import signal
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
from eval.cli.common import err_console, library_output_on, user_errors
from eval.cli.signals import stopping_cleanly

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
    """Entry point. Click/typer handle usage errors themselves (exit 2); our typed user errors become one line.
    Ctrl-C, SIGTERM and SIGHUP stop the command cleanly (`eval.cli.signals`): exit 130, or 128 + the signal."""
    with stopping_cleanly() as received:
        try:
            with library_output_on(err_console):
                app(args=argv, prog_name="subgoal")
        except user_errors() as e:
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            sys.exit(2)
        except OSError as e:  # the machine's answer about a path the user gave (permissions, a full disk, ...)
            where = f": {e.filename}" if e.filename else ""
            err_console.print(f"[bold red]error:[/] {escape((e.strerror or str(e)) + where)}", highlight=False,
                              soft_wrap=True)
            sys.exit(1)
        except KeyboardInterrupt:  # a command that did not stop on it itself
            err_console.print("interrupted", highlight=False)
            sys.exit(_stop_code(received))
        except SystemExit as e:
            if received and e.code not in (0, None):
                sys.exit(_stop_code(received))
            raise


def _stop_code(received: list[int]) -> int:
    """130 for Ctrl-C, 128 + n for signal n (what a shell reports for a process a signal stopped)."""
    if received and received[-1] != signal.SIGINT:
        err_console.print(f"stopped by {signal.Signals(received[-1]).name}", highlight=False)
    return 128 + (received[-1] if received else signal.SIGINT)
