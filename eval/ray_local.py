"""A local Ray cluster that dies with its driver, however the driver dies (SIGTERM, SIGHUP, SIGKILL, OOM).

Ray ties the GCS and raylet that `ray.init()` starts to the driver, but after an unclean death its dashboard and
runtime-env agents wait 60 s on the dead GCS before exiting. So the cluster starts in a process group of its own
with the REPLs' guard (`lean_env/watchdog.py`) in it, which kills the group once the driver is gone. The one
rule: the driver leaves its process group only while `ray.init` starts the processes (a Ctrl-C typed then is not
seen); a driver that leads its group already keeps it, and the guard kills that group's leftovers the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from lean_env.repl import WATCHDOG


@contextlib.contextmanager
def _own_process_group() -> Iterator[int]:
    """Processes started inside join a new process group (id: this process's pid); yields that id."""
    previous = os.getpgrp()
    if previous == os.getpid():  # the leader of its group already
        yield previous
        return
    os.setpgid(0, 0)
    try:
        yield os.getpid()
    finally:
        with contextlib.suppress(OSError):  # the old group emptied meanwhile: this process stays in the new one
            os.setpgid(0, previous)


class LocalRayCluster:
    """`ray.init(**init_args)` on a local cluster of this driver's own; `close` shuts it down and kills its group."""

    def __init__(self, ray: Any, **init_args: Any):
        self.ray = ray
        self.group: int | None = None
        self._guard: subprocess.Popen | None = None
        watch_read, self._watch = os.pipe()
        try:
            with _own_process_group() as group:
                self.group = group
                # the guard first: from here on, the driver's death takes the group down
                self._guard = subprocess.Popen([sys.executable, "-S", "-I", WATCHDOG, str(watch_read), str(os.getpid()),
                                                "", "--"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                               close_fds=True, pass_fds=(watch_read,))
                ray.init(**init_args)
        except BaseException:
            self.close()
            raise
        finally:
            os.close(watch_read)

    def close(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()
        if self._guard is not None:  # stopped first: a guard in this driver's own group would kill the driver
            self._guard.kill()
            self._guard.wait()
            self._guard = None
        if self.group is not None and self.group != os.getpgrp():
            try:
                os.killpg(self.group, signal.SIGKILL)  # what outlived the shutdown (agents on the stopped GCS)
            except (ProcessLookupError, PermissionError):
                pass
        if self._watch is not None:
            os.close(self._watch)
            self._watch = None
