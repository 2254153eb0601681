"""The REPL's launcher and guard: the REPL's process group dies with the driver, or with the REPL, however either dies.

`Repl.start` runs `python watchdog.py WATCH_FD DRIVER_PID TMPDIR -- COMMAND...` as the leader of the REPL's own
session. It forks a guard, then execs COMMAND in its own place: the process the driver holds is the REPL itself.
The guard (the REPL's child, in its group) alone holds the read end of the pipe WATCH_FD, whose write end only the
driver holds, and waits for the first of: that pipe's EOF or the driver's exit (the driver died, however: SIGKILL,
the OOM killer, a second Ctrl-C), or the REPL's exit (a crash, or a SIGKILL from whoever cleans up the driver's
children: Ray's worker exit kills only direct children). Then it SIGKILLs the whole group, so whatever the REPL
started (`lake env` runs the REPL as a grandchild) goes too. The rule: the guard, never the REPL, decides, and it
removes the REPL's private temporary directory only when the driver is gone (a live driver restarts the REPL in it).
With no COMMAND it is the guard alone, of the group it was started in (`eval.ray_local`: a local Ray cluster).
Stdlib only and nothing from the package: it is a plain script, started before anything else is imported.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys

POLL_S = 0.5  # without pidfd_open: how often the driver and the REPL are looked at


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when `pid` exits (Linux >= 5.3), else None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def guard(watch_fd: int, driver: int, repl: int | None, tmpdir: str) -> None:
    """The guard's whole life: wait for the driver or the REPL (if any) to end, then kill the group, itself too."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):  # only the REPL holds the driver's pipes: its exit is their EOF
        os.dup2(devnull, fd)
    driver_fd, repl_fd = _pidfd(driver), _pidfd(repl) if repl is not None else None
    watched = [fd for fd in (watch_fd, driver_fd, repl_fd) if fd is not None]
    timeout = None if driver_fd is not None and (repl is None or repl_fd is not None) else POLL_S
    while True:
        ready, _, _ = select.select(watched, [], [], timeout)
        driver_gone = (watch_fd in ready and not os.read(watch_fd, 1)) or driver_fd in ready or not _alive(driver)
        if driver_gone and tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
        if driver_gone or repl_fd in ready or (repl is not None and os.getppid() != repl):
            os.killpg(0, signal.SIGKILL)


def _guard_to_the_end(watch_fd: int, driver: int, repl: int | None, tmpdir: str) -> None:
    try:
        guard(watch_fd, driver, repl, tmpdir)
    finally:  # the guard never outlives its watch: an error in it still takes the group down
        os.killpg(0, signal.SIGKILL)


def main(argv: list[str]) -> int:
    watch_fd, driver, tmpdir = int(argv[0]), int(argv[1]), argv[2]
    command = argv[argv.index("--") + 1:]
    if not command:
        _guard_to_the_end(watch_fd, driver, None, tmpdir)
    repl = os.getpid()
    if os.fork() == 0:
        _guard_to_the_end(watch_fd, driver, repl, tmpdir)
    os.close(watch_fd)  # the REPL must not hold the pipe: only the driver's end counts
    try:
        os.execvp(command[0], command)
    except OSError as e:
        sys.stderr.write(f"could not start the REPL {command[0]!r}: {e}\n")
    return 127  # the guard sees this process end and kills the group


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
