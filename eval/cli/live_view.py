"""Interactive proving: attempts one after another until one proves the problem, shown in a live rich view
(subgoals, attempts, Lean errors, budget used). Ctrl-C stops cleanly; the best result so far stays available
(`ProveSession.best`): a verified proof, else the best compiling sketch (lemma proofs substituted where found),
else the best failed candidate."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

STATUS_STYLE = {"proved": "bold green", "failed": "red", "unsound": "magenta", "timeout": "yellow",
                "crashed": "yellow", "open": "cyan", "none": "dim", "partial": "cyan"}


@dataclass
class Best:
    text: str = ""
    status: str = "none"
    what: str = ""  # proof | sketch | candidate
    score: float = float("-inf")


@dataclass
class ViewState:
    problem: str
    strategy: str
    attempts_planned: int
    attempt: int = 0
    samples: int = 0
    tokens: int = 0
    lean_calls: int = 0
    started: float = field(default_factory=time.monotonic)
    candidates: deque = field(default_factory=lambda: deque(maxlen=6))
    subgoals: dict[str, str] = field(default_factory=dict)  # lemma name -> status
    statements: dict[str, str] = field(default_factory=dict)
    last_errors: list[str] = field(default_factory=list)
    tactics: deque = field(default_factory=lambda: deque(maxlen=6))
    best: Best = field(default_factory=Best)


class ProveSession:
    """Runs attempts of one problem and keeps what the live view shows."""

    def __init__(self, problem: Any, recipe: Any, backend: Any, verifier: Any, attempts: int):
        self.problem, self.recipe, self.backend, self.verifier = problem, recipe, backend, verifier
        self.attempts = attempts
        self.state = ViewState(problem.name, recipe.strategy, attempts)
        self.results: list[Any] = []

    @property
    def best(self) -> Best:
        return self.state.best

    def on_event(self, e: dict[str, Any]) -> None:
        s = self.state
        kind = e["kind"]
        if kind == "generate":
            s.samples += e["n"]
            s.tokens += e["tokens"]
        elif kind == "candidate":
            s.lean_calls += 1
            s.candidates.append((e["problem"], e["status"], (e.get("errors") or [""])[0]))
            if e.get("errors") and e["status"] != "proved":
                s.last_errors = [str(x) for x in e["errors"]][:3]
        elif kind == "sketch":
            s.lean_calls += 1
            if not e.get("ok"):
                s.last_errors = [str(x) for x in e.get("errors", [])][:3]
            for lemma in e.get("lemmas", []):
                s.subgoals.setdefault(lemma["name"], "open")
                s.statements[lemma["name"]] = lemma["statement"]
        elif kind == "subgoal":
            s.subgoals[e["name"]] = e["status"]
            s.statements.setdefault(e["name"], e.get("statement", ""))
        elif kind == "tactic":
            s.lean_calls += 1
            s.tactics.append((e["tactic"], "ok" if e["ok"] else (e.get("error") or "error")))
        elif kind == "best" and e["depth"] == 0 and e["score"] > s.best.score:
            s.best = Best(e["text"], e["status"], e["what"], e["score"])

    def run(self) -> Any:
        """Attempts until one proves the problem or `attempts` are done; the last result (or the proving one).
        Ctrl-C cancels the attempt in progress and raises KeyboardInterrupt (`best` keeps what it found)."""
        from prover.runner import run_async

        return run_async(self.arun())

    async def arun(self) -> Any:
        """Every attempt a task at once, through the shared engine (its `max_in_flight` and tree search's session
        pool bound what runs), as in a batch run: one theorem's k attempts cost one batch of generation, not k
        in turn. The first proof cancels the others; results are kept in attempt order among those finishing
        together, so a run is reproducible whatever the timing (each attempt has its own seed)."""
        import asyncio

        tasks = {asyncio.create_task(self.recipe.attempt(self.backend, self.verifier, self.problem, i, self.on_event)):
                 i for i in range(self.attempts)}
        last = None
        try:
            while tasks:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=tasks.__getitem__):
                    del tasks[task]
                    last = task.result()
                    self.results.append(last)
                    self.state.attempt = len(self.results)
                    if last.proved:
                        self.state.best = Best(last.text, "proved", "proof", 1e9)
                        return last
            return last
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ---- rendering ------------------------------------------------------------------------------------------
    def __rich__(self) -> Panel:
        s = self.state
        head = Table.grid(padding=(0, 2))
        head.add_row("strategy", s.strategy, "attempts done", f"{s.attempt}/{s.attempts_planned}")
        head.add_row("samples", str(s.samples), "tokens", f"{s.tokens:,}")
        head.add_row("Lean calls", str(s.lean_calls), "time", f"{time.monotonic() - s.started:.1f}s")
        parts: list[Any] = [head]
        if s.subgoals:
            sub = Table(title="subgoals", show_header=False, box=None, pad_edge=False)
            for name, status in list(s.subgoals.items())[-8:]:
                stmt = s.statements.get(name, "").replace("\n", " ")
                sub.add_row(Text(status, style=STATUS_STYLE.get(status, "")), Text(_short(stmt, 90)))
            parts.append(sub)
        if s.candidates:
            cand = Table(title="attempts", show_header=False, box=None, pad_edge=False)
            for problem, status, err in s.candidates:
                cand.add_row(Text(status, style=STATUS_STYLE.get(status, "")), problem, Text(_short(err, 70)))
            parts.append(cand)
        if s.tactics:
            tac = Table(title="tactics", show_header=False, box=None, pad_edge=False)
            for t, result in s.tactics:
                tac.add_row(Text(_short(t, 40)), Text(_short(result, 60), style="green" if result == "ok" else "red"))
            parts.append(tac)
        if s.last_errors:
            parts.append(Text("Lean: " + _short(" | ".join(s.last_errors), 160), style="red"))
        parts.append(Text(f"best so far: {s.best.what or 'nothing yet'} ({s.best.status})",
                          style=STATUS_STYLE.get(s.best.status, "")))
        return Panel(Group(*parts), title=f"subgoal prove: {s.problem}", border_style="blue")


def _short(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


@dataclass
class Outcome:
    problem: Any
    result: Any | None  # the last (or proving) AttemptResult; None when interrupted before any finished
    best: Best
    interrupted: bool = False

    @property
    def proved(self) -> bool:
        return self.result is not None and self.result.proved


def prove_interactive(problems: list[Any], recipe: Any, backend: Any, verifier: Any, attempts: int,
                      console: Any, live: bool = True) -> list[Outcome]:
    """Prove each problem in turn with a live view on `console`; stops at Ctrl-C, keeping what was found."""
    from prover.runner import AsyncChecker, Engine

    backend = backend if isinstance(backend, Engine) else Engine(backend)
    checker = verifier if isinstance(verifier, AsyncChecker) else AsyncChecker(verifier)
    try:
        return _prove_each(problems, recipe, backend, checker, attempts, console, live)
    finally:
        if checker is not verifier:
            checker.close()


def _prove_each(problems: list[Any], recipe: Any, backend: Any, verifier: Any, attempts: int, console: Any,
                live: bool) -> list[Outcome]:
    from rich.live import Live

    outcomes: list[Outcome] = []
    for problem in problems:
        session = ProveSession(problem, recipe, backend, verifier, attempts)
        try:
            if live:
                with Live(session, console=console, refresh_per_second=8, transient=False):
                    result = session.run()
            else:
                result = session.run()
        except KeyboardInterrupt:
            last = session.results[-1] if session.results else None
            outcomes.append(Outcome(problem, last, session.best, interrupted=True))
            break
        outcomes.append(Outcome(problem, result, session.best))
    return outcomes
