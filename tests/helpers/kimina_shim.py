"""Import the published `kimina-client` (0.2.1) on Python 3.11.

Its models.py does `from typing import NotRequired, TypedDict`, which pydantic refuses below Python 3.12 (fixed
upstream in kimina-lean-server#63, not yet released). While it imports, `typing` lends it typing_extensions'
versions of those two names; the client's code is otherwise untouched.
"""

from __future__ import annotations

import sys
import typing

import typing_extensions


def import_kimina_client():
    if sys.version_info >= (3, 12) or "kimina_client" in sys.modules:
        import kimina_client

        return kimina_client
    saved = typing.TypedDict, typing.NotRequired
    typing.TypedDict, typing.NotRequired = typing_extensions.TypedDict, typing_extensions.NotRequired  # type: ignore
    try:
        import kimina_client
    finally:
        typing.TypedDict, typing.NotRequired = saved  # type: ignore
    return kimina_client
