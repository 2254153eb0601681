"""What Lean said about one proof: the verdict every consumer (search, RL reward, eval, data) reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PROVED = "proved"  # compiles, no sorry, statement unchanged, standard axioms only
    FAILED = "failed"  # Lean errors, or open goals / sorries left
    TIMEOUT = "timeout"  # the REPL call ran past its wall-clock limit
    UNSOUND = "unsound"  # a loophole (sorry, new axiom, native_decide, changed statement, ...)
    CRASHED = "crashed"  # the REPL died or answered garbage, even after a restart


@dataclass(frozen=True)
class Pos:
    line: int
    column: int


@dataclass(frozen=True)
class Message:
    severity: str  # "error" | "warning" | "info"
    data: str
    pos: Pos | None = None
    end_pos: Pos | None = None


@dataclass(frozen=True)
class Sorry:
    goal: str
    pos: Pos | None = None
    end_pos: Pos | None = None
    proof_state: int | None = None


@dataclass
class Verdict:
    status: Status
    messages: list[Message] = field(default_factory=list)
    sorries: list[Sorry] = field(default_factory=list)
    axioms: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # why it is not proved, one line each
    wall_time: float = 0.0
    cpu_time: float = 0.0
    lean_version: str | None = None
    mathlib_version: str | None = None
    # PutnamBench, answer produced: the value the proof gave each answer abbrev, and whether it is the recorded
    # answer (None: no recorded answer, or answers given). Compared as text up to whitespace and comments.
    answers: dict[str, str] = field(default_factory=dict)
    answer_correct: bool | None = None
    # The failure is the machine's, not the proof's (REPL would not start, header import failed, starved of
    # CPU, pool shut down: lean_env.errors.machine_fault). Never proved; a resumed run retries the attempt.
    infra: bool = False

    @property
    def proved(self) -> bool:
        return self.status is Status.PROVED

    @property
    def errors(self) -> list[Message]:
        return [m for m in self.messages if m.severity == "error"]

    def to_dict(self) -> dict[str, Any]:
        # By hand, in field order: `dataclasses.asdict` deep-copies field by field and cost about a millisecond per
        # verdict of the run's main thread (every attempt is recorded through here), measured in a 512-answer burst.
        return {"status": self.status.value, "messages": [_message(m) for m in self.messages],
                "sorries": [_sorry(s) for s in self.sorries], "axioms": list(self.axioms),
                "reasons": list(self.reasons), "wall_time": self.wall_time, "cpu_time": self.cpu_time,
                "lean_version": self.lean_version, "mathlib_version": self.mathlib_version,
                "answers": dict(self.answers), "answer_correct": self.answer_correct, "infra": self.infra}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        def pos(p):
            return Pos(**p) if p else None

        return cls(
            status=Status(d["status"]),
            messages=[Message(m["severity"], m["data"], pos(m.get("pos")), pos(m.get("end_pos")))
                      for m in d.get("messages", [])],
            sorries=[Sorry(s["goal"], pos(s.get("pos")), pos(s.get("end_pos")), s.get("proof_state"))
                     for s in d.get("sorries", [])],
            axioms=list(d.get("axioms", [])),
            reasons=list(d.get("reasons", [])),
            wall_time=d.get("wall_time", 0.0),
            cpu_time=d.get("cpu_time", 0.0),
            lean_version=d.get("lean_version"),
            mathlib_version=d.get("mathlib_version"),
            answers=dict(d.get("answers") or {}),
            answer_correct=d.get("answer_correct"),
            infra=bool(d.get("infra", False)),
        )


def _pos(p: Pos | None) -> dict[str, int] | None:
    return None if p is None else {"line": p.line, "column": p.column}


def _message(m: Message) -> dict[str, Any]:
    return {"severity": m.severity, "data": m.data, "pos": _pos(m.pos), "end_pos": _pos(m.end_pos)}


def _sorry(s: Sorry) -> dict[str, Any]:
    return {"goal": s.goal, "pos": _pos(s.pos), "end_pos": _pos(s.end_pos), "proof_state": s.proof_state}
