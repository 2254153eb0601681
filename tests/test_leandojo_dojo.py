"""The Dojo proof session (lean_env/dojo.py) through a fake lean_dojo, beside the REPL session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fakes import FAKE_LEAN
from fakes.fake_lean_dojo import fake_lean_dojo
from fakes.leandojo_bench import (
    COMMIT,
    FILE,
    URL,
    write_bench,
)

from data.leandojo import (
    load_problems,
)


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    return write_bench(tmp_path)


@pytest.fixture
def fake_dojo(monkeypatch):
    fake = fake_lean_dojo()
    monkeypatch.setitem(sys.modules, "lean_dojo", fake)
    return fake


@pytest.fixture
def problem(bench: Path):
    return next(p for p in load_problems(bench, "random", "train") if p.name == "Demo.and_intro'")


def test_fake_lean_dojo_matches_the_real_api():
    """The fake is only worth something if it has the real package's shapes."""
    import dataclasses
    import inspect

    real = pytest.importorskip("lean_dojo", reason="lean-dojo (the `dojo` extra) is not installed")
    fake = fake_lean_dojo()
    for name in ("TacticState", "ProofFinished", "ProofGivenUp", "LeanError"):
        real_fields = [f.name for f in dataclasses.fields(getattr(real, name)) if f.init]
        assert [f.name for f in dataclasses.fields(getattr(fake, name))] == real_fields, name
    assert [f.name for f in dataclasses.fields(real.Theorem)] == ["repo", "file_path", "full_name"]
    assert list(inspect.signature(real.Dojo.__init__).parameters) == list(
        inspect.signature(fake.Dojo.__init__).parameters
    )
    assert list(inspect.signature(real.Dojo.run_tac).parameters) == ["self", "state", "tactic"]
    for name in ("DojoInitError", "DojoCrashError", "DojoTacticTimeoutError", "LeanGitRepo"):
        assert hasattr(real, name)


def test_dojo_session_proves_step_by_step(fake_dojo, problem):
    from lean_env.dojo import DojoSession

    with DojoSession(timeout_s=30) as session:
        s0 = session.start(problem)
        assert s0.goals == ("p q : Prop\nhp : p\nhq : q\n⊢ p ∧ q",)
        r1 = session.run_tactic(s0, "constructor")
        assert r1.error is None and not r1.finished
        assert r1.goals == [
            "case left\np q : Prop\nhp : p\nhq : q\n⊢ p",
            "case right\np q : Prop\nhp : p\nhq : q\n⊢ q",
        ]
        bad = session.run_tactic(r1.state, "exact hq")
        assert bad.state is None and "type mismatch" in bad.error and not bad.finished
        r2 = session.run_tactic(r1.state, "exact hp")
        assert r2.goals == ["case right\np q : Prop\nhp : p\nhq : q\n⊢ q"]
        r3 = session.run_tactic(r2.state, "exact hq")
        assert r3.finished and r3.error is None and r3.goals == []
        assert r3.state.tactics == ("constructor", "exact hp", "exact hq")
        # the full theorem text, for the Verifier to re-check (Dojo's word alone never counts)
        assert session.proof_text(problem, r3.state) == (
            "theorem and_intro' (p q : Prop) (hp : p) (hq : q) : p ∧ q := by\n  constructor\n  exact hp\n  exact hq\n"
        )
        again = session.start(problem)  # a second attempt reuses the theorem's Lean process
        assert again.goals == s0.goals and len(fake_dojo.processes) == 1
        assert session.run_tactic(again, "constructor").goals == r1.goals
        gave_up = session.run_tactic(r2.state, "sorry")
        assert gave_up.error and "gave up" in gave_up.error and not gave_up.finished
        assert fake_dojo.Dojo.__name__ == "Dojo"
        process = fake_dojo.processes[-1]
    assert not process.alive  # close() ends the Lean process


def test_dojo_session_survives_crash_and_timeout_by_replaying(fake_dojo, problem):
    from lean_env.dojo import DojoSession

    session = DojoSession(timeout_s=5)
    s0 = session.start(problem)
    r1 = session.run_tactic(s0, "constructor")
    crashed = session.run_tactic(r1.state, "crash!")
    assert crashed.state is None and "Lean crashed" in crashed.error
    # a state from before the crash still works: the theorem is reopened and its tactics replayed
    r2 = session.run_tactic(r1.state, "exact hp")
    assert r2.error is None and r2.goals == ["case right\np q : Prop\nhp : p\nhq : q\n⊢ q"]
    assert len(fake_dojo.processes) == 2 and not fake_dojo.processes[0].alive
    timed_out = session.run_tactic(r2.state, "loop")
    assert timed_out.error == "timeout after 5s"
    r3 = session.run_tactic(r2.state, "exact hq")
    assert r3.finished and r3.state.tactics == ("constructor", "exact hp", "exact hq")
    assert len(fake_dojo.processes) == 3
    session.close()
    assert not any(p.alive for p in fake_dojo.processes)


def test_dojo_session_clear_errors(monkeypatch, fake_dojo, problem):
    from data.problem import Problem
    from lean_env.dojo import DojoSession
    from lean_env.errors import LeanError

    session = DojoSession()
    with pytest.raises(LeanError, match="--interaction repl"):
        session.start(Problem("t", "theorem t : True := by"))
    unknown = Problem(
        "Demo.nope", "theorem nope : True := by", extra={**problem.extra, "full_name": "Demo.nope"}
    )
    with pytest.raises(LeanError, match="could not open Demo.nope"):
        session.start(unknown)
    monkeypatch.setitem(sys.modules, "lean_dojo", None)
    with pytest.raises(LeanError, match=r"lean-dojo"):
        DojoSession()


