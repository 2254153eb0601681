"""Typed errors of the Lean layer.

`LeanError` subclasses are user-facing (one line, non-zero exit). `ReplFailure` subclasses say why one REPL
call produced no answer (hang, crash, garbage, memory); the REPL process has already been killed as a group
when they are raised, and the next call restarts it.
"""


class UserError(Exception):
    """The one base of every error a user can cause and fix, in every package (bad input, missing Lean, bad
    config, unknown benchmark): the CLI prints it as one line and exits non-zero, never a traceback."""


class LeanError(UserError):
    """The Lean layer's user errors (missing toolchain, bad Lean project, ...)."""


class LeanNotFound(LeanError):
    """Lean, Lake, the REPL or the Mathlib project could not be located; the message says how to install."""


class SetupError(LeanError):
    """`subgoal lean setup` could not run (no network, no elan, a step failed); the message says which."""


class ReplFailure(RuntimeError):
    """One REPL call got no usable answer. `stderr_tail` holds the last lines the process wrote to stderr."""

    def __init__(self, message: str, stderr_tail: str = ""):
        super().__init__(message)
        self.stderr_tail = stderr_tail
        self.wall_s: float | None = None  # how long the call ran
        self.cpu_s: float | None = None  # CPU seconds the REPL's processes got meanwhile (None: not measured)
        self.phase = "call"  # "start" (the process did not come up) | "header" (importing the job's header) | "call"


class ReplTimeout(ReplFailure):
    """The call ran past its wall-clock limit; the process group was killed."""


class ReplCrashed(ReplFailure):
    """The process exited (or could not start) before answering."""


class ReplGarbage(ReplFailure):
    """The process answered something that is not a REPL JSON response (protocol desync, injected output)."""


class ReplOutOfMemory(ReplFailure):
    """The process tree's resident memory went over the cap; the process group was killed."""


class PoolClosed(RuntimeError):
    """A job was submitted to (or was still queued in) a pool that has been closed."""


# A timed-out call whose REPL got less than this share of one CPU was starved by the machine (overloaded node,
# stopped process): Lean elaborating a proof keeps one core busy, so a proof's own timeout runs near 100%.
STARVED_CPU_SHARE = 0.25


def machine_fault(e: BaseException) -> str:
    """Why a failed Lean call is the machine's fault rather than the proof's, in one line; "" when it is the
    proof's (as far as can be told). Such failures say nothing about the proof and are retried on resume."""
    if isinstance(e, PoolClosed):
        return "the Lean pool was shut down before the proof was checked"
    if not isinstance(e, ReplFailure):
        return ""
    if e.phase == "start":
        return f"the REPL could not be started ({e})"
    if e.phase == "header":
        return f"the problem's header could not be imported ({e}); no proof was checked"
    if isinstance(e, ReplTimeout) and e.cpu_s is not None and e.wall_s:
        share = e.cpu_s / e.wall_s
        if share < STARVED_CPU_SHARE:
            return f"the REPL got {share:.0%} of a CPU while it ran ({e}): starved by the machine"
    return ""
