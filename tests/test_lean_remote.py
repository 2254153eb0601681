"""The remote checker (`lean_env.remote.RemoteVerifier`) over real HTTP, against our server with the FAKE Lean REPL
behind it: as our server (its verdicts) and as a kimina-lean-server (raw REPL answers judged here), each giving
the local Verifier's verdicts; retries on 429; an unreachable server; `make_verifier` choosing it from settings."""

from __future__ import annotations

import threading
import time

import pytest
from helpers.prove import HEADER
from helpers.serve import PROBLEM, STATEMENT, served

from data.config import LeanSettings
from lean_env import make_verifier
from lean_env.errors import LeanError
from lean_env.remote import RemoteVerifier
from lean_env.serve import ServerThread, create_app
from lean_env.verdict import Status

CASES = {
    "honest": HEADER + STATEMENT + "\n  ring",
    "no_header": STATEMENT + "\n  omega",
    "wrong": HEADER + STATEMENT + "\n  decide",
    "sorry": HEADER + STATEMENT + "\n  sorry",
    "native": HEADER + STATEMENT + "\n  native_decide",
    "changed": HEADER + STATEMENT.replace("b + a", "a + b") + "\n  ring",
    "renamed": HEADER + STATEMENT.replace("add_comm2", "other") + "\n  ring",
    "hang": HEADER + STATEMENT + "\n  fake_hang",
}


@pytest.fixture(scope="module")
def stack():
    verifier, service = served(workers=2, timeout_s=2)
    with ServerThread(create_app(service)) as srv:
        local = {k: verifier.verify(PROBLEM, src) for k, src in CASES.items()}
        yield srv, local
    verifier.close()


@pytest.mark.parametrize("kind", ["auto", "kimina"])
def test_remote_verdicts_are_the_local_verifiers(stack, kind):
    srv, local = stack
    with RemoteVerifier(srv.url, kind=kind, timeout_s=2) as remote:
        got = dict(zip(CASES, remote.verify_many([(PROBLEM, src) for src in CASES.values()]), strict=True))
        assert remote.kind == ("subgoal" if kind == "auto" else "kimina")
    assert {k: v.status for k, v in got.items()} == {k: v.status for k, v in local.items()}
    assert local["honest"].status is Status.PROVED and local["hang"].status is Status.TIMEOUT
    assert sorted(got["honest"].axioms) == ["Classical.choice", "Quot.sound", "propext"]
    assert "sorryAx" in " ".join(got["sorry"].reasons)  # from `#print axioms`, read back through the server
    assert got["wrong"].errors[0].pos.line == local["wrong"].errors[0].pos.line  # lines of the submitted text
    assert any("changed" in r for r in got["changed"].reasons)


def test_retries_after_429_then_answers():
    verifier, service = served(workers=1, capacity=1, max_wait_s=0.2, timeout_s=1.5)
    with ServerThread(create_app(service)) as srv, RemoteVerifier(srv.url, backoff_s=0.2, max_retries=20) as remote:
        busy = threading.Thread(target=lambda: remote.verify(PROBLEM, CASES["hang"]))
        busy.start()
        while service.admitted == 0:
            time.sleep(0.01)
        verdict = remote.verify(PROBLEM, CASES["honest"])
        busy.join()
        assert verdict.status is Status.PROVED and remote.retries >= 1
    verifier.close()


def test_an_unreachable_server_is_a_crashed_verdict_not_an_exception():
    with RemoteVerifier("http://127.0.0.1:9", kind="subgoal", max_retries=1, backoff_s=0.01) as remote:
        verdict = remote.verify(PROBLEM, CASES["honest"])
        assert verdict.status is Status.CRASHED
        assert "gave up after 2 tries" in verdict.reasons[0] and "connection failed" in verdict.reasons[0]
        with pytest.raises(LeanError, match="not reachable"):
            remote.health()


def test_make_verifier_picks_the_remote_checker_from_settings(stack):
    srv, _ = stack
    remote = make_verifier(LeanSettings(remote_url=srv.url, timeout_s=2))
    try:
        assert isinstance(remote, RemoteVerifier) and remote.verify(PROBLEM, CASES["honest"]).proved
    finally:
        remote.close()
    with pytest.raises(LeanError, match="needs a server"):
        make_verifier(LeanSettings(checker="remote"))
