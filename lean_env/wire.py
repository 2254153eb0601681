"""The HTTP wire types of the verification service: kimina-lean-server's request/response models, plus ours.

The field names, defaults and validation are those of kimina-lean-server's `kimina_client/models.py`
(`/api/check`: `CheckRequest` -> `CheckResponse`; legacy `/verify`: `VerifyRequestBody` -> `VerifyResponse`),
so the published `kimina-client` talks to our server unchanged. Our additions are optional and ignored by
kimina's models: a snippet may name a `problem` or carry a `statement` (+ `header`), and then its result has a
`verdict` (this project's `Verdict.to_dict()`). Server and remote checker both import this one file.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from lean_env.protocol import CommandResult
from lean_env.verdict import Message, Pos, Sorry, Verdict

Infotree = Literal["full", "tactics", "original", "substantive"]


class Snippet(BaseModel):
    id: str = Field(..., description="Identifier to trace the snippet")
    code: str = Field(..., description="Lean 4 snippet or proof attempt")
    # ours: ask for this project's verdict of `code` as a proof of a problem
    problem: str | None = Field(None, description="Name of a problem the server loaded (its statement is the target)")
    statement: str | None = Field(None, description="Formal statement the proof must prove (ends in `:= by`)")
    header: str | None = Field(None, description="Imports/options/opens of `statement` (default: the code's imports)")

    @property
    def wants_verdict(self) -> bool:
        return self.problem is not None or self.statement is not None


class BaseRequest(BaseModel):
    timeout: int = Field(30, description="Maximum time in seconds before aborting the check", ge=0)
    debug: bool = Field(False, description="Include REPL diagnostics in the response")
    reuse: bool = Field(True, description="Whether to attempt using a REPL if available")
    infotree: Infotree | None = Field(None, description="Level of detail for the info tree.")


class CheckRequest(BaseRequest):
    snippets: list[Snippet] = Field(description="List of snippets to validate (batch or single element)")

    @model_validator(mode="after")
    def check_snippets(self) -> CheckRequest:
        if not self.snippets:
            raise ValueError("`snippets` must be non empty")
        if len({s.id for s in self.snippets}) != len(self.snippets):
            raise ValueError("`snippets` must have unique ids")
        return self


class ReplResponse(BaseModel):
    id: str
    time: float = 0.0
    error: str | None = None
    response: dict[str, Any] | None = None  # the REPL's JSON answer (messages, sorries, ...) or {"message"}
    diagnostics: dict[str, Any] | None = None
    verdict: dict[str, Any] | None = None  # ours, when the snippet named a problem or statement

    @model_validator(mode="after")
    def error_or_response(self) -> ReplResponse:
        if (self.error is None) == (self.response is None):
            raise ValueError("exactly one of `error` or `response` must be set")
        return self


class CheckResponse(BaseModel):
    results: list[ReplResponse]


class Code(BaseModel):
    custom_id: str | int
    proof: str | None = None
    code: str | None = None  # kimina's older autoformalizer clients send `code`

    def content(self) -> str:
        content = self.proof if self.proof is not None else self.code
        if content is None:
            raise ValueError(f"snippet {self.custom_id!r} has no proof/code content")
        return content


class VerifyRequestBody(BaseModel):
    codes: list[Code]
    timeout: int = 300
    infotree_type: Infotree | None = None
    disable_cache: bool = False


class VerifyResponse(BaseModel):
    results: list[dict[str, Any]]  # {custom_id, error?, response?: REPL answer + "time"}


# ---- REPL answers <-> wire -------------------------------------------------------------------------------
def _pos(p: Pos | None, shift: int) -> dict[str, int] | None:
    return None if p is None else {"line": p.line + shift if p.line else p.line, "column": p.column}


def message_json(m: Message, shift: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"severity": m.severity, "pos": _pos(m.pos, shift) or {"line": 1, "column": 0},
                           "data": m.data}
    if m.end_pos is not None:
        out["endPos"] = _pos(m.end_pos, shift)
    return out


def sorry_json(s: Sorry, shift: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"pos": _pos(s.pos, shift) or {"line": 1, "column": 0},
                           "endPos": _pos(s.end_pos, shift) or _pos(s.pos, shift) or {"line": 1, "column": 0},
                           "goal": s.goal}
    if s.proof_state is not None:
        out["proofState"] = s.proof_state
    return out


def command_json(result: CommandResult, shift: int = 0) -> dict[str, Any]:
    """A `CommandResult` as the REPL printed it (empty lists omitted), positions moved down by `shift` lines."""
    if result.error is not None:
        return {"message": result.error}
    out: dict[str, Any] = {"env": result.env}
    if result.messages:
        out["messages"] = [message_json(m, shift) for m in result.messages]
    if result.sorries:
        out["sorries"] = [sorry_json(s, shift) for s in result.sorries]
    if result.infotree is not None:
        out["infotree"] = result.infotree
    return out


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    """A verdict in kimina's vocabulary: kimina clients read "valid" (no error message, no sorry) as proved, so
    a verdict that is not PROVED without a Lean error of its own carries one error naming its reasons."""
    out: dict[str, Any] = {}
    messages = [message_json(m) for m in verdict.messages]
    if not verdict.proved and not verdict.errors:
        messages.append({"severity": "error", "pos": {"line": 1, "column": 0},
                         "data": f"subgoal verifier: {verdict.status.value}: " + "; ".join(verdict.reasons)})
    if messages:
        out["messages"] = messages
    if verdict.sorries:
        out["sorries"] = [sorry_json(s) for s in verdict.sorries]
    return out
