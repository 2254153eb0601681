"""`subgoal leaderboard RUNS`: every run under a directory -> Markdown table + static HTML page."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from eval.cli.common import console, err_console


def register(app: typer.Typer) -> None:
    @app.command("leaderboard")
    def leaderboard(
        runs: Path = typer.Argument(Path("runs"), help="Directory of runs (each <run>/store.sqlite) or one run."),
        out: Path = typer.Option(Path("site"), "--out", "-o", help="Where index.html and leaderboard.md go."),
        reported: Path = typer.Option(None, "--reported", help="Published results JSON (default: the bundled one)."),
    ) -> None:
        """Leaderboard of measured runs, with published results of other systems shown apart."""
        from eval.leaderboard import REPORTED_PATH, build_site

        site = build_site(runs, out, reported_path=reported or REPORTED_PATH)
        for reason in site.skipped:
            err_console.print(f"[yellow]warning:[/] skipped {escape(reason)}", highlight=False, soft_wrap=True)
        console.print(f"{site.runs} runs, {site.reported} reported results -> {site.html} and {site.markdown}")
