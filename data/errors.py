"""Errors a user can cause with bad input; the CLI prints them as one line and exits non-zero."""


class DataError(Exception):
    """Bad or missing data: a malformed file, an unknown problem set, a corrupt run store."""
