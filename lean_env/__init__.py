"""Everything that talks to Lean: toolchain, REPL process, pool, verifier, soundness checks, Lean text."""

from __future__ import annotations

from typing import Any

from lean_env.pool import ReplPool
from lean_env.repl import Repl
from lean_env.verdict import Message, Pos, Sorry, Status, Verdict
from lean_env.verifier import Verifier

__all__ = ["Message", "Pos", "Repl", "ReplPool", "Sorry", "Status", "Verdict", "Verifier", "make_pool",
           "make_verifier"]


def make_pool(settings: Any = None, **overrides: Any) -> ReplPool:
    """A `ReplPool` for the toolchain the settings (duck-typed `LeanSettings`) locate; `LeanNotFound` if none."""
    from lean_env.toolchain import locate

    tc = locate(settings)
    kwargs: dict[str, Any] = {"cwd": tc.cwd}
    for key in ("workers", "timeout_s", "memory_mb", "max_proofs_per_repl"):
        value = getattr(settings, key, None)
        if value is not None:
            kwargs[key] = value
    kwargs.update(overrides)
    return ReplPool(tc.repl_command(), **kwargs)


def make_verifier(settings: Any = None, **pool_overrides: Any) -> Verifier:
    """Locate Lean, start a pool, and wrap it in a `Verifier` (close it with `verifier.close()`)."""
    from lean_env.toolchain import locate

    tc = locate(settings)
    pool = make_pool(settings, **pool_overrides)
    return Verifier(pool, lean_version=tc.lean_version, mathlib_version=tc.mathlib_version)
