"""`RemoteVerifier`: the `Verifier` interface (`verify`, `verify_many`, `submit`, `close`) over HTTP.

Against our own server (`subgoal lean serve`) each proof is sent with its problem's statement and the server's
verdict comes back. Against a kimina-lean-server, which only runs Lean, the verdict is made here: the
lexical soundness checks run locally, and the proof is sent with `#print axioms` / `#check @NAME` appended (plus
the statement's reference type, once per problem), so the same judgement as the local `Verifier`'s applies to
kimina's raw answer. The rule: anything we cannot read back (no axioms line, a swallowed check) is not PROVED.
HTTP failures are retried with backoff as the OpenAI client does (connection errors, timeouts, 408/409/425/429,
5xx; `Retry-After` honoured); when the tries run out the proof gets a CRASHED verdict, never an exception.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any

import httpx

from lean_env import protocol
from lean_env.errors import LeanError
from lean_env.problem import LeanProblem
from lean_env.protocol import CommandResult
from lean_env.verdict import Message, Pos, Sorry, Status, Verdict
from lean_env.verifier import Verifier, _Outcome, check_command, reference_command

RETRY_STATUS = {408, 409, 425, 429}


class RemoteUnavailable(Exception):
    """The server gave no usable answer after every retry (the reason is the proof's CRASHED verdict)."""


class RemoteVerifier:
    def __init__(self, url: str, *, api_key: str | None = None, timeout_s: float = 300.0, kind: str = "auto",
                 max_retries: int = 5, concurrency: int = 64, http_timeout_s: float | None = None,
                 backoff_s: float = 0.5, max_backoff_s: float = 8.0):
        if kind not in ("auto", "subgoal", "kimina"):
            raise LeanError(f"remote checker kind must be auto, subgoal or kimina, not {kind!r}")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s  # Lean's limit per REPL call, sent with every request
        self.kind = kind
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.retries = 0  # requests retried, over the verifier's life
        self.lean_version: str | None = None
        self.mathlib_version: str | None = None
        self.judge = Verifier(None)  # type: ignore[arg-type]  # no pool: lexical checks and judging only
        self._references: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # the server may queue a proof (max_wait) and run three REPL calls for it
        self._http_timeout = http_timeout_s or 3 * timeout_s + 90
        self._headers = headers
        self._concurrency = concurrency
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="remote-verifier", daemon=True)
        self._thread.start()
        self._client: httpx.AsyncClient = self._call(self._open())

    async def _open(self) -> httpx.AsyncClient:
        self._sem = asyncio.Semaphore(self._concurrency)
        self._detect = asyncio.Lock()
        limits = httpx.Limits(max_connections=self._concurrency, max_keepalive_connections=self._concurrency)
        return httpx.AsyncClient(headers=self._headers, timeout=httpx.Timeout(self._http_timeout), limits=limits)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    # ---- the Verifier interface ---------------------------------------------------------------------
    def submit(self, problem: LeanProblem, proof_src: str) -> Future:
        return asyncio.run_coroutine_threadsafe(self._verify(problem, proof_src), self._loop)

    def verify(self, problem: LeanProblem, proof_src: str) -> Verdict:
        return self.submit(problem, proof_src).result()

    def verify_many(self, items: list[tuple[LeanProblem, str]]) -> list[Verdict]:
        futures = [self.submit(p, s) for p, s in items]  # all in flight at once, up to `concurrency`
        return [f.result() for f in futures]

    def health(self) -> dict[str, Any]:
        """The server's /health answer; `LeanError` when it cannot be reached (a check before a long run)."""
        try:
            return self._call(self._health())
        except RemoteUnavailable as e:
            raise LeanError(f"the remote checker at {self.url} is not reachable: {e}") from None

    def close(self, cancel_running: bool = False) -> None:  # the Verifier's signature; a server's calls end with it
        if self._loop.is_closed():
            return
        self._call(self._client.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> RemoteVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- one proof ----------------------------------------------------------------------------------
    async def _verify(self, problem: LeanProblem, proof_src: str) -> Verdict:
        t0 = time.monotonic()
        try:
            if self.kind == "auto":
                async with self._detect:  # one /health for all the proofs submitted before the answer
                    if self.kind == "auto":
                        await self._health()
            if self.kind == "subgoal":
                return await self._verify_on_subgoal(problem, proof_src)
            return await self._verify_on_kimina(problem, proof_src, t0)
        except RemoteUnavailable as e:
            return self.judge._verdict(Status.CRASHED, reasons=[f"remote checker {self.url}: {e}"],
                                       wall=time.monotonic() - t0)

    async def _health(self) -> dict[str, Any]:
        info = await self._request("GET", "/health")
        if self.kind == "auto":
            self.kind = "subgoal" if info.get("service") == "subgoal" else "kimina"
        self.lean_version = info.get("lean_version", self.lean_version)
        self.mathlib_version = info.get("mathlib_version", self.mathlib_version)
        return info

    async def _verify_on_subgoal(self, problem: LeanProblem, proof_src: str) -> Verdict:
        snippet = {"id": uuid.uuid4().hex, "code": proof_src, "statement": problem.formal_statement,
                   "header": problem.header or ""}
        result = (await self._check([snippet]))[0]
        if result.get("verdict"):
            return Verdict.from_dict(result["verdict"])
        raise RemoteUnavailable(f"the server answered without a verdict: {result.get('error') or result}")

    async def _verify_on_kimina(self, problem: LeanProblem, proof_src: str, t0: float) -> Verdict:
        prep = self.judge.prepare(problem, proof_src)
        if isinstance(prep, Verdict):
            return prep
        if not prep.run_lean:
            return self.judge._verdict(Status.UNSOUND, reasons=prep.reasons, wall=time.monotonic() - t0)
        prefix = prep.header if not prep.header or prep.header.endswith("\n") else prep.header + "\n"
        before_check = prefix + prep.body + "\n\n"
        snippets = [{"id": "proof", "code": before_check + check_command(prep.name)}]
        key = (prep.header, prep.statement)
        if self.judge.check_types and key not in self._references:
            snippets.append({"id": "reference", "code": prefix + reference_command(prep.statement, prep.name)})
        results = {r["id"]: r for r in await self._check(snippets)}
        proof = results["proof"]
        if proof.get("error"):
            status = Status.TIMEOUT if "timed out" in proof["error"] else Status.CRASHED
            return self.judge._verdict(status, reasons=[f"the Lean server: {proof['error']}"],
                                       wall=time.monotonic() - t0)
        if "reference" in results:
            self._references[key] = _reference(results["reference"])
        reference, ref_error = self._references.get(key, (None, None))
        header, body, check = _split(proof.get("response") or {}, prefix.count("\n"), before_check.count("\n"))
        if header.errors:
            return self.judge._verdict(Status.FAILED, messages=header.messages,
                                       reasons=["header does not compile: " + header.errors[0].data.splitlines()[0]])
        outcome = _Outcome(body, check if body.ok else None, reference, ref_error, time.monotonic() - t0, 0.0)
        return self.judge._judge(prep, outcome, outcome.wall_s)

    # ---- HTTP ---------------------------------------------------------------------------------------
    async def _check(self, snippets: list[dict[str, Any]]) -> list[dict[str, Any]]:
        data = await self._request("POST", "/api/check", {"snippets": snippets, "timeout": int(self.timeout_s)})
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list) or len(results) != len(snippets):
            raise RemoteUnavailable(f"malformed /api/check answer: {str(data)[:200]}")
        return results

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        last = ""
        async with self._sem:
            for attempt in range(self.max_retries + 1):
                delay = min(self.max_backoff_s, self.backoff_s * 2**attempt) * (0.75 + 0.5 * random.random())
                try:
                    r = await self._client.request(method, self.url + path, json=body)
                except httpx.TimeoutException:
                    last = f"no answer within {self._http_timeout:g}s"
                except httpx.TransportError as e:
                    last = f"connection failed ({type(e).__name__}: {e})"
                else:
                    if r.status_code < 400:
                        try:
                            return r.json()
                        except ValueError:
                            raise RemoteUnavailable(f"{path} answered non-JSON: {r.text[:120]!r}") from None
                    last = f"HTTP {r.status_code}: {r.text[:200]}"
                    if r.status_code < 500 and r.status_code not in RETRY_STATUS:
                        raise RemoteUnavailable(f"{path} refused the request: {last}")
                    after = r.headers.get("retry-after", "")
                    if after.replace(".", "", 1).isdigit():
                        delay = min(self.max_backoff_s, float(after))
                if attempt < self.max_retries:
                    self.retries += 1
                    await asyncio.sleep(delay)
        raise RemoteUnavailable(f"gave up after {self.max_retries + 1} tries; last error: {last}")


