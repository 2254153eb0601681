"""`ReplPool`: N REPL workers behind one bounded queue, with per-REPL header environments.

Each worker thread owns one `Repl`. A job names a header (imports, options, opens); the worker imports it once
per process and reuses the resulting env id for every later job with the same header (`import Mathlib` is
paid once per process, not per proof). A worker recycles its REPL after `max_proofs_per_repl` jobs or when the
REPL's resident memory passes `recycle_mb`, restarts it after a failure, and retries a job once after a
crash or garbage answer (timeouts and memory overruns are not retried: they would repeat). Every submitted
job's future completes: with the task's value, or with a typed `ReplFailure` / `HeaderRejected` / `PoolClosed`.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil

from lean_env import text
from lean_env.errors import PoolClosed, ReplCrashed, ReplFailure, ReplGarbage, ReplOutOfMemory, ReplTimeout
from lean_env.protocol import CommandResult
from lean_env.repl import Limits, Repl

T = TypeVar("T")
CANCEL_POLL_S = 0.05  # close(cancel_running=True): how often a worker still in a call has its REPL killed again


class HeaderRejected(Exception):
    """The job's header did not compile (unknown import, bad option): every proof under it fails alike."""

    def __init__(self, header: str, result: CommandResult):
        first = result.error or next((m.data for m in result.errors), "")
        super().__init__(f"header does not compile: {first.splitlines()[0] if first else '?'}")
        self.header = header
        self.result = result


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers(memory_mb: int) -> int:
    """One REPL per core but one (left for the driver), and no more than 80% of free memory holds at the cap."""
    by_memory = int(psutil.virtual_memory().available * 0.8) // (memory_mb << 20)
    return max(1, min(cpu_count() - 1, by_memory))


class Session:
    """What a job's task sees: the worker's REPL and the env id of the job's header in it."""

    def __init__(self, repl: Repl, env: int | None, header: str):
        self.repl = repl
        self.env = env
        self.header = header


@dataclass
class PoolMetrics:
    workers: int
    submitted: int
    completed: int  # futures resolved with a value
    failed: int  # futures resolved with an exception
    timeouts: int
    crashes: int  # crashes + garbage answers
    out_of_memory: int
    restarts: int  # REPL processes started after a failure
    recycles: int  # REPLs retired after K proofs or the memory threshold
    header_imports: int  # header environments built (the expensive imports)
    queue_depth: int
    busy: int
    uptime_s: float
    proofs_per_s: float  # completed / uptime
    latency_p50_s: float  # submit -> done, over the last 1000 jobs
    latency_p99_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Job:
    task: Callable[[Session], Any]
    header: str
    future: Future
    submitted_at: float
    timeout_s: float | None


class _Worker:
    def __init__(self, pool: ReplPool, index: int):
        self.pool = pool
        self.index = index
        self.repl = pool._new_repl()
        self.envs: dict[str, int] = {}  # header -> env id, valid for `generation`
        self.generation = -1
        self.proofs = 0
        self.thread = threading.Thread(target=self.loop, name=f"repl-worker-{index}", daemon=True)

    def loop(self) -> None:
        pool = self.pool
        while True:
            job = pool._queue.get()
            if job is None:
                break
            if not job.future.set_running_or_notify_cancel():
                continue
            if pool._cancelled:  # taken just before close drained the queue: nobody waits for it any more
                pool._finish(job, error=PoolClosed("the pool was closed before this job ran"))
                continue
            with pool._lock:
                pool._busy += 1
            value, error = None, None
            try:
                value = self.run(job)
            except BaseException as e:  # every failure goes to the caller's future
                error = e
            self.maybe_recycle()  # before answering, so a caller that reads metrics sees it
            with pool._lock:
                pool._busy -= 1
            pool._finish(job, value, error)
        self.repl.close()

    def run(self, job: _Job) -> Any:
        for attempt in (0, 1):
            try:
                try:
                    env = self.header_env(job.header)
                except ReplFailure as e:
                    e.phase = "start" if e.phase == "start" else "header"
                    raise
                return job.task(Session(self.repl, env, job.header))
            except (ReplCrashed, ReplGarbage) as e:
                self.pool._count_failure(e)
                if attempt or self.pool._closed:  # no second REPL for a job of a pool that is going away
                    raise
            except ReplFailure as e:
                self.pool._count_failure(e)
                raise
            finally:
                self.proofs += 1
        raise AssertionError("unreachable")

    def header_env(self, header: str) -> int | None:
        """Env id of `header` in this worker's REPL: imports once, then the header's options/opens on top."""
        repl = self.repl
        repl.start()
        if repl.generation != self.generation:
            self.envs.clear()
            self.generation = repl.generation
        if header in self.envs:
            return self.envs[header]
        if not header.strip():
            return None
        imports, rest = text.split_imports(header)
        env = self.envs.get(imports) if imports.strip() else None
        if imports.strip() and env is None:
            res = repl.run_cmd(imports, timeout_s=self.pool.header_timeout_s)
            if not res.ok:
                raise HeaderRejected(header, res)
            env = self.envs[imports] = res.env
            self.pool._count("header_imports")
        if rest.strip():
            res = repl.run_cmd(rest, env, timeout_s=self.pool.header_timeout_s)
            if not res.ok:
                raise HeaderRejected(header, res)
            env = res.env
        self.envs[header] = env
        return env

    def maybe_recycle(self) -> None:
        pool = self.pool
        if not self.repl.alive:
            self.proofs = 0
            return
        if self.proofs >= pool.max_proofs_per_repl or self.repl.rss_mb() > pool.recycle_mb:
            self.repl.kill()
            self.proofs = 0
            pool._count("recycles")


