"""The scripted fakes of tests/fakes/scripted.py behave as the tests that use them assume."""

from __future__ import annotations

from fakes.scripted import ScriptedBackend, ScriptedServer

from prover.generate.base import SamplingParams


def test_scripted_backend_follows_rules_and_cycles():
    b = ScriptedBackend([("alpha", ["one", "two"]), ("", "default")])
    out = b.generate(["xx alpha", "beta"], SamplingParams(), n=3)
    assert [c.text for c in out[0]] == ["one", "two", "one"]
    assert [c.text for c in out[1]] == ["default"] * 3
    assert b.calls[0][2] == 3


def test_scripted_server_answers_completions_over_http():
    import httpx

    with ScriptedServer([("hello", "world")]) as server:
        r = httpx.post(server.url + "/completions", json={"prompt": "hello there", "n": 2})
    assert r.status_code == 200
    assert [c["text"] for c in r.json()["choices"]] == ["world", "world"]
