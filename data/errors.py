"""Errors a user can cause with bad input; the CLI prints them as one line and exits non-zero."""

from __future__ import annotations

from pathlib import Path

from lean_env.errors import UserError


class DataError(UserError):
    """Bad or missing data: a malformed file, an unknown problem set, a corrupt run store."""


def read_text(path: str | Path, what: str = "") -> str:
    """A user's UTF-8 text file, or a DataError that says in one line why it cannot be read."""
    name = f"{what} {path}" if what else str(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{name}: no such file (it does not exist)") from None
    except OSError as e:
        raise DataError(f"{name}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{name}: not UTF-8 text ({e.reason} at byte {e.start})") from None
