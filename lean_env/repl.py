"""`Repl`: one Lean REPL process, sandboxed, with a wall-clock timeout and a memory cap on every call.

Every call returns a typed result or raises a typed `ReplFailure` (never hangs): on a timeout, a crash, output
that is not a REPL response, or resident memory over the cap, the whole process group is killed and the next
call starts a fresh process (its env ids and proof states are gone; `Repl.generation` counts restarts so callers
can tell).

Lifetime: a REPL never outlives its driver. Its process group is killed on every exit path (close, failure,
`kill_all` at exit and on SIGTERM/SIGHUP), and where none runs (SIGKILL, OOM) the guard in the group
(`lean_env/watchdog.py`) sees its pipe to the driver close and kills the group itself; it does the same when the
REPL process alone is killed (Ray's worker cleanup SIGKILLs a dying worker's direct children only).

Memory: Lean reserves a large virtual address space up front, so `RLIMIT_AS` makes it fail at start. The cap is
enforced on *resident* memory instead: the process tree's RSS is polled (psutil) while a call runs and after
it, and the group is killed when it is over `memory_mb`. `data_limit_factor` adds an optional kernel backstop,
`RLIMIT_DATA` = factor x cap (private writable memory; not the read-only mmapped .olean files), off by default
because it has not been validated against every Lean version.
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import psutil

from lean_env import protocol
from lean_env.errors import ReplCrashed, ReplFailure, ReplGarbage, ReplOutOfMemory, ReplTimeout
from lean_env.protocol import CommandResult, ProofStepResult

WATCHDOG = str(Path(__file__).with_name("watchdog.py"))
POLL_S = 0.05  # how often a waiting call wakes up to check the deadline and memory
MEMORY_CHECK_S = 0.25
STDERR_TAIL = 2000


_LIVE: weakref.WeakSet[Repl] = weakref.WeakSet()  # started REPLs: killed at interpreter exit (`kill_all`)
_LIVE_LOCK = threading.RLock()  # pool workers start and kill REPLs from their threads; signal handlers re-enter
_stopping = threading.Event()  # set by kill_all: the process is going down, no REPL may start again


def kill_all() -> None:
    """Kill every REPL process group this process started, and start none after: the process is ending. Runs at
    exit (atexit) and from the CLI's Ctrl-C/SIGTERM/SIGHUP handlers, so a call waiting on Lean fails at once
    instead of at its timeout; a driver that dies without running it is covered by each REPL's watchdog."""
    _stopping.set()
    with _LIVE_LOCK:
        live = list(_LIVE)
    for repl in live:
        repl.kill()


atexit.register(kill_all)


def _start_failure(message: str) -> ReplCrashed:
    e = ReplCrashed(message)
    e.phase = "start"  # the machine's fault, not the proof's (lean_env.errors.machine_fault)
    return e


