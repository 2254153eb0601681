"""Progress of a run's attempts: a live bar on a terminal, plain timestamped lines at a steady interval elsewhere.

Rich draws nothing on a console that is not a terminal until the bar stops, so a run under nohup, a batch
scheduler or CI would be silent until its end. There a heartbeat thread writes one line every `interval_s`
(`$SUBGOAL_PROGRESS_S`, default 30 s) whether or not an attempt finished meanwhile (a long Lean call is still
news), and a last line when the run stops.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

DEFAULT_INTERVAL_S = 30.0


def interval_s() -> float:
    raw = os.environ.get("SUBGOAL_PROGRESS_S", "")
    try:
        value = float(raw) if raw else DEFAULT_INTERVAL_S
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if value > 0 else DEFAULT_INTERVAL_S


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class AttemptProgress:
    """`with AttemptProgress("eval", total, console) as p: ... p.advance(info)`, one `advance` per attempt."""

    def __init__(self, label: str, total: int, console: Any, info: str = "", every_s: float | None = None):
        self.label, self.total, self.console, self.info = label, total, console, info
        self.every_s = every_s or interval_s()
        self.done = 0
        self._t0 = time.monotonic()
        self._bar: Any = None
        self._task: Any = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> AttemptProgress:
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=self.console)
            self._bar.__enter__()
            self._task = self._bar.add_task("attempts", total=self.total, info=self.info)
        else:
            self._line()
            self._beat = threading.Thread(target=self._heartbeat, name=f"{self.label}-progress", daemon=True)
            self._beat.start()
        return self

    def advance(self, info: str | None = None) -> None:
        self.done += 1
        if info is not None:
            self.info = info
        if self._bar is not None:
            self._bar.update(self._task, advance=1, info=self.info)

    def shrink_to(self, total: int) -> None:
        """Fewer attempts will run than were counted at the start (stop-at-first skips a proved problem's others)."""
        if total < self.total:
            self.total = total
            if self._bar is not None:
                self._bar.update(self._task, total=total)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=1)
        self._line()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.every_s):
            self._line()

    def _line(self) -> None:
        elapsed = time.monotonic() - self._t0
        pct = f" ({100 * self.done / self.total:.1f}%)" if self.total else ""
        eta = ""
        if 0 < self.done < self.total:
            eta = f", about {_clock(elapsed / self.done * (self.total - self.done))} left"
        info = f", {self.info}" if self.info else ""
        self.console.print(f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} {self.label}: {self.done}/{self.total} "
                           f"attempts{pct}{info}, {_clock(elapsed)} elapsed{eta}", highlight=False, markup=False,
                           soft_wrap=True)
