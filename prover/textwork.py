"""CPU-bound text work on candidates (extraction from a completion; the verifier's preparation: the soundness
scan, the statement checks) in worker processes beside the run. In the run's own process this work holds the GIL
that the event loop, the REPL threads and vLLM's engine loop all need, and a burst of hundreds of answers at once
(a random-weight model's, every one cut at --max-tokens) queues it behind one core. The rule: the work is the same
pure function either way; the processes only move it, and `run` does it here if they are gone.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from prover.errors import ProverError

T = TypeVar("T")
MODULES = ["lean_env.verifier", "prover.prompts.extract"]  # imported once, in the fork server
ENV = "SUBGOAL_TEXT_PROCESSES"


def default_processes() -> int:
    """`SUBGOAL_TEXT_PROCESSES` if set (0: none); else half the cores, at most 8, on a machine of 8 cores or more
    (a GPU host), and none on a small box, where they would only compete with the REPLs for the same cores."""
    given = os.environ.get(ENV, "").strip()
    if given:
        if not given.isdigit():
            raise ProverError(f"{ENV} must be a number of processes (0 for none), not {given!r}")
        return int(given)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(8, cores // 2) if cores >= 8 else 0


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle: no traceback per worker


class TextWorkers:
    """`processes` worker processes, forked from a fork server (a clean process: no CUDA context, no threads of
    the run's), started at once so they are ready long before the first burst."""

    def __init__(self, processes: int):
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(MODULES)
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = ProcessPoolExecutor(processes, mp_context=context,
                                                                     initializer=_ignore_sigint)
        for _ in range(processes):
            self._pool.submit(os.getpid)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a worker (fn and args must pickle); here, if the workers are gone."""
        pool = self._pool
        if pool is not None:
            try:
                return await asyncio.wrap_future(pool.submit(fn, *args))
            except BrokenProcessPool:  # a worker died (the OOM killer): the rest of the run works here
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
        return fn(*args)

    @property
    def alive(self) -> bool:
        """Whether the work still goes to the workers (False once one died, or after `close`)."""
        return self._pool is not None

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