class ReplPool:
    """N REPL workers. Thread-safe; `submit` returns a `concurrent.futures.Future`, `asubmit` an awaitable.

    `command`: the REPL program (`Toolchain.repl_command()`); `cwd`: its working directory (default: a private
    temporary directory per REPL). `queue_size` bounds the jobs waiting (submit blocks when full).
    """

    def __init__(
        self,
        command: list[str],
        workers: int | None = None,
        cwd: str | Path | None = None,
        timeout_s: float = 300.0,
        memory_mb: int = 8192,
        max_proofs_per_repl: int = 200,
        *,
        queue_size: int | None = None,
        header_timeout_s: float | None = None,
        recycle_fraction: float = 0.8,
        limits: Limits | None = None,
        env: dict[str, str] | None = None,
        isolate_network: bool = True,
    ):
        self.command = list(command)
        self.cwd = cwd
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.max_proofs_per_repl = max_proofs_per_repl
        self.header_timeout_s = header_timeout_s or max(timeout_s, 600.0)
        self.recycle_mb = memory_mb * recycle_fraction
        # CPU-seconds backstop over a REPL's life: unreachable while every call keeps to its wall-clock limit
        lifetime_cpu = int((self.header_timeout_s + timeout_s * max_proofs_per_repl) * cpu_count()) + 60
        self.limits = limits or Limits(memory_mb=memory_mb, cpu_s=lifetime_cpu)
        self.env = env
        self.isolate_network = isolate_network
        n = workers or default_workers(memory_mb)
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=queue_size or 4 * n)
        self._lock = threading.Lock()
        self._closed = False
        self._cancelled = False  # closed with cancel_running: workers start no job and no REPL any more
        self._busy = 0
        self._counts = dict.fromkeys(("submitted", "completed", "failed", "timeouts", "crashes",
                                      "out_of_memory", "restarts", "recycles", "header_imports"), 0)
        self._latencies: deque[float] = deque(maxlen=1000)
        self._started = time.monotonic()
        self._workers = [_Worker(self, i) for i in range(n)]
        for w in self._workers:
            w.thread.start()

    @property
    def workers(self) -> int:
        return len(self._workers)

    def _new_repl(self) -> Repl:
        return Repl(self.command, self.cwd, self.timeout_s, self.memory_mb, limits=self.limits, env=self.env,
                    isolate_network=self.isolate_network)

    # ---- submitting ---------------------------------------------------------------------------------
    def submit(self, task: Callable[[Session], T], header: str = "", *, block_s: float | None = None) -> Future:
        """Queue `task(session)` to run on a worker whose REPL has `header` loaded; blocks while the queue is
        full (up to `block_s`, then `queue.Full`)."""
        if self._closed:
            raise PoolClosed("the pool is closed")
        fut: Future = Future()
        self._queue.put(_Job(task, header, fut, time.monotonic(), None), timeout=block_s)
        self._count("submitted")
        return fut

    async def asubmit(self, task: Callable[[Session], T], header: str = "") -> T:
        """`submit` for asyncio: waits for queue space off the event loop, then awaits the result."""
        fut = await asyncio.to_thread(self.submit, task, header)
        return await asyncio.wrap_future(fut)

    def run_cmd(self, cmd: str, header: str = "", timeout_s: float | None = None) -> CommandResult:
        """Run `cmd` in the header's environment on any worker (blocking)."""
        return self.submit(lambda s: s.repl.run_cmd(cmd, s.env, timeout_s=timeout_s), header).result()

    # ---- bookkeeping --------------------------------------------------------------------------------
    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def _count_failure(self, e: ReplFailure) -> None:
        key = {ReplTimeout: "timeouts", ReplOutOfMemory: "out_of_memory"}.get(type(e), "crashes")
        with self._lock:
            self._counts[key] += 1
            self._counts["restarts"] += 1  # the REPL was killed; the next job starts a fresh one

    def _finish(self, job: _Job, value: Any = None, error: BaseException | None = None) -> None:
        with self._lock:
            self._latencies.append(time.monotonic() - job.submitted_at)
            self._counts["failed" if error is not None else "completed"] += 1
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(value)

    def metrics(self) -> PoolMetrics:
        with self._lock:
            lat = sorted(self._latencies)
            c = dict(self._counts)
            busy = self._busy
        up = time.monotonic() - self._started

        def q(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0.0

        return PoolMetrics(workers=self.workers, queue_depth=self._queue.qsize(), busy=busy, uptime_s=up,
                           proofs_per_s=c["completed"] / up if up > 0 else 0.0, latency_p50_s=q(0.5),
                           latency_p99_s=q(0.99), **c)

    # ---- shutdown -----------------------------------------------------------------------------------
    def close(self, cancel_running: bool = False) -> None:
        """Fail the jobs still queued with `PoolClosed`, let running ones finish (or, with `cancel_running`, kill
        their REPLs so they fail now: nobody waits for them any more), stop the REPLs."""
        if self._closed:
            return
        self._closed = True
        self._cancelled = cancel_running
        while True:  # first empty the queue, so a worker freed by the kills below finds nothing to start
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None and job.future.set_running_or_notify_cancel():
                self._finish(job, error=PoolClosed("the pool was closed before this job ran"))
        for _ in self._workers:
            self._queue.put(None)
        for w in self._workers:
            while w.thread.is_alive():
                if cancel_running:  # again at every wake-up: a worker may have been starting its REPL
                    w.repl.kill()
                w.thread.join(timeout=CANCEL_POLL_S if cancel_running else None)

    def __enter__(self) -> ReplPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
