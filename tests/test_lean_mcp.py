"""The MCP tools (`lean_env/mcp_tools.py`) driven by the `mcp` SDK's own client, with the FAKE Lean REPL
(tests/fakes/fake_lean.py, not Lean) behind them: in process, and over stdio through `subgoal lean mcp`."""

from __future__ import annotations

import asyncio
import sys

import pytest
from fakes import FAKE_LEAN
from helpers.prove import HEADER
from helpers.serve import PROBLEM, STATEMENT, served

from lean_env.mcp_tools import build_server

SKETCH = HEADER + ("theorem s (x : ℕ) (h₀ : x = 3) : x + 2 = 5 := by\n  have h1 : x * 2 = 6 := by sorry\n"
                   "  sorry")


@pytest.fixture(scope="module")
def service():
    verifier, service = served(workers=1, problems={PROBLEM.name: PROBLEM})
    yield service
    verifier.close()


async def _calls(client) -> dict:
    tools = sorted(t.name for t in (await client.list_tools()).tools)
    out = {"tools": tools}
    for key, name, args in [
        ("ok", "check_snippet", {"code": "theorem t : 2 + 2 = 4 := by decide"}),
        ("bad", "check_snippet", {"code": "theorem t : 2 + 2 = 5 := by decide"}),
        ("proved", "verify_proof", {"proof": HEADER + STATEMENT + "\n  ring", "problem": PROBLEM.name}),
        ("native", "verify_proof", {"proof": STATEMENT + "\n  native_decide", "statement": STATEMENT,
                                    "header": HEADER}),
        ("neither", "verify_proof", {"proof": "theorem t : 1 = 1 := rfl"}),
        ("goals", "goals_at_sorry", {"code": SKETCH}),
        ("split", "split_sketch", {"sketch": SKETCH}),
    ]:
        res = await client.call_tool(name, args)
        out[key] = (res.is_error, res.structured_content, res.content[0].text if res.content else "")
    return out


def _check(out: dict) -> None:
    assert out["tools"] == ["check_snippet", "goals_at_sorry", "split_sketch", "verify_proof"]
    assert out["ok"][1]["valid"] is True and out["bad"][1]["valid"] is False
    assert "is false" in out["bad"][1]["messages"][0]["data"]
    assert out["proved"][1]["status"] == "proved" and out["native"][1]["status"] == "unsound"
    assert out["neither"][0] is True and "give `problem`" in out["neither"][2]
    goals = out["goals"][1]["result"]
    assert [g["goal"] for g in goals] == ["x : ℕ\nh₀ : x = 3\n⊢ x * 2 = 6", "x : ℕ\nh₀ : x = 3\nh1 : x * 2 = 6\n⊢ x + 2 = 5"]
    assert goals[0]["line"] == HEADER.count("\n") + 2  # in the submitted code's lines
    lemmas = [lem for g in out["split"][1]["result"] for lem in g["lemmas"]]
    assert [lem["name"] for lem in lemmas] == ["s_sub1", "s_sub2"]
    assert " ".join(lemmas[1]["statement"].split()) == "theorem s_sub2 (x : ℕ) (h₀ : x = 3) (h1 : x * 2 = 6) : x + 2 = 5 := by"


def test_tools_through_the_sdk_client_in_process(service):
    from mcp import Client

    async def main():
        async with Client(build_server(service)) as client:
            return await _calls(client)

    _check(asyncio.run(main()))


def test_tools_over_stdio_through_the_cli():
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable, args=["-c", "from eval.cli import main; main()", "lean", "mcp"],
        env={"SUBGOAL_LEAN__REPL_PATH": str(FAKE_LEAN), "SUBGOAL_LEAN__WORKERS": "1", "PATH": "/usr/bin:/bin",
             "PYTHONPATH": str(FAKE_LEAN.parent.parent)})

    async def main():
        async with Client(params) as client:
            res = await client.call_tool("check_snippet", {"code": "theorem t : 2 + 2 = 4 := by decide"})
            return res.structured_content

    assert asyncio.run(main())["valid"] is True


@pytest.mark.slow  # a second CLI process start (~20 s here); the same tools run in process and over stdio above
def test_tools_over_streamable_http_through_the_cli():
    import os
    import socket
    import subprocess
    import time

    import httpx
    from mcp import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"SUBGOAL_LEAN__REPL_PATH": str(FAKE_LEAN), "SUBGOAL_LEAN__WORKERS": "1", "PATH": os.environ["PATH"],
           "PYTHONPATH": str(FAKE_LEAN.parent.parent)}
    proc = subprocess.Popen([sys.executable, "-c", "from eval.cli import main; main()", "lean", "mcp", "--transport",
                             "http", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(400):
            try:
                httpx.get(f"http://127.0.0.1:{port}/mcp")
                break
            except httpx.TransportError:
                time.sleep(0.05)

        async def main():
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                return (await client.call_tool("goals_at_sorry", {"code": SKETCH})).structured_content

        assert [g["goal"] for g in asyncio.run(main())["result"]][0] == "x : ℕ\nh₀ : x = 3\n⊢ x * 2 = 6"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
