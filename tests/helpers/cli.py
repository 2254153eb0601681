"""Helpers of the tests that run `subgoal` as a user does: a subprocess with the FAKE Lean and a clean environment."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from fakes import FAKE_LEAN
from fakes.scripted import ScriptedServer

from eval.cli import main
from helpers.prove import HEADER

SUBGOAL = [sys.executable, "-c", "from eval.cli import main; main()"]
STATEMENT = "theorem t (a b : ℕ) (h₀ : a = 2) : a + b = b + a := by"


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUBGOAL_")}
    env.update({"SUBGOAL_LEAN__REPL_PATH": str(FAKE_LEAN), "SUBGOAL_LEAN__WORKERS": "1",
                "SUBGOAL_RUN_DIR": str(tmp_path / "runs"), "COLUMNS": "100", "TERM": "xterm", **extra})
    return env


def served(server: ScriptedServer) -> list[str]:
    return ["--backend", "openai", "--base-url", server.url, "--model", "scripted-server"]


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(SUBGOAL + args, env=env, capture_output=True, text=True, timeout=timeout)


def write_problems(path: Path, n: int) -> list[str]:
    names = []
    with path.open("w") as fh:
        for i in range(n):
            name = f"p{i}"
            names.append(name)
            fh.write(json.dumps({"name": name, "split": "test", "header": HEADER,
                                 "formal_statement": f"theorem {name} (h₀ : {i} + 1 = {i + 1}) : {i} + 2 = {i + 2} := by"})
                     + "\n")
    return names


def store_rows(out: Path) -> list[tuple[str, int, str]]:
    db = sqlite3.connect(out / "store.sqlite")
    try:
        return db.execute("SELECT problem, idx, status FROM attempts ORDER BY problem, idx").fetchall()
    finally:
        db.close()


def cli(*argv: str) -> int:
    """`subgoal ARGV` in this process; its exit code (the CLI always ends in SystemExit)."""
    try:
        main(list(argv))
    except SystemExit as e:
        return e.code or 0
    return 0
