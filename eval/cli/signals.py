"""How `subgoal` stops: Ctrl-C, SIGTERM and SIGHUP first kill this process's Lean REPLs, so a call waiting on Lean
ends at once instead of at its timeout, then unwind the command as an exception (stores closed, partial results
kept). SIGTERM and SIGHUP (a batch scheduler, a closed terminal) unwind like Ctrl-C: commands that catch
`KeyboardInterrupt` to stop cleanly catch them too; the exit code still says which signal it was (128 + n)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stopping_cleanly() -> Iterator[list[int]]:
    """While the body runs, the stop signals are handled as above; yields the list of those received."""
    received: list[int] = []

    def stop(signum: int, frame: object) -> None:
        from lean_env.repl import kill_all

        kill_all()
        received.append(signum)
        raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(signum)

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        handled = ()
    previous = {sig: signal.signal(sig, stop) for sig in handled}
    try:
        yield received
    finally:
        for sig, handler in previous.items():  # main() in a test process: leave its handlers as they were
            signal.signal(sig, handler)
