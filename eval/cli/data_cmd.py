"""`subgoal data ...`: list the problem sets, show one problem, export a run store."""

from __future__ import annotations

import difflib
from enum import StrEnum
from pathlib import Path

import typer

from eval.cli.common import config, console, err_console

app = typer.Typer(help="Problem sets, single problems, and run-store exports.", no_args_is_help=True)


@app.command("list")
def list_sets(ctx: typer.Context) -> None:
    """Every registered problem set: availability and problem counts per split."""
    from rich.table import Table

    from data.registry import problem_sets

    cfg = config(ctx)
    table = Table(title=f"problem sets (data dir {cfg.data_dir})")
    for column in ("set", "available", "problems", "splits", "description / why unavailable"):
        table.add_column(column, overflow="fold")
    with err_console.status("loading the problem sets to count them ..."):
        statuses = problem_sets(cfg)
    for s in statuses:
        splits = ", ".join(f"{k} {v}" for k, v in s.splits.items())
        status = "[green]yes[/]" if s.available else "[red]no[/]"
        table.add_row(s.name, status, str(s.count) if s.available else "-", splits,
                      s.description if s.available else f"[red]{s.reason}[/]")  # fmt: skip
    console.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    problem_set: str = typer.Argument(..., metavar="SET", help="Set name, .jsonl/.lean file or HF dataset."),
    name: str = typer.Argument(..., help="Problem name."),
) -> None:
    """One problem: its metadata, informal statement and the Lean statement (highlighted)."""
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.table import Table

    from data import load_problems
    from data.errors import DataError

    problems = {p.name: p for p in load_problems(problem_set, config(ctx))}
    problem = problems.get(name)
    if problem is None:
        close = difflib.get_close_matches(name, list(problems), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise DataError(f"no problem {name!r} in {problem_set} ({len(problems)} problems){hint}")
    meta = Table.grid(padding=(0, 2))
    meta.add_row("[bold]name", problem.name)
    meta.add_row("[bold]split", problem.split or "-")
    meta.add_row("[bold]source", problem.source or "-")
    for key, value in problem.extra.items():
        if key not in ("decl",):
            meta.add_row(f"[bold]{key}", _short(value))
    console.print(meta)
    if problem.informal_statement:
        console.print(Panel(problem.informal_statement, title="informal statement", title_align="left"))
    console.print(Panel(Syntax(problem.lean_source.rstrip(), _lean_lexer(), word_wrap=True), title="Lean",
                        title_align="left"))  # fmt: skip


def _lean_lexer() -> str:
    """Pygments' Lean 4 lexer where this pygments has one (2.18+), else plain text."""
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    for alias in ("lean4", "lean"):
        try:
            get_lexer_by_name(alias)
            return alias
        except ClassNotFound:
            continue
    return "text"


def _short(value: object, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + " ..."


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    parquet = "parquet"
    hf = "hf"


@app.command("export")
def export(
    ctx: typer.Context,
    run_dir: Path = typer.Argument(..., help="Run directory (holding store.sqlite) or the .sqlite file."),
    fmt: ExportFormat = typer.Option(
        ExportFormat.jsonl, "--format", help="jsonl, parquet, or hf (save_to_disk)."
    ),
    out: Path = typer.Option(..., "--out", help="Output file (jsonl, parquet) or directory (hf)."),
    run: str | None = typer.Option(None, "--run", help="Run name, when the store holds several."),
) -> None:
    """Export the attempts of a run: one record per attempt, every Attempt field."""
    from data.errors import DataError
    from data.store import RunStore

    if fmt is ExportFormat.hf and out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is an existing file; --format hf writes a directory")
    with RunStore(run_dir, create=False) as store:
        info = store.run(run)
        if fmt is ExportFormat.jsonl:
            n = store.export_jsonl(info.id, out)
        elif fmt is ExportFormat.parquet:
            n = store.export_parquet(info.id, out)
        else:
            dataset = store.to_dataset(info.id)
            dataset.save_to_disk(str(out))
            n = dataset.num_rows
    err_console.print(f"run {info.name}: {n} attempts ({info.proved}/{info.problems} problems proved)")
    console.print(str(out))


def register(root: typer.Typer) -> None:
    from eval.cli import data_trace_cmd  # LeanDojo commands (`data trace`, `data tactics`) share this group

    data_trace_cmd.register_into(app)
    root.add_typer(app, name="data")