def _reference(result: dict[str, Any]) -> tuple[str | None, str | None]:
    """(elaborated statement type, error) from the reference snippet's answer, as the local verifier caches it."""
    if result.get("error"):
        return None, result["error"]
    res = _command(result.get("response") or {})
    if not res.ok:
        return None, res.error or res.errors[0].data
    infos = [m.data for m in res.messages if m.severity == "info"]
    return (infos[-1], None) if infos else (None, "no #check output")


def _command(obj: dict[str, Any]) -> CommandResult:
    if "message" not in obj and "env" not in obj:  # kimina drops `env` when it garbage-collects
        obj = {**obj, "env": 0}
    try:
        return protocol.as_command(protocol.parse_response(obj))
    except ValueError as e:
        raise RemoteUnavailable(str(e)) from None


def _split(obj: dict[str, Any], body_start: int, check_start: int) -> tuple[CommandResult, CommandResult,
                                                                           CommandResult]:
    """One kimina answer for header + body + check, cut back into three answers by line (body lines renumbered
    from 1, as the local verifier's body command sees them)."""
    res = _command(obj)
    if res.error is not None:
        return CommandResult(env=None), CommandResult(env=None, error=res.error), CommandResult(env=None)
    parts: tuple[list[Message], list[Message], list[Message]] = ([], [], [])
    for m in res.messages:
        line = m.pos.line if m.pos else body_start + 1
        part = 2 if line > check_start else 1 if line > body_start else 0
        shift = (0, body_start, check_start)[part]
        parts[part].append(Message(m.severity, m.data, _up(m.pos, shift), _up(m.end_pos, shift)))
    sorries = [Sorry(s.goal, _up(s.pos, body_start), _up(s.end_pos, body_start), s.proof_state)
               for s in res.sorries if not s.pos or body_start < s.pos.line <= check_start]
    return (CommandResult(env=0, messages=parts[0]), CommandResult(env=0, messages=parts[1], sorries=sorries),
            CommandResult(env=0, messages=parts[2]))


def _up(p: Pos | None, shift: int) -> Pos | None:
    return Pos(p.line - shift, p.column) if p else None

