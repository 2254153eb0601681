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
