"""Step-wise proof interaction for tree search: one `ProofSession` interface, two implementations.

- `ReplSession` (default): the Lean REPL's tactic mode. `start` elaborates `statement sorry` in the problem's
  header environment (imported once per header) and takes the sorry's proof state; `run_tactic` sends
  `{"tactic", "proofState"}`. States remember the tactics that led to them, so after a REPL restart (crash,
  timeout, memory cap) a state is replayed in the fresh process instead of becoming unusable.
- `DojoSession` (`lean_env.dojo`, imported lazily): LeanDojo's `Dojo`, for theorems of traced repositories.

A finished session proof is a claim, not a verdict: callers re-check `proof_text(problem, state)` with the
`Verifier` before anything counts as proved (the REPL's tactic mode does not look for new axioms etc.).
A session may also have `interrupt()`: called from another thread, it ends the call in progress at once (a search
cancelled mid-tactic, Ctrl-C) instead of at the REPL's timeout.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from lean_env.errors import LeanError, ReplCrashed, ReplFailure
from lean_env.problem import LeanProblem
from lean_env.text import open_statement

if TYPE_CHECKING:
    from lean_env.repl import Repl
    from lean_env.settings import LeanSettings


class ProofState(Protocol):
    """A point in a proof: its open goals, and whether none are left. Each session has its own state type
    (`ReplState`, `lean_env.dojo.DojoState`) and takes back only the states it gave."""

    @property
    def goals(self) -> tuple[str, ...]: ...

    @property
    def finished(self) -> bool: ...


@dataclass(frozen=True)
class TacticResult:
    state: ProofState | None  # the new state (None when the tactic failed)
    goals: list[str]
    finished: bool  # no goals left
    error: str | None  # why the tactic failed (Lean's message, a timeout, a crash)


@runtime_checkable
class ProofSession(Protocol):
    def start(self, problem: LeanProblem) -> ProofState: ...

    def run_tactic(self, state: ProofState, tactic: str) -> TacticResult: ...

    def proof_text(self, problem: LeanProblem, state: ProofState) -> str: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ReplState:
    problem: str
    proof_state: int
    goals: tuple[str, ...]
    tactics: tuple[str, ...] = ()
    generation: int = 0  # the REPL process generation the proof-state id belongs to
    finished: bool = False


def indent_tactic(tactic: str) -> str:
    return "\n".join("  " + line if line.strip() else line for line in tactic.strip("\n").split("\n"))


def tactic_proof(formal_statement: str, tactics: Iterable[str]) -> str:
    """The whole theorem (statement + tactic proof) that a sequence of tactics built, for the Verifier to re-check."""
    statement = (open_statement(formal_statement) or formal_statement.rstrip() + " by").rstrip()
    return statement + "\n" + "\n".join(indent_tactic(t) for t in tactics) + "\n"


def statement_with_sorry(formal_statement: str) -> str:
    s = formal_statement.rstrip()
    if s.endswith("sorry"):
        return s
    return s + (" sorry" if s.endswith("by") or s.endswith(":=") else " := by sorry")


class ReplSession:
    """`ProofSession` over one `lean_env.repl.Repl` (not thread-safe: one search at a time)."""

    def __init__(self, repl: Repl, timeout_s: float | None = None, own_repl: bool = False):
        self.repl = repl
        self.timeout_s = timeout_s
        self.own_repl = own_repl
        self.calls = 0  # REPL calls made (budget accounting)
        self._envs: dict[str, tuple[int, int]] = {}  # header -> (env id, generation)
        self._problems: dict[str, Any] = {}
        self._lock = threading.Lock()  # `interrupt` comes from another thread than the call's
        self._depth = 0  # nesting of the call in progress (a replay calls `start` and `run_tactic` inside one)
        self._interrupted = False  # set by `interrupt`, cleared when the call in progress returns

    def interrupt(self) -> None:
        """End the call in progress now (from another thread): the REPL is killed, so the call's wait on it fails at
        once, and its further REPL requests (a replay's steps) fail without starting Lean again. The next call
        restarts the REPL and replays the state it is given. Without a call in progress, nothing happens."""
        with self._lock:
            if not self._depth:
                return
            self._interrupted = True
        self.repl.kill()

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        with self._lock:
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if not self._depth:
                    self._interrupted = False

    def _live_repl(self) -> Repl:
        """The REPL for the next request of the call in progress; after `interrupt`, its failure instead."""
        if self._interrupted:
            raise ReplCrashed("the call was interrupted (the REPL was killed)")
        return self.repl

    def start(self, problem: LeanProblem) -> ReplState:
        with self._call():
            return self._start(problem)

    def _start(self, problem: LeanProblem) -> ReplState:
        self._problems[problem.name] = problem
        env = self._header_env(problem.header or "")
        self.calls += 1
        try:
            res = self._live_repl().run_cmd(statement_with_sorry(problem.formal_statement), env=env,
                                            timeout_s=self.timeout_s)
        except ReplFailure as e:
            raise LeanError(f"{problem.name}: the REPL failed on the statement ({type(e).__name__}: {e})") from None
        if res.error or res.errors or not res.sorries:
            why = res.error or "; ".join(m.data for m in res.errors[:3]) or "no sorry goal came back"
            raise LeanError(f"{problem.name}: the statement does not elaborate: {why}")
        root = res.sorries[-1]  # answer abbrevs (PutnamBench) come first; the theorem's sorry is last
        return ReplState(problem.name, int(root.proof_state), (root.goal,), (), self.repl.generation)

    def run_tactic(self, state: ReplState, tactic: str) -> TacticResult:
        with self._call():
            return self._run_tactic(state, tactic)

    def _run_tactic(self, state: ReplState, tactic: str) -> TacticResult:
        if state.finished:
            return TacticResult(None, [], False, "the proof is already finished")
        if self._interrupted:
            return TacticResult(None, [], False, "the call was interrupted (the REPL was killed)")
        self.repl.start()  # no-op while alive; after a crash or kill, the restart bumps `generation`
        if state.generation != self.repl.generation:  # the REPL restarted since: rebuild the state
            state = self._replay(state)
            if state is None:
                return TacticResult(None, [], False, "Lean restarted and the proof so far could not be replayed")
        self.calls += 1
        try:
            res = self._live_repl().run_tactic(tactic, state.proof_state, timeout_s=self.timeout_s)
        except ReplFailure as e:
            return TacticResult(None, [], False, f"{type(e).__name__}: {e}")
        if res.error is not None:
            return TacticResult(None, [], False, res.error)
        errors = [m.data for m in res.messages if m.severity == "error"]
        if errors:
            return TacticResult(None, [], False, errors[0])
        if res.sorries or (res.proof_status or "").startswith("Incomplete: contains sorry"):
            return TacticResult(None, [], False, "the tactic closes goals with sorry")
        finished = not res.goals and res.proof_status in (None, "Completed")
        new = ReplState(state.problem, int(res.proof_state), tuple(res.goals), (*state.tactics, tactic),
                        state.generation, finished)
        return TacticResult(new, list(res.goals), finished, None)

    def proof_text(self, problem: LeanProblem, state: ReplState) -> str:
        return tactic_proof(problem.formal_statement, state.tactics)

    def close(self) -> None:
        if self.own_repl:
            self.repl.close()

    def __enter__(self) -> ReplSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _header_env(self, header: str) -> int | None:
        if not header.strip():
            return None
        cached = self._envs.get(header)
        if cached and cached[1] == self.repl.generation and self.repl.alive:  # (killed since: its envs are gone)
            return cached[0]
        self.calls += 1
        try:
            res = self._live_repl().run_cmd(header, timeout_s=self.timeout_s)
        except ReplFailure as e:
            raise LeanError(f"the REPL failed on the header ({type(e).__name__}: {e})") from None
        if res.error or res.errors:
            why = res.error or "; ".join(m.data for m in res.errors[:3])
            raise LeanError(f"the problem header does not elaborate: {why}")
        self._envs[header] = (int(res.env), self.repl.generation)
        return int(res.env)

    def _replay(self, state: ReplState) -> ReplState | None:
        problem = self._problems.get(state.problem)
        if problem is None:
            return None
        try:
            fresh = self.start(problem)
        except LeanError:
            return None
        for tac in state.tactics:
            step = self.run_tactic(fresh, tac)
            if step.error is not None or step.state is None:
                return None
            fresh = step.state
        return fresh


def open_session(kind: str = "repl", *, repl: Repl | None = None, settings: LeanSettings | None = None, timeout_s: float | None = None,
                 **options: Any) -> ProofSession:
    """A proof session: `"repl"` over `repl` (a `lean_env.repl.Repl`) or a fresh REPL located from `settings`
    (duck-typed LeanSettings); `"dojo"` through LeanDojo (`options` go to `DojoSession`)."""
    if kind == "repl":
        own = repl is None
        if repl is None:
            if settings is None:
                raise LeanError("a REPL session needs a REPL or the Lean settings to start one")
            from lean_env.repl import Repl
            from lean_env.toolchain import locate

            toolchain = locate(settings)
            repl = Repl(toolchain.repl_command(), cwd=toolchain.cwd,
                        timeout_s=settings.timeout_s, memory_mb=settings.memory_mb)
        return ReplSession(repl, timeout_s=timeout_s, own_repl=own)
    if kind == "dojo":
        from lean_env.dojo import DojoSession

        return DojoSession(**({"timeout_s": timeout_s} if timeout_s else {}), **options)
    raise LeanError(f"unknown interaction {kind!r} (choose repl or dojo)")
