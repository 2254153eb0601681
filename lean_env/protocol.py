"""The leanprover-community/repl JSON protocol: request builders, response framing and typed results.

Framing, as the REPL implements it (`REPL/Main.lean`): a request is JSON text followed by a blank line (the REPL
joins the request's lines *without* newlines, so requests are sent as one line); a response is the JSON value
pretty-printed, then an empty line. Responses are one of

- command (`cmd`, `path`, `unpickleEnvFrom`, `pickleTo`+`env`): `{"env", "messages"?, "sorries"?, "tactics"?,
  "infotree"?}`, empty lists omitted;
- proof step (`tactic`, `pickleTo`+`proofState`, `unpickleProofStateFrom`): `{"proofState", "goals",
  "messages"?, "sorries"?, "traces"?, "proofStatus"}`;
- error: `{"message": "..."}` (unknown env / proof state, tactic exceptions as `"Lean error:\\n..."`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lean_env.verdict import Message, Pos, Sorry

INFOTREE_MODES = ("full", "tactics", "original", "substantive")


@dataclass(frozen=True)
class TacticInfo:
    """One tactic of an `allTactics` answer: its text, the goals before it, and a proof state to resume from."""

    tactic: str
    goals: str
    proof_state: int | None
    pos: Pos | None
    end_pos: Pos | None
    used_constants: tuple[str, ...] = ()


@dataclass(frozen=True)
class CommandResult:
    """Answer to a command (`cmd`/`path`/pickling). `error` is set, and `env` None, when the REPL refused it."""

    env: int | None
    messages: list[Message] = field(default_factory=list)
    sorries: list[Sorry] = field(default_factory=list)
    tactics: list[TacticInfo] = field(default_factory=list)
    infotree: Any = None
    error: str | None = None

    @property
    def errors(self) -> list[Message]:
        return [m for m in self.messages if m.severity == "error"]

    @property
    def ok(self) -> bool:
        """Accepted with no error message (warnings and sorries may still be present)."""
        return self.error is None and not self.errors


@dataclass(frozen=True)
class ProofStepResult:
    """Answer to a tactic (or proof-state pickling). `error` is set, and `proof_state` None, when it failed."""

    proof_state: int | None
    goals: list[str] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    sorries: list[Sorry] = field(default_factory=list)
    traces: list[str] = field(default_factory=list)
    proof_status: str | None = None  # "Completed", "Incomplete: ...", "Error: ..."
    error: str | None = None

    @property
    def completed(self) -> bool:
        """No goals left and the REPL's own kernel check of the assembled proof succeeded (no sorry)."""
        return self.error is None and self.proof_status == "Completed"


def _pos(d: Any) -> Pos | None:
    return Pos(int(d["line"]), int(d["column"])) if isinstance(d, dict) else None


def parse_message(d: dict[str, Any]) -> Message:
    return Message(str(d["severity"]), str(d["data"]), _pos(d.get("pos")), _pos(d.get("endPos")))


def parse_sorry(d: dict[str, Any]) -> Sorry:
    ps = d.get("proofState")
    return Sorry(str(d["goal"]), _pos(d.get("pos")), _pos(d.get("endPos")), None if ps is None else int(ps))


def parse_tactic(d: dict[str, Any]) -> TacticInfo:
    ps = d.get("proofState")
    return TacticInfo(str(d["tactic"]), str(d["goals"]), None if ps is None else int(ps), _pos(d.get("pos")),
                      _pos(d.get("endPos")), tuple(str(c) for c in d.get("usedConstants", ())))


def parse_response(obj: Any) -> CommandResult | ProofStepResult:
    """Type one decoded response; raises ValueError on anything that is not a REPL response."""
    if not isinstance(obj, dict):
        raise ValueError(f"response is not a JSON object: {str(obj)[:80]!r}")
    try:
        if "proofState" in obj and "env" not in obj:
            return ProofStepResult(
                proof_state=int(obj["proofState"]),
                goals=[str(g) for g in obj.get("goals", [])],
                messages=[parse_message(m) for m in obj.get("messages", [])],
                sorries=[parse_sorry(s) for s in obj.get("sorries", [])],
                traces=[str(t) for t in obj.get("traces", [])],
                proof_status=obj.get("proofStatus"),
            )
        if "env" in obj:
            return CommandResult(
                env=int(obj["env"]),
                messages=[parse_message(m) for m in obj.get("messages", [])],
                sorries=[parse_sorry(s) for s in obj.get("sorries", [])],
                tactics=[parse_tactic(t) for t in obj.get("tactics", [])],
                infotree=obj.get("infotree"),
            )
        if set(obj) == {"message"}:
            return CommandResult(env=None, error=str(obj["message"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"malformed REPL response ({e!r}): {json.dumps(obj)[:120]}") from None
    raise ValueError(f"unknown REPL response: {json.dumps(obj)[:120]}")


def as_proof_step(result: CommandResult | ProofStepResult) -> ProofStepResult:
    """An error answer to a tactic request arrives as `{"message"}`; give it the tactic result type."""
    if isinstance(result, ProofStepResult):
        return result
    if result.error is not None:
        return ProofStepResult(proof_state=None, error=result.error)
    raise ValueError("expected a proof-step answer, got a command answer")


def as_command(result: CommandResult | ProofStepResult) -> CommandResult:
    if isinstance(result, CommandResult):
        return result
    raise ValueError("expected a command answer, got a proof-step answer")


def command(cmd: str, env: int | None = None, *, all_tactics: bool = False, root_goals: bool = False,
            infotree: str | None = None) -> dict[str, Any]:
    """A `cmd` request. Without `env` the REPL starts a fresh environment (the only place `import` may appear)."""
    req: dict[str, Any] = {"cmd": cmd}
    if env is not None:
        req["env"] = env
    _options(req, all_tactics, root_goals, infotree)
    return req


def file_command(path: str, env: int | None = None, *, all_tactics: bool = False, root_goals: bool = False,
                 infotree: str | None = None) -> dict[str, Any]:
    req: dict[str, Any] = {"path": str(path)}
    if env is not None:
        req["env"] = env
    _options(req, all_tactics, root_goals, infotree)
    return req


def _options(req: dict[str, Any], all_tactics: bool, root_goals: bool, infotree: str | None) -> None:
    if all_tactics:
        req["allTactics"] = True
    if root_goals:
        req["rootGoals"] = True
    if infotree is not None:
        if infotree not in INFOTREE_MODES:
            raise ValueError(f"infotree must be one of {INFOTREE_MODES}, not {infotree!r}")
        req["infotree"] = infotree


def tactic(tac: str, proof_state: int) -> dict[str, Any]:
    return {"tactic": tac, "proofState": proof_state}


def encode(req: dict[str, Any]) -> bytes:
    """One request on the wire: single-line JSON (json.dumps escapes newlines) and a blank line. Raw UTF-8, not
    \\u escapes (characters outside the BMP such as 𝔽 would need surrogate pairs, which Lean's JSON parser reads
    one \\u escape at a time: not worth the risk); a lone surrogate in untrusted text becomes "?" instead of an
    encoding error."""
    return (json.dumps(req, ensure_ascii=False) + "\n\n").encode("utf-8", errors="replace")
