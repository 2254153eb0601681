"""Every strategy end to end: a scripted TEST backend writes the text, tests/fakes/fake_lean.py (a FAKE Lean) checks it
through the real Verifier / REPL session; the real tiny transformers model runs through the same path once."""

from __future__ import annotations

import pytest
from fakes import FAKE_LEAN, fake_lean_settings
from fakes.scripted import ScriptedBackend
from helpers.prove import HEADER, tiny_checkpoint_dir

from data.problem import Problem
from data.store import Attempt
from lean_env import make_verifier
from lean_env.interaction import ReplSession, open_session
from lean_env.repl import Repl
from prover.errors import ProverError
from prover.generate.base import SamplingParams, derive_seed
from prover.recipe import ProveRecipe
from prover.runner import run_async
from prover.search import Budget, attempt_seed, run_attempt

SKETCH_ASK = "Do not write the full proof"


@pytest.fixture(scope="module")
def verifier():
    v = make_verifier(fake_lean_settings(workers=2))
    yield v
    v.close()


def problem(name: str, statement: str) -> Problem:
    return Problem(name, statement, header=HEADER, split="test")


P = problem("p", "theorem p (h₀ : 2 + 2 = 4) : 2 + 3 = 5 ∧ 1 < 2 := by")


def test_sample_stops_at_the_first_verified_proof(verifier):
    backend = ScriptedBackend([("theorem p", ["  norm_num\n  rfl\n```", "```\nI give up.", "  constructor <;> norm_num\n```",
                                              "  decide\n```"])])
    events = []
    r = run_attempt(P, "sample", backend, verifier, Budget(samples=8), seed=7, on_event=events.append, batch=1)
    assert r.proved and r.text.endswith("  constructor <;> norm_num\n")
    assert (r.samples, r.lean_calls) == (3, 2)  # the no-code sample is not sent to Lean
    assert [s["status"] for s in r.trace["samples"]] == ["failed", "failed", "proved"]
    assert [c[1].seed for c in backend.calls] == [derive_seed(7, i) for i in range(3)]  # one seed per call
    assert r.stopped == "proved" and r.timings["lean_wall_s"] > 0
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "best" in kinds
    att = r.to_attempt(P, 3)
    assert isinstance(att, Attempt) and (att.problem, att.index, att.status, att.split) == ("p", 3, "proved", "test")
    assert att.verdict["status"] == "proved" and att.completion_tokens == r.completion_tokens > 0


def test_child_budget_is_capped_by_its_ancestors():
    root = Budget(samples=10, tokens=100).start()
    root.charge(samples=3, tokens=70)
    child = root.child(samples=5)  # no token limit of its own: the root's 30 remaining tokens still bind
    assert child.remaining_tokens() == 30 and child.remaining_samples() == 5
    child.charge(samples=4, tokens=20)
    assert child.remaining_tokens() == 10 and child.remaining_samples() == 1 and root.remaining_samples() == 3
    assert Budget().remaining_tokens() is None


def test_sample_pass_at_k_runs_every_sample_and_budget_limits(verifier):
    backend = ScriptedBackend([("theorem p", "  decide\n```")])
    r = run_attempt(P, "sample", backend, verifier, Budget(samples=4), seed=0, batch=2, stop_at_first=False)
    assert r.samples == 4 and [s["status"] for s in r.trace["samples"]] == ["proved"] * 4
    tok = run_attempt(P, "sample", ScriptedBackend([("", "  rfl -- a wrong tactic for this goal\n```")]), verifier,
                      Budget(samples=100, tokens=20), seed=0, batch=1)
    assert not tok.proved and tok.stopped == "tokens" and tok.completion_tokens >= 20
    assert tok.completion_tokens < 40
    calls = run_attempt(P, "sample", ScriptedBackend([("", "  exact h₀\n```")]), verifier, Budget(samples=100, lean_calls=3),
                        seed=0, batch=1)
    assert calls.lean_calls == 3 and calls.stopped == "lean_calls"
    default = run_attempt(P, "sample", ScriptedBackend([("", "  simp\n```")]), verifier, None, seed=0)
    assert default.samples == 1  # one attempt of `sample` is one sample unless the budget says otherwise


