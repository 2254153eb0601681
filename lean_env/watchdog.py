"""The REPL's watchdog: runs the REPL command as its child and kills the whole process group once the driver dies.

`Repl.start` runs `python watchdog.py WATCH_FD DRIVER_PID TMPDIR -- COMMAND...` as the leader of the REPL's own
session. The driver keeps the write end of the pipe WATCH_FD; when the driver dies, however it dies (SIGKILL, the
OOM killer, a crash, a second Ctrl-C), the kernel closes that end, this process reads EOF and SIGKILLs its group:
the REPL and everything it started (`lake env` runs the REPL as a grandchild). A parent-death signal
(PR_SET_PDEATHSIG) covers a driver whose forked children inherited the pipe; Linux sends it when the *thread*
that started us ends, so on it we only act if the driver process is really gone (our parent changed).
Stdlib only and nothing from the package: it is a plain script, started before anything else is imported.
"""

from __future__ import annotations

import ctypes
import os
import select
import shutil
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_S = 0.5  # without pidfd_open: how often the REPL's exit is polled for


def kill_group(tmpdir: str) -> None:
    """The driver is gone: remove the REPL's private temporary directory, then SIGKILL the group (us too)."""
    if tmpdir:
        shutil.rmtree(tmpdir, ignore_errors=True)
    os.killpg(0, signal.SIGKILL)


def set_parent_death_signal(sig: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the pipe alone watches the driver
        pass


def exit_status(status: int) -> int:
    """The REPL's exit, relayed as ours: its code, or 128 + the signal that killed it (as a shell reports it)."""
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def main(argv: list[str]) -> int:
    watch_fd, driver, tmpdir = int(argv[0]), int(argv[1]), argv[2]
    command = argv[argv.index("--") + 1:]
    os.set_inheritable(watch_fd, False)  # the REPL must not hold the pipe: only the driver's end counts

    def on_parent_death(signum: int, frame: object) -> None:
        if os.getppid() != driver:
            kill_group(tmpdir)

    signal.signal(signal.SIGTERM, on_parent_death)
    set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != driver:  # the driver died before the signal was armed
        kill_group(tmpdir)
    try:
        child = os.posix_spawnp(command[0], command, os.environ)
    except OSError as e:
        sys.stderr.write(f"could not start the REPL {command[0]!r}: {e}\n")
        return 127
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):  # only the REPL holds the driver's pipes: its exit is their EOF
        os.dup2(devnull, fd)
    try:
        exited = os.pidfd_open(child)
        timeout = None
    except (AttributeError, OSError):
        exited, timeout = None, POLL_S
    watched = [watch_fd] + ([exited] if exited is not None else [])
    while True:
        ready, _, _ = select.select(watched, [], [], timeout)
        if watch_fd in ready and not os.read(watch_fd, 1):
            kill_group(tmpdir)
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid == child:  # the REPL ended by itself: the driver sees its pipes close and kills what is left
            return exit_status(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
