"""Everything that talks to Lean: toolchain, REPL process, pool, verifier, soundness checks, Lean text."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lean_env.checker import Checker
from lean_env.pool import ReplPool
from lean_env.repl import Repl
from lean_env.verdict import Message, Pos, Sorry, Status, Verdict
from lean_env.verifier import Verifier

if TYPE_CHECKING:
    from lean_env.remote import RemoteVerifier
    from lean_env.settings import LeanSettings

__all__ = ["Checker", "Message", "Pos", "Repl", "ReplPool", "Sorry", "Status", "Verdict", "Verifier", "make_pool",
           "make_remote_verifier", "make_verifier"]


def make_pool(settings: LeanSettings | None = None, **overrides: Any) -> ReplPool:
    """A `ReplPool` for the toolchain the settings locate; `LeanNotFound` if none."""
    from lean_env.toolchain import locate

    tc = locate(settings)
    kwargs: dict[str, Any] = {"cwd": tc.cwd}
    for key in ("workers", "timeout_s", "memory_mb", "max_proofs_per_repl"):
        value = getattr(settings, key, None)
        if value is not None:
            kwargs[key] = value
    kwargs.update(overrides)
    return ReplPool(tc.repl_command(), **kwargs)


def make_verifier(settings: LeanSettings | None = None, **pool_overrides: Any) -> Checker:
    """Locate Lean, start a pool, and wrap it in a `Verifier` (close it with `verifier.close()`); with
    `settings.remote_url` (or `checker = "remote"`) a `RemoteVerifier` of that server instead (same interface)."""
    from lean_env.toolchain import locate

    remote = make_remote_verifier(settings)
    if remote is not None:
        return remote

    tc = locate(settings)
    pool = make_pool(settings, **pool_overrides)
    return Verifier(pool, lean_version=tc.lean_version, mathlib_version=tc.mathlib_version)


def make_remote_verifier(settings: LeanSettings | None = None) -> RemoteVerifier | None:
    """The `RemoteVerifier` the settings ask for, or None when they ask for local REPLs."""
    checker = getattr(settings, "checker", "auto") or "auto"
    url = getattr(settings, "remote_url", None)
    if checker == "local" or (checker == "auto" and not url):
        return None
    if not url:
        from lean_env.errors import LeanError

        raise LeanError("the remote checker needs a server: pass --checker-url URL or set lean.remote_url "
                        "(env SUBGOAL_LEAN__REMOTE_URL), e.g. http://lean-box:8000 from `subgoal lean serve`")
    from lean_env.remote import RemoteVerifier

    return RemoteVerifier(url, api_key=getattr(settings, "remote_api_key", None),
                          timeout_s=getattr(settings, "timeout_s", None) or 300.0,
                          kind=getattr(settings, "remote_kind", "auto") or "auto",
                          max_retries=getattr(settings, "remote_retries", 5),
                          concurrency=getattr(settings, "remote_concurrency", 64))
