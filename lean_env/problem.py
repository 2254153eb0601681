"""What lean_env reads of a problem: the `LeanProblem` protocol. `data.Problem` is the problem users pass.

lean_env sits below `data`, so it names a problem by what it needs, never by importing `data`. The one place
lean_env makes a problem itself is a server request that carries a bare statement (`StatedProblem`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class LeanProblem(Protocol):
    """A theorem to prove: `formal_statement` ends in `:= by`; `header` holds its imports, options and opens;
    `extra` the source's other fields the verifier reads (PutnamBench `answers`, `answer_mode`)."""

    @property
    def name(self) -> str: ...

    @property
    def formal_statement(self) -> str: ...

    @property
    def header(self) -> str: ...

    @property
    def extra(self) -> Mapping[str, Any]: ...


@dataclass
class StatedProblem:
    """A problem that is only a statement sent over the wire (`Snippet.statement`): no problem set behind it."""

    name: str
    formal_statement: str
    header: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
