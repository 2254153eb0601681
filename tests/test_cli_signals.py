"""How `subgoal` stops around a step that must not be cut: `stops_held` (a stop signal waits for the step's end,
a second one does not) and `write_text_atomically` (an interrupted write leaves the old file as it was)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from data.files import write_text_atomically
from eval.cli.signals import stops_held


class Stopped(Exception):
    pass


@contextmanager
def stop_handlers() -> Iterator[list[int]]:
    """TEST handlers in place of the CLI's (whose `kill_all` would keep this test process from starting REPLs):
    they record the signal and raise, as the CLI's do."""
    received: list[int] = []

    def stop(signum: int, frame: object) -> None:
        received.append(signum)
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_a_stop_signal_waits_for_the_held_step_then_is_delivered_as_usual():
    steps: list[str] = []
    with stop_handlers() as received, pytest.raises(Stopped):
        with stops_held():
            signal.raise_signal(signal.SIGINT)
            steps.append("after the signal")  # the step goes on
        steps.append("after the held step")  # not reached: delivered at its end
    assert steps == ["after the signal"] and received == [signal.SIGINT]


def test_a_second_stop_signal_is_not_held():
    """A step that never ends (a print blocked on a full pipe) must not hold Ctrl-C for ever: the second one goes
    through at once, to the handler that was in place, and that handler is back afterwards."""
    steps: list[str] = []
    with stop_handlers() as received:
        before = signal.getsignal(signal.SIGTERM)
        with pytest.raises(Stopped):
            with stops_held():
                signal.raise_signal(signal.SIGTERM)
                steps.append("held")
                signal.raise_signal(signal.SIGTERM)
                steps.append("not reached")
        assert signal.getsignal(signal.SIGTERM) is before
    assert steps == ["held"] and received == [signal.SIGTERM]


def test_without_a_signal_the_held_step_changes_nothing():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with stops_held():
        pass
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "Work.lean"
    path.write_text("theorem t : 1 = 1 := by sorry\n")
    path.chmod(0o640)

    def interrupted(fd: int) -> None:  # Ctrl-C as the new text is on its way to disk, before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomically(path, "theorem t : 1 = 1 := by rfl\n")
    assert path.read_text() == "theorem t : 1 = 1 := by sorry\n"
    assert [p.name for p in tmp_path.iterdir()] == ["Work.lean"]
    monkeypatch.undo()
    write_text_atomically(path, "theorem t : 1 = 1 := by rfl\n")
    assert path.read_text() == "theorem t : 1 = 1 := by rfl\n"
    assert path.stat().st_mode & 0o777 == 0o640  # the replaced file's permissions are kept
    assert [p.name for p in tmp_path.iterdir()] == ["Work.lean"]
