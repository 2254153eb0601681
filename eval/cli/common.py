"""What every command shares: the configuration from the root options, the console, error handling."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from data.config import Config

console = Console()  # results and tables
err_console = Console(stderr=True)  # logs, progress and errors go to stderr


@contextmanager
def library_output_on(console: Console) -> Iterator[None]:
    """While a command runs, Python warnings and library log records (transformers, vLLM, Ray) are printed
    through `console`, so they land above a live view or progress bar instead of tearing it."""
    from rich.logging import RichHandler

    handler = RichHandler(console=console, level=logging.WARNING, show_time=False, show_path=False, markup=False)
    root = logging.getLogger()
    root.addHandler(handler)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)


def config(ctx: typer.Context, **overrides: Any) -> Config:
    """The run's configuration: root `--config/--data-dir/--run-dir` plus the command's own flag overrides."""
    from data.config import load_config  # pydantic: paid by commands that run, not by `--help`

    root = ctx.find_root().obj or {}
    merged = {**root.get("overrides", {}), **overrides}
    return load_config(root.get("config_path"), merged)


def default_out(run_dir: Path, name: str) -> Path:
    """A command's default run directory: `name` made safe as one path component, under `run_dir`."""
    return run_dir / re.sub(r"[^A-Za-z0-9_.-]+", "-", name)


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are the user's to fix: printed as one line, exit code 2, no traceback."""
    from lean_env.errors import UserError

    return (UserError, FileNotFoundError)
