"""Step-wise proof interaction through LeanDojo (`lean_dojo.Dojo`), as a `ProofSession`.

The REPL session (`lean_env.interaction.ReplSession`) stays the default; this one is for theorems of a repository
LeanDojo has traced (the LeanDojo benchmark sets: their problems carry `url`, `commit`, `file_path` and
`full_name` in `extra`). LeanDojo replaces the theorem's proof in its own file with a REPL tactic, so each theorem
runs in its real context. `lean_dojo` is the optional `dojo` extra and is imported only when a session opens.

A finished proof here is a claim, not a verdict: the session exposes the tactic list and the full theorem text
(`proof_text`), and the search re-checks that text with the `Verifier` before anything counts as proved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from lean_env.errors import LeanError
from lean_env.interaction import TacticResult, tactic_proof
from lean_env.problem import LeanProblem

INSTALL_HINT = "install the optional extra with `pip install 'subgoal[dojo]'` (or `pip install lean-dojo`)"


def import_lean_dojo() -> ModuleType:
    try:
        import lean_dojo
    except ImportError as e:
        raise LeanError(
            f"the dojo interaction needs LeanDojo, which is not installed ({e}): {INSTALL_HINT}"
        ) from None
    return lean_dojo


def split_goals(pp: str) -> list[str]:
    """LeanDojo's pretty-printed state -> one text per goal (goals are separated by blank lines; a `case` tag
    separated from its goal by a blank line stays with it)."""
    goals: list[str] = []
    pending = ""
    for chunk in pp.split("\n\n"):
        if "⊢" in chunk:
            goals.append(pending + chunk)
            pending = ""
        elif chunk.strip():
            pending += chunk + "\n"
    return goals


@dataclass(frozen=True)
class DojoState:
    """A proof state of one theorem: the goals, and the tactics that led here from the theorem's start."""

    problem: str
    goals: tuple[str, ...]
    tactics: tuple[str, ...] = ()
    finished: bool = False
    sid: int = -1  # LeanDojo's state id, valid in the Lean process of `generation`
    generation: int = 0
    raw: Any = field(default=None, compare=False, repr=False)  # the lean_dojo TacticState

    @property
    def pp(self) -> str:
        return "\n\n".join(self.goals)


@dataclass
class _Open:
    """One theorem's Dojo: its context manager (to exit), the dojo, and which Lean process it is."""

    problem: LeanProblem
    context: Any
    dojo: Any
    init: Any  # the theorem's initial lean_dojo state in this process
    generation: int
    alive: bool = True


