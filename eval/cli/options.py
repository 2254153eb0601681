"""Flags that `subgoal prove` and `subgoal eval` share, defined once so that both read and document them alike."""

from __future__ import annotations

import typer

STRATEGY = typer.Option("sample", "--strategy", "-s", help="sample | decompose | repair | tree.")
MODEL = typer.Option(None, "--model", "-m", help="HF id or checkpoint directory (else config model.model).")
BACKEND = typer.Option(None, "--backend", help="transformers | vllm | openai (else config).")
BASE_URL = typer.Option(None, "--base-url", help="OpenAI-compatible server for --backend openai.")
PROMPTS = typer.Option(None, "--prompts", help="TOML file overriding prompt templates.")
INTERACTION = typer.Option("repl", "--interaction", help="Tree search steps through: repl | dojo.")
SPLIT = typer.Option(None, "--split", help="Only this split of the problem set.")
LIMIT = typer.Option(None, "--limit", help="Only the first N problems (smoke runs).")
LEAN_WORKERS = typer.Option(None, "--lean-workers", help="REPL processes per verifier pool.")
LEAN_TIMEOUT = typer.Option(None, "--lean-timeout", help="Seconds per Lean call.")
CHECKER = typer.Option(None, "--checker", help="Verify with: local (REPL pool here) | remote (a server; else config lean.checker).")
CHECKER_URL = typer.Option(None, "--checker-url", help="The remote checker: `subgoal lean serve` or a kimina-lean-server URL (else config lean.remote_url).")