def test_repair_sends_lean_errors_back(verifier):
    backend = ScriptedBackend([
        (("does not compile", "type mismatch"), "  constructor\n  · norm_num\n  · decide\n```"),
        ("theorem p", "  exact h₀\n```"),
    ])
    r = run_attempt(P, "repair", backend, verifier, Budget(samples=6), seed=0, rounds=2)
    assert r.proved and "· decide" in r.text
    repair_prompt = backend.calls[1][0][0]
    assert "exact h₀" in repair_prompt and "type mismatch" in repair_prompt
    assert [s["status"] for s in r.trace["chains"][0]] == ["failed", "proved"]
    # the trace keeps what the repair prompt showed, so the SFT builder can make a `repair` example of it
    from prover.train.examples import make_renderer

    (example,) = [e for e in make_renderer({P.name: P})(r.to_attempt(P, 0)) if e["kind"] == "repair"]
    assert "exact h₀" in example["prompt"] and "type mismatch" in example["prompt"]
    assert "· decide" in example["completion"]


def test_repair_gives_up_within_budget(verifier):
    backend = ScriptedBackend([("", "  exact h₀\n```")])
    r = run_attempt(P, "repair", backend, verifier, Budget(samples=5), seed=0, rounds=1)
    assert not r.proved and r.samples == 5 and r.verdict.errors
    assert len(r.trace["chains"]) == 3  # 2 + 2 + 1 samples


D = problem("d", "theorem d (h₀ : 2 + 2 = 4) : (2 + 3) * 2 = 10 ∧ 1 < 2 := by")
D_SKETCH = """Plan: compute step by step.
```lean4
theorem d (h₀ : 2 + 2 = 4) : (2 + 3) * 2 = 10 ∧ 1 < 2 := by
  have h1 : 2 + 3 = 5 := by sorry
  have h2 : 5 * 2 = 10 := by
    sorry
  constructor
  · norm_num
  · decide
```"""
SUB2_SKETCH = """```lean4
theorem d_sub2 (h₀ : 2 + 2 = 4) (h1 : 2 + 3 = 5) :
    5 * 2 = 10 := by
  have h3 : 5 * 2 = 10 := by sorry
  exact h3
```"""


def test_decompose_recursively_with_the_tree_in_the_trace(verifier):
    backend = ScriptedBackend([
        (("theorem d_sub2_sub1", "Complete the following"), "  decide\n```"),
        ((SKETCH_ASK, "theorem d_sub2"), SUB2_SKETCH),
        (SKETCH_ASK, ["```lean4\ntheorem d (h₀ : 2 + 2 = 4) : (2 + 3) * 2 = 10 ∧ 1 < 2 := by\n  have : 1 = 1 := by\n"
                      "  sorry\n  exact foo\n```", D_SKETCH]),
        ("theorem d_sub1", "  norm_num\n```"),
        ("theorem d_sub2", "  exact h1\n```"),  # wrong: sampling fails, so d_sub2 is decomposed in turn
    ])
    events = []
    r = run_attempt(D, "decompose", backend, verifier, Budget(samples=40), seed=0, on_event=events.append,
                    lemma_samples=2, max_depth=2)
    assert r.proved, (r.verdict.reasons, r.trace)
    assert "have h1 : 2 + 3 = 5 := by norm_num" in r.text and "sorry" not in r.text
    first, second = r.trace["sketches"][:2]
    assert first["status"] == "does_not_compile" and first["errors"]
    assert second["status"] == "proved" and [s["name"] for s in second["subgoals"]] == ["d_sub1", "d_sub2"]
    sub2 = second["subgoals"][1]
    assert sub2["via"] == "decompose" and sub2["status"] == "proved"
    inner = sub2["trace"]["decompose"]["sketches"][0]
    assert inner["subgoals"][0]["name"] == "d_sub2_sub1" and inner["status"] == "proved"
    assert second["subgoals"][0]["statement"].startswith("theorem d_sub1 (h₀ : 2 + 2 = 4) :")
    assert {"sketch", "subgoal"} <= {e["kind"] for e in events}
    assert r.samples == backend_samples(backend)


def backend_samples(backend: ScriptedBackend) -> int:
    return sum(len(prompts) * n for prompts, _, n in backend.calls)


def test_decompose_from_a_given_sketch_and_partial_result(verifier):
    sketch = D_SKETCH.split("```lean4\n")[1].split("```")[0]
    backend = ScriptedBackend([("theorem d_sub1", "  norm_num\n```"), ("", "nothing useful")])
    events = []
    r = run_attempt(D, "decompose", backend, verifier, Budget(samples=6), seed=0, on_event=events.append,
                    sketch=sketch, lemma_samples=1, max_depth=1)
    assert not r.proved
    assert r.trace["sketches"][0]["status"] == "lemma_failed"
    best = [e for e in events if e["kind"] == "best"][-1]
    assert best["what"] == "sketch" and "have h1 : 2 + 3 = 5 := by norm_num" in best["text"]
    assert best["text"].count("sorry") == 1  # the lemma still open


