"""Files written whole or not at all: the data goes to a temporary file beside the target, is flushed to disk and
renamed onto it, so a reader, a crash or a Ctrl-C mid-write never finds half a file (an interrupted write leaves
the old file as it was). The rule: the temporary file is always removed, whatever stopped the write."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import TracebackType

from data.errors import DataError


class atomic_path:  # noqa: N801 (a context manager used like a function: `with atomic_path(p) as tmp`)
    """Yields a temporary path beside `path` for the caller to write; on success it is synced and renamed onto
    `path` (keeping the permissions of the file it replaces)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")

    def __enter__(self) -> Path:
        if self.path.is_dir():
            raise DataError(f"{self.path} is a directory; give a file name to write to")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DataError(f"cannot create {self.path.parent}: {e.strerror}") from None
        return self.tmp

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                fd = os.open(self.tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)  # on disk before the rename: a power cut never leaves an empty file in its place
                finally:
                    os.close(fd)
                if self.path.exists():
                    shutil.copymode(self.path, self.tmp)
                os.replace(self.tmp, self.path)
        except OSError as e:
            raise DataError(f"cannot write {self.path}: {e.strerror}") from None
        finally:
            self.tmp.unlink(missing_ok=True)  # never left behind, whatever happened


def write_text_atomically(path: str | Path, text: str) -> None:
    """`path.write_text(text)` (UTF-8), whole or not at all."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