NAT_AND = "theorem nat_and (p q : ℕ) (hp : p = 1) (hq : q = 2) : p = 1 ∧ q = 2 := by"


@pytest.fixture(params=["dojo", "repl"])
def session_and_problem(request, monkeypatch):
    """The same ProofSession interface through `open_session`: Dojo over the fake lean_dojo, and the REPL
    session over the prove engineer's fake REPL (tests/fakes/fake_lean.py)."""
    from data.problem import Problem
    from lean_env.interaction import open_session

    extra = {"url": URL, "commit": COMMIT, "file_path": FILE, "full_name": "Demo.nat_and"}
    problem = Problem("Demo.nat_and", NAT_AND, extra=extra)
    if request.param == "dojo":
        monkeypatch.setitem(sys.modules, "lean_dojo", fake_lean_dojo())
        session = open_session("dojo", timeout_s=30)
        yield session, problem
        session.close()
    else:
        from lean_env.repl import Repl

        repl = Repl([sys.executable, str(FAKE_LEAN)], timeout_s=30)
        session = open_session("repl", repl=repl)
        yield session, problem
        session.close()
        repl.close()


def test_both_sessions_share_the_proof_session_interface(session_and_problem):
    from lean_env.interaction import ProofSession

    session, problem = session_and_problem
    assert isinstance(session, ProofSession)
    s0 = session.start(problem)
    assert len(s0.goals) == 1 and "⊢" in s0.goals[0]
    r1 = session.run_tactic(s0, "constructor")
    assert r1.error is None and len(r1.goals) == 2 and not r1.finished
    wrong = session.run_tactic(r1.state, "exact hq")
    assert wrong.state is None and wrong.error and not wrong.finished
    r2 = session.run_tactic(r1.state, "exact hp")
    assert r2.error is None and len(r2.goals) == 1
    r3 = session.run_tactic(r2.state, "exact hq")
    assert r3.finished and r3.error is None and r3.goals == []
    assert session.proof_text(problem, r3.state) == NAT_AND + "\n  constructor\n  exact hp\n  exact hq\n"


class _ScriptedTactics:
    """A stand-in for a model (tests only): answers a tree-search prompt with the tactics scripted for the
    target of its first goal, best first."""

    model_id = "scripted-tactics"

    def __init__(self, script: dict[str, list[str]]):
        self.script = script

    def generate(self, prompts, params, n=1):
        from prover.generate.base import Completion

        out = []
        for prompt in prompts:
            goals = prompt.rsplit("current goals:", 1)[1]
            target = goals.split("⊢", 1)[1].split("\n")[0].removesuffix("-/").strip()
            tactics = self.script.get(target, ["sorry"])[:n]
            out.append([Completion(t, 10, 3, token_logprobs=[-0.1 * (i + 1)]) for i, t in enumerate(tactics)])
        return out

    def close(self):
        pass


@pytest.mark.parametrize("lying", [False, True])
def test_tree_search_through_dojo_is_reverified(monkeypatch, lying):
    """`--interaction dojo` end to end: tree search steps through DojoSession (fake lean_dojo), and the proof it
    finds counts only when the Verifier (fake REPL) accepts the whole text; a Dojo that wrongly reports success
    is caught."""
    from helpers.prove import attempt_now

    from data.config import LeanSettings
    from data.problem import Problem
    from prover.recipe import ProveRecipe

    monkeypatch.setitem(sys.modules, "lean_dojo", fake_lean_dojo())
    extra = {"url": URL, "commit": COMMIT, "file_path": FILE, "full_name": "Demo.nat_and"}
    problem = Problem("Demo.nat_and", NAT_AND, extra=extra)
    first = ["fake_close_all"] if lying else ["constructor"]
    backend = _ScriptedTactics({"p = 1 ∧ q = 2": first, "p = 1": ["exact hp"], "q = 2": ["exact hq"]})
    settings = LeanSettings(repl_path=FAKE_LEAN, workers=1, timeout_s=60)
    recipe = ProveRecipe(strategy="tree", interaction="dojo", lean_settings=settings, budget={"lean_calls": 40},
                         options={"width": 1, "max_expansions": 8})  # fmt: skip
    verifier = recipe.make_checker()
    try:
        result = attempt_now(recipe, backend, verifier, problem, 0)
        assert [type(s).__name__ for s in recipe.sessions().opened] == ["DojoSession"]  # the recipe's, per process
    finally:
        recipe.close()
        verifier.close()
    if lying:
        assert not result.verdict.proved
        assert "fake_close_all" in result.text  # the claimed proof was checked, and rejected
    else:
        assert result.verdict.proved, result.verdict.to_dict()
        assert result.text == NAT_AND + "\n  constructor\n  exact hp\n  exact hq\n"


@pytest.mark.lean
def test_real_dojo_on_lean4_example():
    pytest.importorskip("lean_dojo")
    from data.problem import Problem
    from lean_env.dojo import DojoSession

    extra = {"url": "https://github.com/yangky11/lean4-example", "commit": "e2602e8d4b1d9cf9240f1a20160a47cfc35165b8",
             "file_path": "Lean4Example.lean", "full_name": "hello_world"}  # fmt: skip
    p = Problem("hello_world", "theorem hello_world (a b c : Nat) : a + b + c = a + c + b := by", extra=extra)
    with DojoSession(timeout_s=120) as session:
        r = session.run_tactic(session.start(p), "rw [add_assoc, add_comm b, ←add_assoc]")
        assert r.finished, r.error
