"""How `subgoal` stops: Ctrl-C, SIGTERM and SIGHUP first kill this process's Lean REPLs, so a call waiting on Lean
ends at once instead of at its timeout, then unwind the command as an exception (stores closed, partial results
kept). SIGTERM and SIGHUP (a batch scheduler, a closed terminal) unwind like Ctrl-C: commands that catch
`KeyboardInterrupt` to stop cleanly catch them too; the exit code still says which signal it was (128 + n).
While the runner's loop runs, a first Ctrl-C goes to `prover.runner.run_async` instead, which cancels the attempts
(a tree search's hanging tactic is interrupted, not waited for) and raises KeyboardInterrupt once they are done.
`stops_held` makes one signal wait for the end of a short step that must not be cut (writing and printing a result)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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

    handled = STOP_SIGNALS
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        handled = ()
    previous = {sig: signal.signal(sig, stop) for sig in handled}
    try:
        yield received
    finally:
        for sig, handler in previous.items():  # main() in a test process: leave its handlers as they were
            signal.signal(sig, handler)


@contextmanager
def stops_held() -> Iterator[None]:
    """While the body runs, a stop signal waits for its end and is then delivered as usual (to the handlers that
    were in place); a second one is delivered at once (the user insists; a print blocked on a full pipe must not
    hold Ctrl-C for ever)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    held: list[int] = []

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def hold(signum: int, frame: object) -> None:
        held.append(signum)
        if len(held) > 1:
            restore()
            signal.raise_signal(signum)  # to the restored handler, as soon as this one returns

    for sig in STOP_SIGNALS:
        signal.signal(sig, hold)
    try:
        yield
    finally:
        if len(held) <= 1:
            restore()
            if held:
                signal.raise_signal(held[0])