@lru_cache(maxsize=1)
def network_isolation_prefix() -> tuple[str, ...]:
    """`unshare -rn` (new user + network namespace: no interfaces but loopback) when this kernel allows it."""
    unshare = shutil.which("unshare")
    if not unshare:
        return ()
    try:
        ok = subprocess.run([unshare, "-rn", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return (unshare, "-rn", "--") if ok else ()


@dataclass(frozen=True)
class Limits:
    """Per-process resource limits, applied in the child before exec."""

    memory_mb: int = 8192  # RSS cap, enforced by polling (see module docstring)
    data_limit_factor: float | None = None  # RLIMIT_DATA = factor * memory_mb when set
    cpu_s: int | None = None  # RLIMIT_CPU over the process's lifetime (SIGKILL past the hard limit)
    file_size_mb: int = 2048  # RLIMIT_FSIZE: largest file it may write (pickles)
    open_files: int | None = None  # RLIMIT_NOFILE
    processes: int | None = None  # RLIMIT_NPROC counts the *user's* threads, so it is off by default

    def _values(self) -> dict[str, int]:
        out = {"core": 0, "fsize": self.file_size_mb << 20}
        if self.data_limit_factor:
            out["data"] = int(self.memory_mb * self.data_limit_factor) << 20
        if self.cpu_s:
            out["cpu"] = int(self.cpu_s)
        if self.open_files:
            out["nofile"] = self.open_files
        if self.processes:
            out["nproc"] = self.processes
        return out

    def prefix(self) -> list[str] | None:
        """`prlimit --X=v:v ... --` (util-linux): limits set by the child itself before it execs the REPL. Used
        instead of a `preexec_fn`, which Python documents as unsafe when the parent has threads (the pool does)."""
        prlimit = shutil.which("prlimit")
        if not prlimit:
            return None
        return [prlimit, *(f"--{k}={v}:{v}" for k, v in self._values().items()), "--"]

    def apply(self) -> None:  # fallback without prlimit: runs in the child (preexec_fn)
        def cap(which: int, value: int) -> None:
            soft, hard = resource.getrlimit(which)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (value, value))

        cap(resource.RLIMIT_CORE, 0)
        cap(resource.RLIMIT_FSIZE, self.file_size_mb << 20)
        if self.data_limit_factor:
            cap(resource.RLIMIT_DATA, int(self.memory_mb * self.data_limit_factor) << 20)
        if self.cpu_s:
            cap(resource.RLIMIT_CPU, int(self.cpu_s))
        if self.open_files:
            cap(resource.RLIMIT_NOFILE, self.open_files)
        if self.processes:
            cap(resource.RLIMIT_NPROC, self.processes)


class Repl:
    """One REPL process. Not thread-safe: one caller at a time (the pool gives each worker its own).

    `command` is the REPL program (e.g. `["lake", "-d", PROJECT, "env", ".../repl"]`); `cwd` its working
    directory (default: a private temporary directory, which also becomes its TMPDIR).
    """

    def __init__(
        self,
        command: list[str],
        cwd: str | Path | None = None,
        timeout_s: float = 300.0,
        memory_mb: int = 8192,
        *,
        limits: Limits | None = None,
        env: dict[str, str] | None = None,
        isolate_network: bool = True,
    ):
        self.command = list(command)
        self.timeout_s = timeout_s
        self.limits = limits or Limits(memory_mb=memory_mb)
        self.memory_mb = self.limits.memory_mb
        self.extra_env = dict(env or {})
        self.isolate_network = isolate_network
        self._cwd = Path(cwd) if cwd else None
        self._tmp: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._watch: int | None = None  # write end of the guard's pipe (lean_env/watchdog.py)
        self._buf = b""
        self._stderr_path: Path | None = None
        self.generation = 0  # incremented at every (re)start; env ids of an older generation are invalid
        self.calls = 0
        self.restarts = 0  # starts after the first
        self.last_cpu_s = 0.0  # CPU seconds of the process tree spent in the last call
        self.last_wall_s = 0.0
        self._tree_cache: tuple[int, float, list[psutil.Process]] | None = None
        self._next_env = 0  # the REPL numbers environments 0, 1, 2, ... per process: the id the next one gets

    # ---- process lifecycle -------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def workdir(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="subgoal-repl-")
        return self._cwd or Path(self._tmp)

    def start(self) -> None:
        if self.alive:
            return
        if _stopping.is_set():
            raise _start_failure("not starting a REPL: this process is shutting down")
        self._kill()
        workdir = self.workdir
        assert self._tmp is not None
        self._stderr_path = Path(self._tmp) / f"stderr.{self.generation}"
        env = {**os.environ, "TMPDIR": self._tmp, **self.extra_env}
        program = self.command[0] if self.command else ""
        if not (shutil.which(program) or (os.path.isfile(program) and os.access(program, os.X_OK))):
            raise _start_failure(f"could not start the REPL {program!r}: no such executable")
        prefix = list(network_isolation_prefix()) if self.isolate_network else []
        limits = self.limits.prefix()
        watch_read, self._watch = os.pipe()  # the watchdog's end closes when this process dies, however
        watchdog = [sys.executable, "-S", "-I", WATCHDOG, str(watch_read), str(os.getpid()), self._tmp, "--"]
        try:
            with open(self._stderr_path, "wb") as err:
                self._proc = subprocess.Popen(
                    prefix + (limits or []) + watchdog + self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=err, cwd=workdir, env=env, start_new_session=True,  # own process group, killed as one
                    preexec_fn=None if limits else self.limits.apply, close_fds=True, pass_fds=(watch_read,),
                )
        except OSError as e:
            self._proc = None
            self._close_watch()
            raise _start_failure(f"could not start the REPL {self.command[0]!r}: {e}") from None
        finally:
            os.close(watch_read)
        with _LIVE_LOCK:
            _LIVE.add(self)
        os.set_blocking(self._proc.stdout.fileno(), False)
        self._buf = b""
        self._next_env = 0
        if self.generation:
            self.restarts += 1
        self.generation += 1

    def close(self) -> None:
        self._kill()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Repl:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _close_watch(self) -> None:
        if self._watch is not None:
            os.close(self._watch)
            self._watch = None

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the pgid is the pid: start_new_session
        except (ProcessLookupError, PermissionError):
            pass
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._close_watch()  # after the group is dead: closing it first would make the guard kill it too

    def kill(self) -> None:
        """Kill the process group now (e.g. from another thread to cancel); the next call restarts."""
        self._kill()

    # ---- measurements -----------------------------------------------------------------------------
    def _tree(self, max_age_s: float = 1.0) -> list[psutil.Process]:
        """The process and its descendants. Listing descendants scans /proc, so it is cached for `max_age_s`."""
        if not self.alive:
            return []
        now = time.monotonic()
        cached = self._tree_cache
        if cached and cached[0] == self._proc.pid and now - cached[1] < max_age_s:
            return cached[2]
        try:
            root = psutil.Process(self._proc.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return []
        if len(tree) > 1:  # the root's first child is its guard: a tree without it is still starting
            self._tree_cache = (self._proc.pid, now, tree)
        return tree

    def rss_mb(self) -> float:
        """Resident memory of the REPL's process tree, in MiB."""
        total = 0
        for p in self._tree():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total / (1 << 20)

    def _cpu_s(self) -> float:
        total = 0.0
        for p in self._tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def stderr_tail(self) -> str:
        try:
            data = self._stderr_path.read_bytes() if self._stderr_path else b""
        except OSError:
            return ""
        return data[-STDERR_TAIL:].decode(errors="replace")

    # ---- one request ------------------------------------------------------------------------------
    def send(self, request: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """Send one request and return the decoded JSON answer; on any failure kill the group and raise."""
        self.start()
        self.calls += 1
        timeout = self.timeout_s if timeout_s is None else timeout_s
        t0, cpu0 = time.monotonic(), self._cpu_s()
        proc = self._proc
        try:
            if self._pending_output():
                raise ReplGarbage("the REPL wrote output nobody asked for (desynchronised or injected)")
            try:
                self._proc.stdin.write(protocol.encode(request))
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError):
                raise self._crashed("the REPL closed its input") from None
            try:
                frame = self._read_frame(t0 + timeout, timeout)
            except (AttributeError, ValueError, OSError):
                if self._proc is proc:
                    raise
                # `kill` from another thread (a cancel, Ctrl-C's close) took the process and closed its pipes
                raise ReplCrashed("the REPL was killed during the call (cancelled)") from None
            try:
                answer = json.loads(frame)
            except json.JSONDecodeError:
                raise ReplGarbage(f"the REPL answered non-JSON: {frame[:120]!r}") from None
            if not isinstance(answer, dict):
                raise ReplGarbage(f"the REPL answered a non-object: {frame[:120]!r}")
            if self._buf.strip():  # the REPL writes one answer per request: more is not from the REPL
                raise ReplGarbage("more output than one answer (something else wrote to the REPL's stdout)")
            self._check_env(request, answer)
            self._check_memory()
            return answer
        except ReplFailure as e:
            e.stderr_tail = e.stderr_tail or self.stderr_tail()
            e.wall_s, e.cpu_s = time.monotonic() - t0, max(0.0, self._cpu_s() - cpu0)  # before the kill
            self._kill()
            raise
        finally:
            self.last_wall_s = time.monotonic() - t0
            self.last_cpu_s = max(0.0, self._cpu_s() - cpu0) if self.alive else 0.0

    def _check_env(self, request: dict[str, Any], answer: dict[str, Any]) -> None:
        """Env ids come in sequence (`REPL/Main.lean` numbers each recorded command state): an answer with another
        id is not the REPL's answer to this request."""
        if "env" not in answer or "proofState" in answer:
            return
        expected = request.get("env") if "pickleTo" in request else self._next_env
        if answer["env"] != expected:
            raise ReplGarbage(f"answer with env {answer['env']!r} where the REPL's next env is {expected}: not the "
                              "REPL's answer to this request")
        if "pickleTo" not in request:
            self._next_env += 1

    def assert_quiet(self) -> None:
        """Raise `ReplGarbage` (and kill the process) if the REPL wrote anything after its last answer: output a
        caller did not ask for belongs to the caller's last request, not to the next one."""
        if self.alive and self._pending_output():
            self._kill()
            raise ReplGarbage("output after the REPL's last answer (something else wrote to its stdout)")

    def _pending_output(self) -> bool:
        if self._buf.strip():
            return True
        ready, _, _ = select.select([self._proc.stdout], [], [], 0)
        if not ready:
            return False
        chunk = self._read_some()
        self._buf += chunk
        return bool(self._buf.strip())

    def _read_some(self) -> bytes:
        try:
            return os.read(self._proc.stdout.fileno(), 1 << 16)
        except BlockingIOError:
            return b""

    def _read_frame(self, deadline: float, timeout: float) -> str:
        next_mem = time.monotonic() + MEMORY_CHECK_S
        while True:
            self._buf = self._buf.lstrip(b"\n")  # blank lines between answers
            end = self._buf.find(b"\n\n")
            if end >= 0:
                frame, self._buf = self._buf[:end], self._buf[end + 2 :]
                return frame.decode(errors="replace")
            now = time.monotonic()
            if now >= deadline:
                raise ReplTimeout(f"no answer within {timeout:g}s")
            if now >= next_mem:
                self._check_memory()
                next_mem = now + MEMORY_CHECK_S
            ready, _, _ = select.select([self._proc.stdout], [], [], min(POLL_S, deadline - now))
            if ready:
                chunk = self._read_some()
                if not chunk:
                    if self._buf.strip():  # a last answer without its blank line, then EOF
                        frame, self._buf = self._buf, b""
                        return frame.decode(errors="replace")
                    raise self._crashed("the REPL exited")
                self._buf += chunk

    def _crashed(self, what: str) -> ReplCrashed:
        code = None
        if self._proc is not None:
            try:
                code = self._proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        return ReplCrashed(f"{what} (exit code {code})", self.stderr_tail())

    def _check_memory(self) -> None:
        rss = self.rss_mb()
        if rss > self.memory_mb:
            raise ReplOutOfMemory(f"resident memory {rss:.0f} MiB over the cap of {self.memory_mb} MiB")

    # ---- typed calls ------------------------------------------------------------------------------
    def run_cmd(self, cmd: str, env: int | None = None, *, all_tactics: bool = False, root_goals: bool = False,
                infotree: str | None = None, timeout_s: float | None = None) -> CommandResult:
        req = protocol.command(cmd, env, all_tactics=all_tactics, root_goals=root_goals, infotree=infotree)
        return self._typed(req, timeout_s, protocol.as_command)

    def run_file(self, path: str | Path, env: int | None = None, *, all_tactics: bool = False,
                 root_goals: bool = False, infotree: str | None = None,
                 timeout_s: float | None = None) -> CommandResult:
        req = protocol.file_command(str(path), env, all_tactics=all_tactics, root_goals=root_goals,
                                    infotree=infotree)
        return self._typed(req, timeout_s, protocol.as_command)

    def run_tactic(self, tactic: str, proof_state: int, timeout_s: float | None = None) -> ProofStepResult:
        return self._typed(protocol.tactic(tactic, proof_state), timeout_s, protocol.as_proof_step)

    def pickle_env(self, env: int, path: str | Path) -> CommandResult:
        return self._typed({"pickleTo": str(path), "env": env}, None, protocol.as_command)

    def unpickle_env(self, path: str | Path) -> CommandResult:
        return self._typed({"unpickleEnvFrom": str(path)}, None, protocol.as_command)

    def pickle_proof_state(self, proof_state: int, path: str | Path) -> ProofStepResult:
        return self._typed({"pickleTo": str(path), "proofState": proof_state}, None, protocol.as_proof_step)

    def unpickle_proof_state(self, path: str | Path, env: int | None = None) -> ProofStepResult:
        req: dict[str, Any] = {"unpickleProofStateFrom": str(path)}
        if env is not None:
            req["env"] = env
        return self._typed(req, None, protocol.as_proof_step)

    def _typed(self, req: dict[str, Any], timeout_s: float | None, kind):
        answer = self.send(req, timeout_s)
        try:
            return kind(protocol.parse_response(answer))
        except ValueError as e:
            self._kill()
            raise ReplGarbage(str(e)) from None
