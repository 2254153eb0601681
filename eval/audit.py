"""`subgoal lean audit RUN`: re-check every proved attempt of a run by kernel replay and record the checker's
verdict beside ours in the run store. An attempt already audited by the checker is not re-checked (unless
`force`), so an interrupted audit resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eval.errors import EvalError

if TYPE_CHECKING:
    from data.config import Config
    from data.problem import Problem
    from lean_env.audit import KernelAuditor


@dataclass
class AuditSummary:
    checker: str
    proved: int = 0  # proved attempts in the run
    audited: int = 0  # checked in this call
    skipped: int = 0  # already audited before
    accepted: int = 0  # of those checked now
    rejected: int = 0
    unavailable: int = 0  # the checker could not run (timeout, missing tool)


def audit_counts(run_dir: str | Path) -> dict[str, Any]:
    """{"checker", "proved", "audited", "accepted", "rejected"} of a run's proved attempts (audited 0: none yet)."""
    from data.store import RunStore

    with RunStore(run_dir, create=False) as store:
        info = store.run(None) if len(store.runs()) == 1 else None
        if info is None:
            return {"audited": 0}
        audits = store.audits(info.id)
        proved = {(a.problem, a.index) for a in store.iter_attempts(info.id, status="proved")}
    checked = [v for key, v in audits.items() if key in proved]
    return {"checker": ", ".join(sorted({v["checker"] for v in checked})), "proved": len(proved),
            "audited": len(checked), "accepted": sum(v["accepted"] is True for v in checked),
            "rejected": sum(v["accepted"] is False for v in checked)}


def run_problems(run_config: dict[str, Any], config: Config) -> dict[str, Problem]:
    """The run's problems by name, as the run saw them (PutnamBench answers given when the run gave them)."""
    from data import load_problems
    from lean_env.text import fill_answers

    problem_set = run_config.get("problem_set")
    if not problem_set:
        raise EvalError("this run records no problem set, so its statements cannot be re-checked (audit needs a "
                        "run made by `subgoal eval` or `subgoal prove SET`)")
    problems = load_problems(problem_set, config, split=run_config.get("split") or None)
    if run_config.get("putnam_answers") == "given":
        problems = [fill_answers(p) if (p.extra or {}).get("answers") else p for p in problems]
    return {p.name: p for p in problems}


def audit_run(run_dir: str | Path, config: Config, checker: KernelAuditor, *, run: str | None = None, force: bool = False,
              limit: int | None = None, log: Callable[[str], None] = print) -> AuditSummary:
    """Check each proved attempt with `checker` (`check(problem, text) -> AuditVerdict`) and store its verdict."""
    from data.store import RunStore

    with RunStore(run_dir, create=False) as store:
        info = store.run(run)
        problems = run_problems(info.config, config)
        done = {} if force else store.audits(info.id, checker.name)
        summary = AuditSummary(checker.name)
        todo = []
        for attempt in store.iter_attempts(info.id, status="proved"):
            summary.proved += 1
            if (attempt.problem, attempt.index) in done:
                summary.skipped += 1
            elif limit is None or len(todo) < limit:
                todo.append(attempt)
        for i, attempt in enumerate(todo, 1):
            problem = problems.get(attempt.problem)
            if problem is None:
                raise EvalError(f"attempt {attempt.problem}#{attempt.index}: no such problem in "
                                f"{info.config.get('problem_set')!r} (the problem set changed since the run)")
            verdict = checker.check(problem, attempt.text)
            store.record_audit(info.id, attempt.problem, attempt.index, checker.name, verdict.accepted,
                               verdict.detail)
            summary.audited += 1
            if verdict.accepted is None:
                summary.unavailable += 1
            elif verdict.accepted:
                summary.accepted += 1
            else:
                summary.rejected += 1
            word = {True: "accepted", False: "REJECTED", None: "not checked"}[verdict.accepted]
            log(f"[{i}/{len(todo)}] {attempt.problem}#{attempt.index}: {word} by {checker.name} "
                f"({verdict.wall_s:.1f}s){': ' + verdict.detail if verdict.accepted is not True else ''}")
        return summary
