"""`Checker`: what a run needs of a verifier. `Verifier` (a local REPL pool) and `RemoteVerifier` (a server) are
the two; the runner, the strategies (through `prover.runner.AsyncChecker`), eval and training take any Checker.

Only a Checker's `Verdict` decides "proved"; `submit` returns at once with a future, so callers can keep many
proofs in flight.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Protocol, runtime_checkable

from lean_env.problem import LeanProblem
from lean_env.verdict import Verdict


@runtime_checkable
class Checker(Protocol):
    lean_version: str | None
    mathlib_version: str | None

    def verify(self, problem: LeanProblem, proof_src: str) -> Verdict: ...

    def verify_many(self, items: list[tuple[LeanProblem, str]]) -> list[Verdict]: ...

    def submit(self, problem: LeanProblem, proof_src: str) -> Future[Verdict]: ...

    def close(self, cancel_running: bool = False) -> None: ...
