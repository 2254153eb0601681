"""`CheckService`: the verifier behind the HTTP server and the MCP tools, for asyncio callers.

A snippet is checked one of two ways: as plain Lean (kimina's semantics: the REPL's own answer, its imports run
once per REPL process and reused) or, when it names a problem or carries a statement, by the `Verifier`
(this project's verdict). The rule that matters: admission. At most `capacity` snippets are admitted at once
(every REPL busy plus a bounded queue); a snippet that waits `max_wait_s` for a slot makes its request fail
with `Overloaded` (HTTP 429), so an overloaded server answers quickly instead of queueing without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from lean_env import text
from lean_env.errors import PoolClosed, ReplFailure, ReplTimeout
from lean_env.pool import HeaderRejected
from lean_env.problem import LeanProblem, StatedProblem
from lean_env.protocol import CommandResult
from lean_env.verdict import Status, Verdict
from lean_env.verifier import Verifier
from lean_env.wire import ReplResponse, Snippet, command_json, verdict_json


class Overloaded(Exception):
    """No REPL slot within `max_wait_s`: the request is refused (HTTP 429); retrying later is right."""


def timeout_error(seconds: float) -> str:
    return f"Lean REPL command timed out in {seconds:g} seconds"  # kimina's wording: its client looks for "timed out"


class CheckService:
    def __init__(self, verifier: Verifier, problems: dict[str, LeanProblem] | None = None, *, max_wait_s: float = 60.0,
                 max_timeout_s: float = 300.0, capacity: int | None = None):
        self.verifier = verifier
        self.pool = verifier.pool
        self.problems = dict(problems or {})
        self.max_wait_s = max_wait_s
        self.max_timeout_s = max_timeout_s
        # the pool's queue must hold every admitted snippet, or `submit` would block the event loop
        self.capacity = capacity or self.pool._queue.maxsize or 4 * self.pool.workers
        self._slots = asyncio.Semaphore(self.capacity)
        self.admitted = 0  # snippets holding a slot now

    def effective_timeout(self, requested: float | None) -> float:
        """The request's timeout, capped by the server's (0 or none: the server's)."""
        return min(requested, self.max_timeout_s) if requested else self.max_timeout_s

    async def check(self, snippets: list[Snippet], timeout: float | None = None, infotree: str | None = None,
                    debug: bool = False) -> list[ReplResponse]:
        """Results in the order of `snippets`; `Overloaded` when any of them gets no slot in time."""
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self.check_one(s, timeout, infotree, debug)) for s in snippets]
        except* Overloaded as group:
            raise group.exceptions[0] from None
        return [t.result() for t in tasks]

    async def check_one(self, snippet: Snippet, timeout: float | None = None, infotree: str | None = None,
                        debug: bool = False) -> ReplResponse:
        seconds = self.effective_timeout(timeout)
        async with self.slot():
            t0 = time.monotonic()
            if snippet.wants_verdict:
                out = await self._verify(snippet, seconds)
            else:
                out = await self._run(snippet, seconds, infotree)
        out.time = round(time.monotonic() - t0, 6)
        if debug:
            out.diagnostics = {"workers": self.pool.workers, "queue_depth": self.pool.metrics().queue_depth}
        return out

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the `capacity` slots while checking; `Overloaded` after `max_wait_s` without one."""
        try:
            await asyncio.wait_for(self._slots.acquire(), self.max_wait_s)
        except TimeoutError:
            raise Overloaded(f"No available REPLs: every one of the {self.capacity} slots stayed busy for "
                             f"{self.max_wait_s:g}s; retry later") from None
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1
            self._slots.release()

    async def run_code(self, code: str, seconds: float | None = None,
                       infotree: str | None = None) -> tuple[CommandResult | None, str | None, int]:
        """Run a snippet as plain Lean: (the REPL's answer or None, an error or None, the lines of its imports,
        which ran apart: the answer's line numbers count from after them)."""
        imports, body = text.split_imports(code)
        seconds = self.effective_timeout(seconds)
        fut = self.pool.submit(lambda s: s.repl.run_cmd(body, s.env, infotree=infotree, timeout_s=seconds), imports)
        try:
            return await asyncio.wrap_future(fut), None, imports.count("\n")
        except HeaderRejected as e:
            return e.result, None, 0
        except ReplTimeout:
            return None, timeout_error(seconds), 0
        except ReplFailure as e:
            tail = e.stderr_tail.strip().splitlines()[-1:] if e.stderr_tail else []
            return None, " ".join([f"Lean REPL failed: {e}", *tail]), 0
        except PoolClosed:
            return None, "the server is shutting down", 0

    async def _run(self, snippet: Snippet, seconds: float, infotree: str | None) -> ReplResponse:
        result, error, shift = await self.run_code(snippet.code, seconds, infotree)
        if result is None:
            return ReplResponse(id=snippet.id, error=error)
        return ReplResponse(id=snippet.id, response=command_json(result, shift))

    async def _verify(self, snippet: Snippet, seconds: float) -> ReplResponse:
        problem = self.problem_of(snippet)
        if problem is None:
            return ReplResponse(id=snippet.id, error=f"unknown problem {snippet.problem!r}: this server has "
                                f"{len(self.problems)} problems loaded (`subgoal lean serve --problems`)")
        try:
            # the lexical checks run before submitting: on a thread, so the event loop keeps serving requests
            fut = await asyncio.to_thread(self.verifier.submit, problem, snippet.code, timeout_s=seconds)
            verdict: Verdict = await asyncio.wrap_future(fut)
        except PoolClosed:
            return ReplResponse(id=snippet.id, error="the server is shutting down")
        vd = verdict.to_dict()
        if verdict.status is Status.TIMEOUT:
            return ReplResponse(id=snippet.id, error=timeout_error(seconds), verdict=vd)
        if verdict.status is Status.CRASHED:
            return ReplResponse(id=snippet.id, error="; ".join(verdict.reasons) or "Lean REPL failed", verdict=vd)
        return ReplResponse(id=snippet.id, response=verdict_json(verdict), verdict=vd)

    def problem_of(self, snippet: Snippet) -> LeanProblem | None:
        if snippet.problem is not None:
            return self.problems.get(snippet.problem)
        header = snippet.header if snippet.header is not None else text.split_imports(snippet.code)[0]
        return StatedProblem(text.theorem_name(snippet.statement or "") or snippet.id, snippet.statement or "", header)

    def warm(self, headers: list[str], timeout_s: float = 1800.0) -> list[str]:
        """Import each header on every REPL before serving (kimina's `init_repls`): the first requests then pay
        no `import Mathlib`. Each header's jobs meet at a barrier, so no REPL takes two of them. Returns one
        line per header that failed (it does not compile, or the REPLs did not all answer in time)."""
        failed = []
        for header in dict.fromkeys(h for h in headers if h.strip()):
            barrier = threading.Barrier(self.pool.workers, timeout=timeout_s)
            futures = [self.pool.submit(lambda s, b=barrier: b.wait(), header) for _ in range(self.pool.workers)]
            errors = {f"{type(e).__name__}: {e}" for e in (f.exception() for f in futures) if e is not None}
            if errors:
                failed.append(f"{header.strip().splitlines()[0]} ...: {sorted(errors)[0]}")
        return failed

    def health(self) -> dict[str, Any]:
        m = self.pool.metrics()
        return {"status": "ok", "service": "subgoal", "workers": m.workers, "busy": m.busy,
                "queue_depth": m.queue_depth, "admitted": self.admitted, "capacity": self.capacity,
                "problems": len(self.problems), "lean_version": self.verifier.lean_version,
                "mathlib_version": self.verifier.mathlib_version}


def outcome(resp: ReplResponse) -> str:
    """One label per result, for metrics and the request log: the verdict's status, else kimina's analysis."""
    if resp.verdict is not None:
        return str(resp.verdict["status"])
    if resp.error is not None:
        return "timeout" if "timed out" in resp.error else "server_error"
    r = resp.response or {}
    if "message" in r:
        return "repl_error"
    if any(m.get("severity") == "error" for m in r.get("messages", [])):
        return "lean_error"
    return "sorry" if r.get("sorries") else "valid"
