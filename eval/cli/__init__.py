"""`subgoal`: the command line. Thin: each command parses its options and calls one library function."""

from __future__ import annotations

import signal
import sys
import threading
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


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a batch scheduler, a closed terminal): unwinds like Ctrl-C, so runs stop the same clean way."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _terminate(signum: int, frame: object) -> None:
    from lean_env.repl import kill_all

    kill_all()  # calls waiting on Lean fail now, not at their timeout
    _received.append(signum)
    raise Terminated(signum)


_received: list[int] = []  # SIGTERM/SIGHUP seen: the exit code says so even where a command handled the unwinding


def main(argv: list[str] | None = None) -> None:
    """Entry point. Click/typer handle usage errors themselves (exit 2); our typed user errors become one line.
    SIGTERM and SIGHUP unwind like Ctrl-C (stores closed, Lean process groups killed), exit 128 + the signal."""
    handled = (signal.SIGTERM, signal.SIGHUP) if threading.current_thread() is threading.main_thread() else ()
    previous = {sig: signal.signal(sig, _terminate) for sig in handled}
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
    except Terminated as e:
        err_console.print(f"stopped by {e}", highlight=False)
        sys.exit(128 + e.signum)
    except SystemExit as e:
        if _received and e.code not in (0, None):
            err_console.print(f"stopped by {signal.Signals(_received[-1]).name}", highlight=False)
            sys.exit(128 + _received[-1])
        raise
    finally:
        for sig, handler in previous.items():  # main() in a test process: leave its handlers as they were
            signal.signal(sig, handler)
