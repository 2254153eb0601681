"""The REPL client against the exact bytes a real Lean REPL produced (../shared/lean-repl-transcripts).

A FAKE REPL (tests/fakes/fake_repl.py) replays each transcript: it checks that every request our client sends equals
the recorded one and answers with the recorded output, byte for byte. Each typed result is then compared with
values read straight from the expected JSON by this file's own small readers (not by lean_env.protocol).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fakes import FAKE_REPL

from lean_env import Repl
from lean_env.protocol import CommandResult, ProofStepResult

REPO = Path(__file__).resolve().parent.parent
TRANSCRIPTS = REPO.parent / "shared" / "lean-repl-transcripts"
FAKE = FAKE_REPL


def _blocks(path: Path) -> list[str]:
    return [b for b in path.read_text(encoding="utf-8").split("\n\n") if b.strip()]


def _requests(base: Path) -> list[dict]:
    # the REPL joins a request's lines without newlines (REPL/Main.lean getLines)
    return [json.loads("".join(line.rstrip() for line in b.splitlines())) for b in _blocks(base.with_suffix(".in"))]


def _all_inputs() -> list[Path]:
    if not TRANSCRIPTS.is_dir():
        return []
    return sorted(p.with_suffix("") for p in TRANSCRIPTS.glob("*/*.in"))


def _with_outputs() -> list[Path]:
    return [b for b in _all_inputs() if b.with_suffix(".expected.out").is_file()]


pytestmark = pytest.mark.skipif(not TRANSCRIPTS.is_dir(), reason=f"{TRANSCRIPTS} is absent (shared reference data)")


def _send(repl: Repl, req: dict):
    """Call the typed method that produces exactly this request."""
    if "tactic" in req:
        return repl.run_tactic(req["tactic"], req["proofState"])
    if "cmd" in req:
        return repl.run_cmd(req["cmd"], req.get("env"), all_tactics=req.get("allTactics", False),
                            root_goals=req.get("rootGoals", False), infotree=req.get("infotree"))
    if "path" in req:
        return repl.run_file(req["path"], req.get("env"), all_tactics=req.get("allTactics", False),
                             root_goals=req.get("rootGoals", False), infotree=req.get("infotree"))
    if "pickleTo" in req and "env" in req:
        return repl.pickle_env(req["env"], req["pickleTo"])
    if "pickleTo" in req:
        return repl.pickle_proof_state(req["proofState"], req["pickleTo"])
    if "unpickleEnvFrom" in req:
        return repl.unpickle_env(req["unpickleEnvFrom"])
    if "unpickleProofStateFrom" in req:
        return repl.unpickle_proof_state(req["unpickleProofStateFrom"], req.get("env"))
    raise AssertionError(f"unknown request {req}")


def _pos(d):
    return None if d is None else (d["line"], d["column"])


def _check_messages(got, want: list[dict]) -> None:
    assert [(m.severity, m.data, _p(m.pos), _p(m.end_pos)) for m in got] == [
        (w["severity"], w["data"], _pos(w.get("pos")), _pos(w.get("endPos"))) for w in want]


def _check_sorries(got, want: list[dict]) -> None:
    assert [(s.goal, s.proof_state, _p(s.pos), _p(s.end_pos)) for s in got] == [
        (w["goal"], w.get("proofState"), _pos(w.get("pos")), _pos(w.get("endPos"))) for w in want]


def _p(pos):
    return None if pos is None else (pos.line, pos.column)


def _check(result, want: dict) -> None:
    if set(want) == {"message"}:
        assert result.error == want["message"]
        return
    assert result.error is None
    _check_messages(result.messages, want.get("messages", []))
    _check_sorries(result.sorries, want.get("sorries", []))
    if "env" in want:
        assert isinstance(result, CommandResult)
        assert result.env == want["env"]
        assert [(t.tactic, t.goals, t.proof_state, _p(t.pos), _p(t.end_pos), list(t.used_constants))
                for t in result.tactics] == [
            (w["tactic"], w["goals"], w.get("proofState"), _pos(w.get("pos")), _pos(w.get("endPos")),
             w.get("usedConstants", [])) for w in want.get("tactics", [])]
        assert result.infotree == want.get("infotree")
    else:
        assert isinstance(result, ProofStepResult)
        assert result.proof_state == want["proofState"]
        assert result.goals == want["goals"]
        assert result.proof_status == want["proofStatus"]
        assert result.traces == want.get("traces", [])
        assert result.completed == (want["proofStatus"] == "Completed")


@pytest.fixture
def replay(monkeypatch):
    repls: list[Repl] = []

    def start(base: Path) -> Repl:
        monkeypatch.setenv("FAKE_REPL_TRANSCRIPT", str(base))
        repl = Repl([sys.executable, str(FAKE)], timeout_s=20, isolate_network=False)
        repls.append(repl)
        return repl

    yield start
    for r in repls:
        r.close()


def test_transcripts_are_present():
    assert len(_with_outputs()) >= 60, "expected the full set of recorded transcripts"


@pytest.mark.parametrize("base", _with_outputs(), ids=lambda b: f"{b.parent.name}/{b.name}")
def test_transcript(base: Path, replay):
    requests = _requests(base)
    answers = [json.loads(b) for b in _blocks(base.with_suffix(".expected.out"))]
    assert len(requests) == len(answers)
    repl = replay(base)
    for req, want in zip(requests, answers, strict=True):
        result = _send(repl, req)
        assert result.error is None or not result.error.startswith("fake_repl"), "request differs from transcript"
        _check(result, want)
    assert repl.restarts == 0 and repl.alive


@pytest.mark.parametrize("base", _all_inputs(), ids=lambda b: f"{b.parent.name}/{b.name}")
def test_request_builders_reproduce_inputs(base: Path):
    """Every recorded request (with or without a recorded answer) is what our builders produce."""
    from lean_env import protocol

    for req in _requests(base):
        if "cmd" in req:
            built = protocol.command(req["cmd"], req.get("env"), all_tactics=req.get("allTactics", False),
                                     root_goals=req.get("rootGoals", False), infotree=req.get("infotree"))
        elif "tactic" in req:
            built = protocol.tactic(req["tactic"], req["proofState"])
        else:
            continue
        assert json.loads(protocol.encode(built)) == req


# ---- a few values checked by hand, as a second opinion on the generic comparison --------------------------
def test_readme_by_hand(replay):
    repl = replay(TRANSCRIPTS / "core" / "readme")
    r = repl.run_cmd("def f (x : Unit) : Nat := by sorry")
    assert r.env == 0 and r.sorries[0].goal == "x : Unit\n⊢ Nat" and r.sorries[0].proof_state == 0
    assert r.sorries[0].pos.column == 29 and r.messages[0].severity == "warning" and r.ok
    step = repl.run_tactic("apply Int.natAbs", 0)
    assert step.goals == ["x : Unit\n⊢ Int"] and not step.completed
    assert repl.run_tactic("exact -37", 1).completed


def test_errors_by_hand(replay):
    repl = replay(TRANSCRIPTS / "core" / "unknown_environment")
    r = repl.run_cmd("def f : Nat := by sorry", 5)
    assert r.error == "Unknown environment." and r.env is None and not r.ok
    repl = replay(TRANSCRIPTS / "core" / "invalid_tactic")
    repl.run_cmd("theorem my_theorem (x : Nat) : x = x := by sorry")
    step = repl.run_tactic("exact my_fake_premise", 0)
    assert step.proof_status == "Incomplete: contains sorry" and step.messages[0].pos.line == 0
    assert step.messages[0].data == "Unknown identifier `my_fake_premise`" and not step.completed


def test_tactic_mode_sorry_without_position(replay):
    repl = replay(TRANSCRIPTS / "core" / "tactic_mode_sorry")
    repl.run_cmd("def f : Nat := by sorry")
    step = repl.run_tactic("sorry", 0)
    assert step.sorries[0].pos is None and step.sorries[0].proof_state == 1 and step.goals == []