class DojoSession:
    """`ProofSession` over `lean_dojo.Dojo`: one Dojo (one Lean process) per started theorem.

    Starting a theorem that is already open reuses its Lean process (LeanDojo states are immutable, so every
    state handed out stays valid). A crash or a tactic timeout kills that process; the next tactic on one of its
    states reopens the theorem and replays the state's tactics, so no state handed out becomes unusable.
    """

    def __init__(
        self,
        timeout_s: float = 600.0,
        additional_imports: list[str] | tuple[str, ...] = (),
        build_deps: bool = True,
        lean_dojo: ModuleType | None = None,
    ):
        self.timeout_s = timeout_s
        self.additional_imports = list(additional_imports)
        self.build_deps = build_deps
        self._ld = lean_dojo or import_lean_dojo()
        self._repos: dict[tuple[str, str], Any] = {}
        self._open: dict[str, _Open] = {}

    # ------------------------------------------------------------------------------ ProofSession
    def start(self, problem: LeanProblem) -> DojoState:
        """Open the theorem in LeanDojo and return its initial state."""
        entry = self._open.get(problem.name)
        if entry is None or not entry.alive:
            entry = self._enter(problem, entry.generation + 1 if entry else 0)
        return self._state(problem.name, entry.init, (), entry.generation)

    def run_tactic(self, state: DojoState, tactic: str) -> TacticResult:
        """Apply `tactic` to `state`: a `TacticResult` with the new state and its goals, finished, or an error."""
        if state.finished:
            return TacticResult(state=None, goals=[], finished=False, error="the proof is already finished")
        entry = self._open.get(state.problem)
        if entry is None:
            return TacticResult(
                state=None, goals=[], finished=False, error=f"no open proof of {state.problem}"
            )
        raw = state.raw
        if not entry.alive or entry.generation != state.generation:
            entry, raw = self._replay(entry, state.tactics)
            if entry is None or raw is None:
                return TacticResult(
                    state=None,
                    goals=[],
                    finished=False,
                    error="Lean restarted and the proof so far could not be replayed",
                )
        return self._step(entry, raw, state.tactics, tactic)

    def close(self) -> None:
        for entry in list(self._open.values()):
            self._exit(entry)
        self._open.clear()

    def __enter__(self) -> DojoSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ proof text
    def proof_text(self, problem: LeanProblem, state: DojoState) -> str:
        """The whole theorem (statement + tactic proof) that reached `state`, for the Verifier to re-check."""
        return tactic_proof(problem.formal_statement, state.tactics)

    # ------------------------------------------------------------------------------ internals
    def _theorem(self, problem: LeanProblem) -> Any:
        extra = problem.extra or {}
        missing = [k for k in ("url", "commit", "file_path") if not extra.get(k)]
        if missing:
            raise LeanError(
                f"the dojo interaction opens theorems of a repository LeanDojo has traced (LeanDojo benchmark "
                f"problems, with url/commit/file_path in extra); {problem.name} has no {'/'.join(missing)}: "
                "use --interaction repl for it"
            )
        key = (extra["url"], extra["commit"])
        if key not in self._repos:
            try:
                self._repos[key] = self._ld.LeanGitRepo(*key)
            except Exception as e:  # network / GitHub API / git errors: say which repository
                raise LeanError(
                    f"LeanDojo cannot open {key[0]} at {key[1]} ({type(e).__name__}: {e})"
                ) from None
        return self._ld.Theorem(self._repos[key], extra["file_path"], extra.get("full_name") or problem.name)

    def _enter(self, problem: LeanProblem, generation: int) -> _Open:
        context = self._ld.Dojo(
            self._theorem(problem),
            timeout=int(self.timeout_s),
            additional_imports=self.additional_imports,
            build_deps=self.build_deps,
        )
        try:
            dojo, init = context.__enter__()
        except self._ld.DojoInitError as e:
            raise LeanError(f"LeanDojo could not open {problem.name}: {e}") from None
        except (self._ld.DojoCrashError, self._ld.DojoTacticTimeoutError) as e:
            raise LeanError(
                f"Lean failed while LeanDojo opened {problem.name}: {type(e).__name__} {e}"
            ) from None
        entry = _Open(problem, context, dojo, init, generation)
        self._open[problem.name] = entry
        return entry

    def _exit(self, entry: _Open) -> None:
        if entry.alive:
            entry.alive = False
            try:
                entry.context.__exit__(None, None, None)
            except Exception:  # the process may already be gone; nothing is left to clean
                pass

    def _state(self, name: str, raw: Any, tactics: tuple[str, ...], generation: int) -> DojoState:
        return DojoState(name, tuple(split_goals(raw.pp)), tactics, False, raw.id, generation, raw)

    def _step(self, entry: _Open, raw: Any, tactics: tuple[str, ...], tactic: str) -> TacticResult:
        ld = self._ld
        try:
            res = entry.dojo.run_tac(raw, tactic)
        except ld.DojoTacticTimeoutError:
            self._exit(entry)  # the Lean process is still busy with it: kill it, reopen on the next call
            return TacticResult(
                state=None, goals=[], finished=False, error=f"timeout after {self.timeout_s:g}s"
            )
        except ld.DojoCrashError as e:
            self._exit(entry)
            return TacticResult(state=None, goals=[], finished=False, error=f"Lean crashed ({e})")
        done = (*tactics, tactic)
        if isinstance(res, ld.ProofFinished):
            state = DojoState(entry.problem.name, (), done, True, res.tactic_state_id, entry.generation, res)
            return TacticResult(state=state, goals=[], finished=True, error=None)
        if isinstance(res, ld.TacticState):
            state = self._state(entry.problem.name, res, done, entry.generation)
            return TacticResult(state=state, goals=list(state.goals), finished=False, error=None)
        if isinstance(res, ld.ProofGivenUp):
            return TacticResult(
                state=None, goals=[], finished=False, error="the tactic gave up (sorry/admit)"
            )
        if isinstance(res, ld.LeanError):
            return TacticResult(state=None, goals=[], finished=False, error=res.error)
        return TacticResult(state=None, goals=[], finished=False, error=f"unexpected LeanDojo answer {res!r}")

    def _replay(self, entry: _Open, tactics: tuple[str, ...]) -> tuple[_Open | None, Any]:
        """Re-run `tactics` from the theorem's start in its live process (reopened first if it died)."""
        if not entry.alive:
            try:
                entry = self._enter(entry.problem, entry.generation + 1)
            except LeanError:
                return None, None
        raw = entry.init
        for tac in tactics:
            res = self._step(entry, raw, (), tac)
            if res.error is not None or res.finished:
                return entry, None
            raw = res.state.raw
        return entry, raw
