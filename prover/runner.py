"""The one runner of `subgoal prove SET`, `subgoal eval` and `subgoal iterate`: every attempt is an asyncio task.

Read top to bottom: the shared services an attempt awaits (`Engine`: the generation backend, fed by many
concurrent callers; `AsyncChecker`: the Lean verifier behind a bounded set of threads; `SessionPool`: tree
search's REPL proof sessions), the executor that runs one (problem, attempt index) unit with them
(`LocalExecutor` here, `eval.distributed.RayExecutor` on Ray), and `drive`, which keeps a bounded number of
attempt tasks live and is the only writer of the run store.

The rule: only the driver writes the store, each finished attempt once, committed as it finishes; a killed
run loses at most the attempts in flight, and a re-run does only what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from data.problem import Problem
from lean_env.checker import Checker
from lean_env.interaction import ProofSession
from lean_env.problem import LeanProblem
from lean_env.verdict import Status, Verdict
from lean_env.verifier import Verifier
from prover.generate.base import Backend, Completion, Prompt, SamplingParams, StreamingBackend, as_streaming
from prover.textwork import TextWorkers, default_processes

if TYPE_CHECKING:
    from data.store import Attempt, RunStore

T = TypeVar("T")


# ---------------------------------------------------------------- the services every attempt task awaits


class DaemonThreads(ThreadPoolExecutor):
    """A pool of daemon threads, grown while every thread is busy. A blocking call still running (a backend's
    HTTP request, a Lean check) must not keep the process alive after Ctrl-C, and a ThreadPoolExecutor's own
    threads are joined at exit. Callers bound how many calls run at once (the engine's and the checker's
    capacity). A ThreadPoolExecutor subclass only because asyncio's `set_default_executor` takes nothing else."""

    def __init__(self, max_workers: int = 1024):
        super().__init__(max_workers=1)  # its own machinery stays unused: no thread is ever started by it
        self._most, self._threads, self._idle, self._waiting = max_workers, 0, 0, 0  # waiting: calls not yet taken
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._count_lock = threading.Lock()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        with self._count_lock:
            self._waiting += 1
            self._calls.put((future, fn, args, kwargs))
            if self._waiting > self._idle and self._threads < self._most:
                self._threads += 1
                threading.Thread(target=self._work, name=f"runner-{self._threads}", daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            with self._count_lock:
                self._idle += 1
            future, fn, args, kwargs = self._calls.get()
            with self._count_lock:
                self._idle -= 1
                self._waiting -= 1
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as e:  # handed to the awaiting task
                future.set_exception(e)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass  # daemon threads: left to end with the process


class LoopLocal:
    """An asyncio primitive (Semaphore, Condition) per event loop, made on first use inside it. A service outlives
    the loops that use it (the interactive `prove` runs one loop per theorem over the same engine and checker),
    and a primitive made in one loop raises in another once it has to wait."""

    def __init__(self, make: Callable[[], T]):
        self.make = make
        self._loop: asyncio.AbstractEventLoop | None = None
        self._value: Any = None

    def get(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._value = loop, self.make()
        return self._value


class Engine:
    """The shared generation engine: any number of attempt tasks ask for their own completions at once.
    At most `max_in_flight` sequences are with the backend at a time (backpressure); the backend batches
    whatever is pending (vLLM's async engine, an HTTP client with many requests in flight)."""

    def __init__(self, backend: Backend | StreamingBackend, max_in_flight: int | None = None):
        self.raw = backend  # the backend as built (closing it, chat templates, device)
        self.stream = as_streaming(backend)
        self.max_in_flight = max(1, int(max_in_flight or getattr(self.stream, "max_in_flight", 1) or 1))
        self.model_id = getattr(backend, "model_id", "")
        self.in_flight = 0  # sequences with the backend now
        self._freed = LoopLocal(asyncio.Condition)
        # Who may still ask for a generation: open `AttemptEngine` handles. Once `seal`ed (no attempt will start)
        # and none is left, `on_idle` runs once: the runner closes the engine while the last checks finish.
        self.may_generate = 0
        self._on_idle: Callable[[], None] | None = None

    @property
    def device(self) -> str:
        return str(getattr(self.raw, "device", ""))

    def format_chat(self, text: str) -> str:
        from prover.generate import format_chat

        return format_chat(self.raw, text)

    async def generate(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> list[Completion]:
        """n completions of `prompt`; waits while the engine holds `max_in_flight` sequences already."""
        want = min(n, self.max_in_flight)  # a request larger than the whole engine waits for an empty one
        freed = self._freed.get()
        async with freed:
            await freed.wait_for(lambda: self.in_flight + want <= self.max_in_flight)
            self.in_flight += want
        try:
            return await self.stream.agenerate(prompt, params, n)
        finally:
            async with freed:
                self.in_flight -= want
                freed.notify_all()

    def attempt(self) -> AttemptEngine:
        """A handle for one attempt, counted from now until it says it is done generating (or ends)."""
        self.may_generate += 1
        return AttemptEngine(self)

    def seal(self, on_idle: Callable[[], None]) -> None:
        """No further attempt will start: call `on_idle` once no handle may generate any more (now, if none)."""
        self._on_idle = on_idle
        self._check_idle()

    def _release(self) -> None:
        self.may_generate -= 1
        self._check_idle()

    def _check_idle(self) -> None:
        if self._on_idle is not None and self.may_generate == 0:
            on_idle, self._on_idle = self._on_idle, None
            on_idle()

    def close(self) -> None:
        self.stream.close()


class AttemptEngine:
    """One attempt's view of the shared `Engine`: the same calls, plus `done_generating()`, the attempt's word
    that it will ask for nothing more (a `sample` attempt once its last request is made; a multi-step strategy
    only when it ends). The engine counts the attempt until that word is given and its requests have returned.
    A generation asked for after the word is a bug and raises, rather than reach a closed engine."""

    def __init__(self, engine: Engine):
        self.engine, self.generating, self.requests = engine, True, 0
        self.model_id, self.max_in_flight = engine.model_id, engine.max_in_flight
        self._released = False

    @property
    def raw(self) -> Backend | StreamingBackend:
        return self.engine.raw

    @property
    def device(self) -> str:
        return self.engine.device

    def format_chat(self, text: str) -> str:
        return self.engine.format_chat(text)

    def generate(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> Coroutine[Any, Any, list[Completion]]:
        """As `Engine.generate`; the request is counted when it is made (so `done_generating` may follow at once).
        A request cancelled before it ever ran stays counted: the engine then closes only at the run's end."""
        if not self.generating:
            raise RuntimeError("a generation was asked for after the attempt said it was done generating")
        self.requests += 1
        return self._generate(prompt, params, n)

    async def _generate(self, prompt: Prompt, params: SamplingParams, n: int) -> list[Completion]:
        try:
            return await self.engine.generate(prompt, params, n)
        finally:
            self.requests -= 1
            self._release_if_done()

    def done_generating(self) -> None:
        self.generating = False
        self._release_if_done()

    def _release_if_done(self) -> None:
        if not self.generating and not self.requests and not self._released:
            self._released = True
            self.engine._release()


class AsyncChecker:
    """Any method of a blocking checker (a `lean_env.Verifier`: `verify_many`, ...) as a coroutine, at most
    `capacity` calls at once, each on a thread. The default capacity keeps every REPL of the verifier's pool
    busy with one proof queued behind it, so Lean never waits for the next candidate and the queue never grows
    past the pool."""

    def __init__(self, checker: Checker, capacity: int | None = None, text_processes: int = 0):
        self.checker = checker
        workers = getattr(getattr(checker, "pool", None), "workers", None)
        self.capacity = max(1, int(capacity or (2 * workers if workers else 4)))
        self._slots = LoopLocal(lambda: asyncio.Semaphore(self.capacity))
        self._threads = DaemonThreads()
        # the candidates' text work (extraction, the verifier's preparation) in processes, off this one's GIL
        self.text_workers = TextWorkers(text_processes) if text_processes > 0 else None

    async def verify_many(self, items: list[tuple[LeanProblem, str]]) -> list[Verdict]:
        if self.text_workers is None or not isinstance(self.checker, Verifier):  # (a server prepares its own)
            return await self._threaded("verify_many")(items)
        prepared = await self.text_workers.run(self.checker.preparer(), items)
        return await self._threaded("check_prepared")(prepared)

    async def verify(self, problem: LeanProblem, proof_src: str) -> Verdict:
        return await self._threaded("verify")(problem, proof_src)

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        return self._threaded(name)  # the checker's other methods (a remote's `health`, ...)

    def _threaded(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.checker, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            async with self._slots.get():
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._threads, lambda: method(*args, **kwargs))

        return call

    def close(self) -> None:
        if self.text_workers is not None:  # its own; the checker belongs to whoever built it
            self.text_workers.close()


class SessionPool:
    """Tree search's REPL proof sessions, opened on demand up to `size`: a tree attempt holds one for its whole
    search (a REPL is one process, one command at a time), so `size` tree attempts search at once."""

    def __init__(self, open_session: Callable[[], ProofSession], size: int):
        self.open_session, self.size = open_session, max(1, size)
        self._idle: list[ProofSession] = []
        self._all: list[ProofSession] = []
        self._lock = threading.Lock()
        self._free = LoopLocal(lambda: asyncio.Semaphore(self.size))

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[ProofSession]:
        async with self._free.get():
            with self._lock:
                session = self._idle.pop() if self._idle else None
            if session is None:
                session = await self._open()
            try:
                yield session
            finally:
                with self._lock:
                    self._idle.append(session)

    async def _open(self) -> ProofSession:
        """A new session of the pool. Cancelled while it opens (Mathlib's import takes seconds), it waits for it: the
        REPL opens all the same, and it must be the pool's to reuse and close, not a process nobody holds."""
        opening = asyncio.ensure_future(asyncio.to_thread(self.open_session))
        try:
            session = await asyncio.shield(opening)
        except asyncio.CancelledError:
            await asyncio.wait([opening])
            if opening.exception() is None:
                with self._lock:
                    self._all.append(opening.result())
                    self._idle.append(opening.result())
            raise
        with self._lock:
            self._all.append(session)
        return session

    @property
    def opened(self) -> list[ProofSession]:
        with self._lock:
            return list(self._all)

    def close(self) -> None:
        with self._lock:
            sessions, self._all, self._idle = self._all, [], []
        for s in sessions:
            s.close()


def close_all(*resources: Any) -> None:
    """Close whatever of `resources` can be closed."""
    for resource in resources:
        close = getattr(resource, "close", None)
        if callable(close):
            close()


# ---------------------------------------------------------------- units and the executors that run them


@dataclass(frozen=True)
class WorkUnit:
    """One attempt to run: (problem, attempt index)."""

    problem: Problem
    index: int

    @property
    def key(self) -> tuple[str, int]:
        return (self.problem.name, self.index)


class Recipe(Protocol):
    """What to build where, and how to run one attempt (`prover.recipe.ProveRecipe` is the real one). Must
    pickle: it travels to Ray actors. `arun` gets the `Engine` over the generator and an async checker."""

    def make_generator(self) -> Backend | StreamingBackend: ...

    def make_checker(self) -> Checker: ...

    async def arun(self, engine: Engine, checker: AsyncChecker, problem: Problem, index: int) -> Attempt: ...


class Executor(Protocol):
    """Runs one unit to its Attempt; `capacity()` is how many attempts it can usefully have live at once (it may
    build its engine to know). An executor may also have `no_more_units()`, which the driver calls once it has
    started every attempt of the run (`LocalExecutor` then closes its engine early)."""

    def capacity(self) -> int: ...

    def run(self, unit: WorkUnit) -> Coroutine[Any, Any, Attempt]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Attempts in this process, all through one `Engine` and one `AsyncChecker`.

    Given a `recipe`, it builds the generator and checker on first use and closes them in `close()`; given an
    `engine`/`checker` already built, it uses them and leaves closing them to their owner (`own_engine`: the given
    engine is this executor's to close, early, as one it built)."""

    def __init__(self, recipe: Recipe, *, engine: Engine | None = None, checker: Checker | AsyncChecker | None = None,
                 max_live: int | None = None, own_engine: bool = False):
        self.recipe, self.engine, self.max_live = recipe, engine, max_live
        self._owned: list[Any] = []  # what this executor built, closed in `close()` (last built first)
        if engine is not None and own_engine:
            self._owned.append(engine)
        self._early_close: threading.Thread | None = None  # the engine's close, begun before the run's end
        self._early_close_error: BaseException | None = None
        if checker is not None and not isinstance(checker, AsyncChecker):
            checker = AsyncChecker(checker, text_processes=default_processes())
            self._owned.append(checker)  # its threads are ours, the verifier stays its owner's
        self.checker: AsyncChecker | None = checker

    def open(self) -> None:
        if self.checker is None:  # Lean first: no toolchain stops the run before a model loads
            raw = self.recipe.make_checker()
            self.checker = AsyncChecker(raw, text_processes=default_processes())
            self._owned += [raw, self.checker]
        if self.engine is None:
            self.engine = Engine(self.recipe.make_generator())
            self._owned.append(self.engine)

    def capacity(self) -> int:
        """Enough live attempts to fill the engine and, at the same time, the checker."""
        self.open()
        return self.max_live or self.engine.max_in_flight + self.checker.capacity

    def run(self, unit: WorkUnit) -> Coroutine[Any, Any, Attempt]:
        self.open()
        # Counted now, not when the task first runs: the driver may seal the engine before that. (A task cancelled
        # before it ever ran keeps its count: the engine then closes only in `close()`, never too early.)
        engine = self.engine.attempt()
        return self._run(engine, unit)

    async def _run(self, engine: AttemptEngine, unit: WorkUnit) -> Attempt:
        try:
            return await self.recipe.arun(engine, self.checker, unit.problem, unit.index)
        finally:
            engine.done_generating()

    def no_more_units(self) -> None:
        """The driver has started every attempt it will: an engine this executor built is closed in the
        background as soon as no live attempt may generate, while their last checks go on."""
        if self.engine is not None and self.engine in self._owned:
            self.engine.seal(self._close_engine_early)

    def _close_engine_early(self) -> None:
        def close() -> None:
            try:
                self.engine.close()
            except BaseException as e:  # raised once, by `close()`
                self._early_close_error = e

        self._early_close = threading.Thread(target=close, name="engine-close", daemon=True)
        self._early_close.start()

    def close(self) -> None:
        owned, self._owned = self._owned, []
        error: BaseException | None = None
        for resource in reversed(owned):
            if isinstance(resource, Verifier):  # a Lean call still running belongs to an attempt that is over
                resource.close(cancel_running=True)
            elif resource is self.engine and self._early_close is not None:
                self._early_close.join()  # begun while the last checks ran: its error surfaces here, once
                error, self._early_close_error = self._early_close_error, None
            else:
                close_all(resource)
        close_all(self.recipe)  # what the recipe opened in this process (tree search's sessions)
        if error is not None:  # raised once the rest is closed (the verifier's REPLs are not left running)
            raise error


# ---------------------------------------------------------------- the driver: the only writer of the store


@dataclass
class DriveStats:
    submitted: int = 0
    recorded: int = 0
    duplicates: int = 0  # results for keys already recorded (never written twice)
    skipped: int = 0  # units already done before this run started (resume)
    skipped_proved: int = 0  # units not run because their problem was already proved (stop_at_first)
    cancelled: int = 0  # attempts in flight cancelled because another attempt proved their problem


async def drive(units: Iterable[WorkUnit], executor: Executor, store: RunStore, run_id: int, *,
                on_result: Callable[[WorkUnit, Attempt], None] | None = None, stop_at_first: bool = False,
                stats: DriveStats | None = None) -> DriveStats:
    """Run every unit not yet in the store, at most `executor.capacity()` at a time, and record each result once
    as it finishes. With `stop_at_first`, a proof cancels its problem's other live attempts and skips the rest
    (attempts already in the store count). Cancelled (Ctrl-C), it cancels every live attempt; what finished
    is recorded. `stats` (given) is filled in as it goes, so a caller sees it after an interruption too.
    `on_result` sees each attempt once it is committed."""
    stats = stats if stats is not None else DriveStats()
    done: set[tuple[str, int]] = set(store.done(run_id))
    proved = {a.problem for a in store.iter_attempts(run_id, status=Status.PROVED.value)} if stop_at_first else set()
    live: dict[asyncio.Task, WorkUnit] = {}
    scheduled: set[tuple[str, int]] = set()
    pending = _pending(units, done, proved, scheduled, stats)
    writer = GroupCommit(store, run_id, done, stats)
    limit = 0
    drawn_all = False
    try:
        while True:
            while not drawn_all and len(live) < max(limit, 1):
                unit = next(pending, None)
                if unit is None:
                    drawn_all = True
                    if limit and (no_more := getattr(executor, "no_more_units", None)) is not None:
                        no_more()  # its engine may close once the live attempts are past their generations
                    break
                limit = limit or max(1, executor.capacity())  # built only once something is left to do
                stats.submitted += 1
                scheduled.add(unit.key)
                live[asyncio.create_task(executor.run(unit), name=f"attempt {unit.problem.name}#{unit.index}")] = unit
            if not live and writer.idle:
                return stats
            finished, _ = await asyncio.wait([*live, *writer.busy], return_when=asyncio.FIRST_COMPLETED)
            results, error = [], None
            for task in finished:
                if task not in live:
                    continue  # the transaction in progress: collected below
                unit = live.pop(task)
                if task.cancelled():
                    stats.cancelled += 1
                elif task.exception() is not None:
                    error = error or task.exception()
                else:
                    results.append((unit, task.result()))
            if error is not None:  # an attempt's own error ends the run, after what finished with it is written
                writer.add(results)
                raise error
            for unit, attempt in results:
                if stop_at_first and attempt.status == Status.PROVED.value and unit.problem.name not in proved:
                    proved.add(unit.problem.name)
                    for other, other_unit in live.items():
                        if other_unit.problem.name == unit.problem.name:
                            other.cancel()
            writer.add(results)
            for unit, attempt in writer.committed():
                if on_result is not None:
                    on_result(unit, attempt)
            writer.start()
    finally:
        for task in live:
            task.cancel()
        try:
            if live:
                await asyncio.gather(*live, return_exceptions=True)
        finally:  # (a second Ctrl-C may cut the wait short: what finished is still written)
            # finished before the cancel reached it (the interrupt and its answer in one moment): it is a result
            writer.add([(unit, task.result()) for task, unit in live.items()
                        if task.done() and not task.cancelled() and task.exception() is None])
            await writer.flush()


def _pending(units: Iterable[WorkUnit], done: set, proved: set, scheduled: set, stats: DriveStats) -> Iterator[
        WorkUnit]:
    """The units still to run, drawn lazily (a 10,000-attempt run never holds them all as tasks)."""
    for unit in units:
        if unit.key in done:
            stats.skipped += 1
        elif unit.problem.name in proved:
            stats.skipped_proved += 1
        elif unit.key not in scheduled:
            yield unit


class GroupCommit:
    """The driver's writes: one transaction (one fsync) at a time, on a thread, so the event loop goes on handing
    out verdicts while a commit runs, and whatever finishes meanwhile goes into the next one. (Committing on the
    loop cost a 512-answer burst about 230 transactions of ~9 ms each during which nothing else moved.) Each key
    is written at most once; the driver stays the store's only writer."""

    def __init__(self, store: RunStore, run_id: int, done: set, stats: DriveStats):
        self.store, self.run_id, self.done, self.stats = store, run_id, done, stats
        self.queued: list[tuple[WorkUnit, Attempt]] = []  # finished, waiting for the next transaction
        self._writing: asyncio.Future | None = None  # the transaction in progress
        self._batch: list[tuple[WorkUnit, Attempt]] = []  # ... and what it writes

    @property
    def idle(self) -> bool:
        return self._writing is None and not self.queued

    @property
    def busy(self) -> list[asyncio.Future]:
        return [] if self._writing is None else [self._writing]

    def add(self, results: list[tuple[WorkUnit, Attempt]]) -> None:
        for unit, attempt in results:
            if unit.key in self.done:
                self.stats.duplicates += 1
            else:
                self.done.add(unit.key)
                self.queued.append((unit, attempt))

    def start(self) -> None:
        """Begin the next transaction, unless one is in progress or nothing waits."""
        if self._writing is None and self.queued:
            self._batch, self.queued = self.queued, []
            attempts = [a for _, a in self._batch]
            self._writing = asyncio.ensure_future(asyncio.to_thread(self.store.record_many, self.run_id, attempts))

    def committed(self) -> list[tuple[WorkUnit, Attempt]]:
        """The batch of the transaction that has just ended (its error, e.g. a full disk, raises here); [] while it
        runs."""
        if self._writing is None or not self._writing.done():
            return []
        writing, self._writing = self._writing, None
        written = writing.result()
        self.stats.recorded += written
        self.stats.duplicates += len(self._batch) - written
        batch, self._batch = self._batch, []
        return batch

    async def flush(self) -> None:
        """Wait for the transaction in progress, then write what is left (the run is ending: Ctrl-C, an error)."""
        if self._writing is not None:
            with contextlib.suppress(Exception):  # its error was or will be raised by the run itself
                await asyncio.shield(self._writing)
            with contextlib.suppress(Exception):
                self.committed()
        if self.queued:
            batch, self.queued = self.queued, []
            written = self.store.record_many(self.run_id, [a for _, a in batch])
            self.stats.recorded += written
            self.stats.duplicates += len(batch) - written


# ---------------------------------------------------------------- running it from synchronous code


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, except that Ctrl-C cancels `main` (its `finally` blocks run) and then raises
    KeyboardInterrupt at once: threads still busy in a blocking backend or Lean call are not waited for
    (asyncio.run would join them first, and so would the interpreter at exit)."""
    loop = asyncio.new_event_loop()
    loop.set_default_executor(DaemonThreads())
    task = loop.create_task(main)
    interrupted = False

    def on_sigint(*_: Any) -> None:
        nonlocal interrupted
        if interrupted:  # a second Ctrl-C: stop waiting for the cancellation to finish
            raise KeyboardInterrupt
        interrupted = True
        loop.call_soon_threadsafe(task.cancel)

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if main_thread else None
    try:
        return loop.run_until_complete(task)
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
        try:
            leftover = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in leftover:
                t.cancel()
            if leftover:
                loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def run_units(units: Iterable[WorkUnit], executor: Executor, store: RunStore, run_id: int, *,
              on_result: Callable[[WorkUnit, Attempt], None] | None = None, stop_at_first: bool = False,
              stats: DriveStats | None = None) -> DriveStats:
    """`drive` from synchronous code (the CLIs, expert iteration); Ctrl-C raises KeyboardInterrupt after every
    finished attempt is recorded and the live ones are cancelled."""
    return run_async(drive(units, executor, store, run_id, on_result=on_result, stop_at_first=stop_at_first,
                           stats=stats))
