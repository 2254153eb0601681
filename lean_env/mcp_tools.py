"""MCP tools for agents (`subgoal lean mcp`, the `mcp` SDK): the verifier as tools, over stdio or HTTP.

Four tools, in the spirit of lean-lsp-mcp's: `check_snippet` (Lean's messages for any Lean text), `verify_proof`
(this project's verdict: a proof of a named problem or of a given statement), `goals_at_sorry` (the goal at
every `sorry`, to plan the next step) and `split_sketch` (one standalone lemma per `sorry` of a proof sketch,
DeepSeek-Prover-V2 style). They share one `CheckService`, so an agent gets the same admission and timeouts as
HTTP clients. Tool errors an agent can act on (overload, unknown problem) come back as tool errors, not crashes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lean_env import decompose, text
from lean_env.problem import LeanProblem
from lean_env.service import CheckService, Overloaded
from lean_env.wire import Snippet, message_json, sorry_json

if TYPE_CHECKING:
    from lean_env.settings import LeanSettings

INSTRUCTIONS = ("Lean 4 verification (Subgoal). check_snippet runs Lean text; verify_proof says whether a proof "
                "really proves a problem (no sorry, standard axioms only, statement unchanged); goals_at_sorry "
                "shows the goal at each sorry; split_sketch turns a sketch's sorries into standalone lemmas.")


def _located(result: Any, shift: int) -> dict[str, Any]:
    return {"messages": [message_json(m, shift) for m in result.messages],
            "sorries": [sorry_json(s, shift) for s in result.sorries]}


def build_server(service: CheckService, name: str = "subgoal-lean") -> Any:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError  # its message reaches the agent; others: a crash

    server = MCPServer(name, instructions=INSTRUCTIONS)

    async def run(code: str, timeout_s: float | None) -> tuple[Any, int]:
        try:
            async with service.slot():
                result, error, shift = await service.run_code(code, timeout_s)
        except Overloaded as e:
            raise ToolError(str(e)) from None
        if result is None:
            raise ToolError(error)
        if result.error is not None:
            raise ToolError(f"the REPL refused it: {result.error}")
        return result, shift

    @server.tool()
    async def check_snippet(code: str, timeout_s: float | None = None) -> dict[str, Any]:
        """Run Lean 4 code (with its imports) and return Lean's messages and sorries, in the code's own lines.
        `valid` is true when there is no error and no sorry."""
        result, shift = await run(code, timeout_s)
        out = _located(result, shift)
        out["valid"] = result.ok and not result.sorries
        return out

    @server.tool()
    async def verify_proof(proof: str, problem: str | None = None, statement: str | None = None,
                           header: str | None = None, timeout_s: float | None = None) -> dict[str, Any]:
        """Check that `proof` proves a problem: one the server loaded (`problem`: its name), or `statement` (a
        Lean theorem statement ending in `:= by`, with `header`: its imports/opens). Returns the verdict:
        status (proved/failed/unsound/timeout/crashed), reasons, axioms, Lean's messages."""
        if problem is None and statement is None:
            raise ToolError("give `problem` (a name the server loaded) or `statement`")
        try:
            res = await service.check_one(Snippet(id="mcp", code=proof, problem=problem, statement=statement,
                                                  header=header), timeout_s)
        except Overloaded as e:
            raise ToolError(str(e)) from None
        if res.verdict is None:
            raise ToolError(res.error or "no verdict")
        return res.verdict

    @server.tool()
    async def goals_at_sorry(code: str, timeout_s: float | None = None) -> list[dict[str, Any]]:
        """The goal (hypotheses and target, as Lean prints them) at each `sorry` of the code, with its position."""
        result, shift = await run(code, timeout_s)
        return [{"line": s["pos"]["line"], "column": s["pos"]["column"], "goal": s["goal"]}
                for s in _located(result, shift)["sorries"]]

    @server.tool()
    async def split_sketch(sketch: str, timeout_s: float | None = None) -> list[dict[str, Any]]:
        """Split a proof sketch (a theorem whose proof has `have h : P := by sorry` steps or other sorries) into
        one standalone lemma per sorry goal, each with the theorem's hypotheses and the earlier steps as
        binders. Prove the lemmas, then put their proofs back at the sorries."""
        result, _ = await run(sketch, timeout_s)
        if result.errors:
            raise ToolError("the sketch does not compile: " + result.errors[0].data.splitlines()[0])
        body = text.split_imports(sketch)[1]
        base = text.theorem_name(body) or "sketch"
        try:
            subgoals = decompose.decompose(body, result.sorries, base)
        except ValueError as e:
            raise ToolError(str(e)) from None
        return [{"index": g.index, "goals": g.goals,
                 "lemmas": [{"name": n, "statement": st} for n, st in zip(g.lemma_names, g.lemma_statements,
                                                                           strict=True)]} for g in subgoals]

    return server


def serve_mcp(settings: LeanSettings | None, problems: dict[str, LeanProblem] | None = None, *, transport: str = "stdio",
              host: str = "127.0.0.1", port: int = 8001) -> None:
    """`subgoal lean mcp`: a REPL pool for the settings' toolchain behind the tools, until the client leaves."""
    from lean_env import make_verifier

    verifier = make_verifier(settings)
    try:
        server = build_server(CheckService(verifier, problems,
                                           max_timeout_s=getattr(settings, "timeout_s", None) or 300.0))
        if transport == "stdio":
            server.run("stdio")
        else:
            server.run("streamable-http", host=host, port=port)
    finally:
        verifier.close()
