"""The unit every part of the pipeline passes around: one Lean theorem to prove."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Problem:
    """One formal problem.

    `formal_statement` ends in `:= by` (no proof); `header` holds the imports, options and opens it needs.
    Fields of the source that have no slot here (PutnamBench `answers`, miniF2F `goal`, ...) are kept in
    `extra`, so nothing a loader read is lost on a round trip.
    """

    name: str
    formal_statement: str
    header: str = ""
    split: str = ""
    informal_statement: str | None = None
    informal_proof: str | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def lean_source(self) -> str:
        """Header + statement: the text a proof is appended to."""
        return self.header + self.formal_statement

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        return {**extra, **{k: v for k, v in d.items() if v is not None}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Problem:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        return cls(**{k: d[k] for k in known if k in d}, extra={k: v for k, v in d.items() if k not in known})
