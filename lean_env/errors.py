"""Typed errors of the Lean layer. `LeanError` subclasses are user-facing (one line, non-zero exit)."""


class LeanError(Exception):
    """Base of the errors a user can act on (missing toolchain, bad Lean project, ...)."""


class LeanNotFound(LeanError):
    """Lean, Lake, the REPL or the Mathlib project could not be located; the message says how to install."""