def test_tree_search_through_the_repl_session(verifier):
    t = problem("tr", "theorem tr (x : ℕ) (h₀ : x = 3) : x = 3 ∧ 2 + 3 = 5 := by")
    backend = ScriptedBackend([
        ("case left", ["exact h₀", "norm_num"]),  # the prompt shows all goals: the first one decides
        ("case right", ["norm_num"]),
        ("current goals", ["decide", "constructor", "bogus_tactic"]),
    ])
    repl = Repl([str(FAKE_LEAN)], timeout_s=20, isolate_network=False)
    with ReplSession(repl, own_repl=True) as session:
        events = []
        r = run_attempt(t, "tree", backend, verifier, Budget(samples=64), seed=0, session=session, width=3,
                        on_event=events.append)
    assert r.proved, r.trace
    assert r.trace["proof_path"] == ["constructor", "exact h₀", "norm_num"]
    assert r.text == t.formal_statement + "\n  constructor\n  exact h₀\n  norm_num\n"
    failed = [e for e in events if e["kind"] == "tactic" and not e["ok"]]
    assert {e["tactic"] for e in failed} >= {"decide", "bogus_tactic"}
    assert r.lean_calls >= 5  # start + tactic steps + the final verification


def test_tree_without_a_session_uses_the_verifiers_repl_program(verifier):
    backend = ScriptedBackend([("current goals", "constructor <;> norm_num")])
    r = run_attempt(P, "tree", backend, verifier, Budget(samples=4), seed=0, width=1)
    assert r.proved and r.trace["proof_path"] == ["constructor <;> norm_num"]

    class NoPool:
        pass

    with pytest.raises(ProverError, match="proof session"):
        run_attempt(P, "tree", backend, NoPool(), Budget(samples=4), seed=0)


def test_repl_session_replays_a_state_after_a_restart():
    session = open_session("repl", settings=fake_lean_settings())
    try:
        state = session.start(P)
        step = session.run_tactic(state, "constructor")
        assert step.state is not None and len(step.goals) == 2
        session.repl.kill()  # as after a crash: proof-state ids of the old process are gone
        again = session.run_tactic(step.state, "norm_num")
        assert again.error is None and len(again.goals) == 1  # the state was replayed in the new process
    finally:
        session.close()


def test_a_cancelled_tree_search_kills_its_hanging_tactic_and_the_session_stays_usable(verifier):
    """Ctrl-C (or another attempt's proof) cancels a tree search while a tactic hangs in its REPL: the cancel ends
    within about a second, not at the REPL's timeout, and the session's next search restarts Lean and works."""
    import asyncio
    import time

    from prover.runner import AsyncChecker, Engine
    from prover.search import arun_attempt

    backend = ScriptedBackend([("current goals", "fake_hang")])
    session = open_session("repl", settings=fake_lean_settings(timeout_s=30))
    in_lean: list[float] = []

    def on_event(e: dict) -> None:
        if e["kind"] == "expand":  # the next thing the search does is the hanging tactic
            in_lean.append(time.monotonic())

    async def main() -> float:
        task = asyncio.create_task(arun_attempt(P, "tree", Engine(backend), AsyncChecker(verifier), Budget(samples=4),
                                                0, on_event=on_event, session=session, width=1))
        while not in_lean:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # the tactic is inside the fake REPL now, which sleeps forever
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - t0

    try:
        took = run_async(main())
        assert took < 3.0, f"the cancel waited {took:.1f}s for the hanging tactic (the REPL timeout is 30 s)"
        state = session.start(P)  # the killed REPL restarts for the next search
        assert session.run_tactic(state, "constructor").error is None
    finally:
        session.close()


def test_an_interrupted_call_does_not_start_lean_again():
    """`interrupt` ends the whole call in progress, not only its current request: landing between two requests of
    one call (here: after the header's answer, before the statement's), the next request fails instead of starting
    a fresh REPL (which would then run the rest of the call, a hanging tactic included, to the timeout)."""
    from lean_env.errors import LeanError

    class InterruptedAfterTheHeader(Repl):  # a TEST REPL over the fake Lean: the interrupt comes at that moment
        def run_cmd(self, cmd: str, *args, **kwargs):
            answer = super().run_cmd(cmd, *args, **kwargs)
            if cmd == P.header:
                session.interrupt()
            return answer

    repl = InterruptedAfterTheHeader([str(FAKE_LEAN)], timeout_s=30, isolate_network=False)
    session = ReplSession(repl, own_repl=True)
    try:
        with pytest.raises(LeanError, match="interrupted"):
            session.start(P)
        assert not repl.alive and repl.generation == 1  # killed, and not started again
        session.interrupt()  # no call in progress: nothing happens, and the next call is not refused
        assert not repl.alive
        assert Repl.run_cmd(repl, "example : 1 = 1 := rfl").env is not None  # (a plain call: the REPL restarts)
        assert repl.generation == 2
    finally:
        session.close()


