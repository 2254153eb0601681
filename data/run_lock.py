"""The lock of a run directory: one writing run at a time per `--out`, the second refused with one line.

`<run dir>/run.lock` holds the owner's pid, host, start time and command, and an exclusive `flock` on it is held
while the run store is open for writing. The kernel drops a flock when its holder dies, however it dies, so a
lock left by a killed run is never stale. Where a filesystem has no flock, the file's content decides: a holder
on this host whose pid is dead is stale and taken over; a holder on another host is trusted.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from data.errors import DataError

LOCK_FILENAME = "run.lock"


class RunLocked(DataError):
    """Another process is writing this run."""


def _owner() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"), "command": " ".join(sys.argv)[:300]}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class RunLock:
    """Exclusive lock of `run_dir` for this process; `acquire` raises `RunLocked` naming the running owner."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_FILENAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # close-on-exec: REPLs and workers never hold it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._refusal(self.holder()) from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                os.close(fd)
                raise DataError(f"{self.path}: cannot lock the run directory: {e.strerror}") from None
            holder = self.holder()  # no flock here: trust the recorded owner unless it is provably gone
            if holder and not self._stale(holder) and holder.get("pid") != os.getpid():
                os.close(fd)
                raise self._refusal(holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(_owner()) + "\n").encode(), 0)
        self._fd = fd
        return self

    def holder(self) -> dict[str, Any]:
        """What the lock file says of its owner ({} when unreadable)."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    @staticmethod
    def _stale(holder: dict[str, Any]) -> bool:
        pid = holder.get("pid")
        return holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid)

    def _refusal(self, holder: dict[str, Any]) -> RunLocked:
        who = (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
               + (f": {holder['command']}" if holder.get("command") else "")) if holder else "another process"
        return RunLocked(f"{self.path.parent} is in use by a running job ({who}); "
                         "wait for it to finish, stop it, or give another --out")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the flock; the file stays (unlinking it would race a waiting acquirer)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