def test_unknown_strategy_is_a_user_error(verifier):
    with pytest.raises(ProverError, match="unknown strategy"):
        run_attempt(P, "magic", ScriptedBackend([]), verifier, Budget(), seed=0)


def test_recipe_attempts_run_as_concurrent_tasks_each_with_its_own_seed(verifier, tmp_path):
    from data.store import RunStore
    from prover.runner import Engine, LocalExecutor, WorkUnit, run_units

    backend = ScriptedBackend([("theorem p", ["  exact h₀\n```", "  norm_num\n```", "garbage", "  decide\n```"])])
    recipe = ProveRecipe("sample", {}, None, None, seed=100)
    with RunStore(tmp_path / "run") as store:
        run_id = store.start_run("run", {})
        stats = run_units([WorkUnit(P, i) for i in range(4)], LocalExecutor(recipe, engine=Engine(backend), checker=verifier), store, run_id)
        attempts = store.attempts(run_id)
    assert stats.recorded == 4 and len(backend.calls) == 4 and all(c[2] == 1 for c in backend.calls)
    assert [a.index for a in attempts] == [0, 1, 2, 3]
    assert sorted(a.status for a in attempts) == ["failed", "failed", "proved", "proved"]
    assert [a.seed for a in attempts] == [attempt_seed(100, "p", i) for i in range(4)]  # whatever order they ran in
    assert all(a.completion_tokens > 0 and a.timings["wall_s"] >= 0 for a in attempts)


def test_the_tiny_transformers_model_through_the_same_path(verifier, tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    from prover.generate.hf import TransformersBackend

    backend = TransformersBackend(str(tiny_checkpoint_dir(tmp_path_factory)), device="cpu")
    events = []
    r = run_attempt(P, "sample", backend, verifier, Budget(samples=2), seed=3, on_event=events.append, batch=2,
                    sampling=SamplingParams(max_tokens=24))
    assert r.samples == 2 and r.prompt_tokens > 0 and 0 < r.completion_tokens <= 48
    assert r.model.endswith("prove-tiny-ckpt") and r.timings["gen_s"] > 0
    assert not r.proved  # random weights write no proof; what matters is that every stage ran
    assert [e["kind"] for e in events].count("candidate") == 2


def test_stop_at_first_cancels_and_skips_the_problems_other_attempts(verifier, tmp_path):
    from data.store import RunStore
    from prover.runner import Engine, LocalExecutor, WorkUnit, run_units

    with RunStore(tmp_path / "run") as store:
        run_id = store.start_run("run", {})
        # every attempt proves; two live at a time: the first proof cancels the other and skips the rest
        backend = ScriptedBackend([("theorem p", ["  decide\n```"])])
        recipe = ProveRecipe("sample", {"samples": 2}, seed=0, model_id="the-model-asked-for")
        executor = LocalExecutor(recipe, engine=Engine(backend), checker=verifier, max_live=2)
        stats = run_units([WorkUnit(P, i) for i in range(20)], executor, store, run_id, stop_at_first=True)
        assert stats.recorded + stats.cancelled + stats.skipped_proved == 20
        assert stats.recorded <= 2 and stats.skipped_proved >= 17 and len(backend.calls) <= 3
        attempts = store.attempts(run_id)
        assert attempts[0].status == "proved" and attempts[0].model == "the-model-asked-for"
        again = run_units([WorkUnit(P, i) for i in range(20)], LocalExecutor(recipe, engine=Engine(backend), checker=verifier), store,
                          run_id, stop_at_first=True)
        assert again.recorded == 0 and again.skipped + again.skipped_proved == 20  # resume: proved already


def test_recipe_keeps_one_tree_session_per_process_and_never_pickles_it():
    import pickle

    recipe = ProveRecipe("tree", lean_settings=fake_lean_settings())
    try:
        sessions = recipe.sessions()
        assert recipe.sessions() is sessions

        async def use_twice() -> list[object]:
            got = []
            for _ in range(2):
                async with sessions.session() as s:
                    got.append(s)
            return got

        first, second = run_async(use_twice())
        assert isinstance(first, ReplSession) and first is second and sessions.opened == [first]  # reused
        clone = pickle.loads(pickle.dumps(recipe))
        assert clone._sessions is None and clone.interaction == "repl" and clone.prompts() is not None
    finally:
        recipe.close()
    assert recipe._sessions is None
    with pytest.raises(ProverError, match="unknown interaction"):
        ProveRecipe("tree", interaction="lean3")
