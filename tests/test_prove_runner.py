"""The streaming runner (`prover.runner`): attempts of different problems interleave for every strategy, the
engine's in-flight bound holds, budgets hold while waiting, stop-at-first cancels, and resumed runs refuse
changed settings (prove and eval in tests/test_prove_cli.py and test_eval_e2e.py; iterate's run manifest in
tests/test_train_cli.py).

Generation is `SlowStreamingBackend` (a TEST backend that takes `delay_s` per request); Lean is
tests/fakes/fake_lean.py (a FAKE Lean) behind the real Verifier."""

from __future__ import annotations

import time

import pytest
from fakes import fake_lean_settings
from fakes.scripted import SlowStreamingBackend
from helpers.prove import HEADER

from data.problem import Problem
from data.store import RunStore
from lean_env import make_verifier
from prover.recipe import ProveRecipe, SettingsChanged, check_resume
from prover.runner import Engine, LocalExecutor, WorkUnit, run_async, run_units
from prover.search import Budget, arun_attempt


@pytest.fixture(scope="module")
def verifier():
    v = make_verifier(fake_lean_settings(workers=2))
    yield v
    v.close()


def problems(n: int) -> list[Problem]:
    return [Problem(f"q{i}", f"theorem q{i} (h₀ : 2 + 2 = 4) : 2 + 3 = 5 ∧ 1 < 2 := by", header=HEADER, split="t")
            for i in range(n)]


class EventRecipe(ProveRecipe):
    """The production recipe, recording every search event of every attempt in one list (in the order the event
    loop produced them)."""

    events: list[dict] = []

    async def arun(self, engine, checker, problem, index, on_event=None):
        return await super().arun(engine, checker, problem, index, EventRecipe.events.append)


def run_recipe(recipe: ProveRecipe, backend, verifier, tmp_path, units: list[WorkUnit], **kw):
    EventRecipe.events = []
    with RunStore(tmp_path / "run") as store:
        run_id = store.start_run("run", {})
        stats = run_units(units, LocalExecutor(recipe, engine=Engine(backend), checker=verifier, **kw), store,
                          run_id)
        return stats, store.attempts(run_id)


def overlapping(events: list[dict]) -> bool:
    """Every problem's attempt started before any attempt finished: their searches ran at the same time."""
    kinds = [(e["kind"], e["problem"]) for e in events if e["depth"] == 0]
    first_done = next(i for i, (k, _) in enumerate(kinds) if k == "done")
    started = {p for k, p in kinds[:first_done] if k == "start"}
    return started == {p for _, p in kinds}


def test_repair_chains_of_different_problems_interleave(verifier, tmp_path):
    backend = SlowStreamingBackend([
        (("does not compile", "type mismatch"), "  constructor\n  · norm_num\n  · decide\n```"),
        ("theorem q", "  exact h₀\n```"),  # the first sample of every chain fails; its repair proves
    ], delay_s=0.05)
    recipe = EventRecipe("repair", {"samples": 4}, seed=0, options={"rounds": 2})
    stats, attempts = run_recipe(recipe, backend, verifier, tmp_path, [WorkUnit(p, 0) for p in problems(4)])
    assert stats.recorded == 4 and all(a.status == "proved" for a in attempts)
    assert overlapping(EventRecipe.events)
    # while the first problem's repair request was out, the other problems' first samples were out as well
    starts = [prompt for what, prompt in backend.log if what == "start"]
    first_repair = next(i for i, p in enumerate(starts) if "type mismatch" in p)
    assert first_repair >= 3 and {p for p in starts[:4] if "type mismatch" not in p}


def test_decompose_lemmas_and_problems_are_tasks_together(verifier, tmp_path):
    sketch = ("```lean4\ntheorem {n} (h₀ : 2 + 2 = 4) : 2 + 3 = 5 ∧ 1 < 2 := by\n  have h1 : 2 + 3 = 5 := by sorry\n"
              "  have h2 : 1 < 2 := by sorry\n  constructor\n  · norm_num\n  · decide\n```")
    rules = [(("Do not write the full proof", f"theorem q{i}"), sketch.format(n=f"q{i}")) for i in range(3)]
    rules += [("_sub1", "  norm_num\n```"), ("_sub2", "  decide\n```")]
    backend = SlowStreamingBackend(rules, delay_s=0.05)
    recipe = EventRecipe("decompose", {"samples": 12}, seed=0, options={"lemma_samples": 1, "max_depth": 1})
    stats, attempts = run_recipe(recipe, backend, verifier, tmp_path, [WorkUnit(p, 0) for p in problems(3)])
    assert stats.recorded == 3 and all(a.status == "proved" for a in attempts), [a.verdict for a in attempts]
    assert overlapping(EventRecipe.events)
    # a sketch's two lemmas were with the engine at the same time (one task each)
    log = [(what, "sub1" if "_sub1" in p else "sub2" if "_sub2" in p else "") for what, p in backend.log]
    lemma_log = [x for x in log if x[1]]
    assert lemma_log.index(("start", "sub2")) < lemma_log.index(("end", "sub1"))


def test_tree_searches_of_different_problems_interleave(tmp_path):
    verifier = make_verifier(fake_lean_settings(workers=3))
    try:
        backend = SlowStreamingBackend([("current goals", ["constructor <;> norm_num"])], delay_s=0.05)
        recipe = EventRecipe("tree", {"samples": 8}, seed=0, lean_settings=fake_lean_settings(workers=3),
                             options={"width": 1})
        try:
            stats, attempts = run_recipe(recipe, backend, verifier, tmp_path, [WorkUnit(p, 0) for p in problems(3)])
        finally:
            recipe.close()
        assert stats.recorded == 3 and all(a.status == "proved" for a in attempts)
        assert overlapping(EventRecipe.events)
        assert len(recipe.sessions().opened) == 0  # closed with the recipe
    finally:
        verifier.close()


def test_the_engine_never_holds_more_than_its_bound(verifier, tmp_path):
    backend = SlowStreamingBackend([("theorem q", "  decide\n```")], delay_s=0.02, max_in_flight=3)
    seen: list[int] = []
    engine = Engine(backend)
    real = backend.agenerate

    async def counting(prompt, params, n=1):
        seen.append(engine.in_flight)
        return await real(prompt, params, n)

    backend.agenerate = counting
    recipe = ProveRecipe("sample", {}, seed=0)
    with RunStore(tmp_path / "run") as store:
        run_id = store.start_run("run", {})
        stats = run_units([WorkUnit(p, i) for i in range(5) for p in problems(4)],
                          LocalExecutor(recipe, engine=engine, checker=verifier), store, run_id)
    assert stats.recorded == 20 and max(seen) == 3  # full, never over


def test_the_wall_budget_holds_while_a_generation_is_out(verifier):
    from prover.runner import AsyncChecker

    backend = SlowStreamingBackend([("theorem q", "  decide\n```")], delay_s=5.0)
    checker = AsyncChecker(verifier)
    t0 = time.monotonic()
    try:
        r = run_async(arun_attempt(problems(1)[0], "sample", Engine(backend), checker, Budget(samples=4, wall_s=0.3),
                                   seed=0))
    finally:
        checker.close()
    assert time.monotonic() - t0 < 2.0  # not the 5 s the generation would take
    assert not r.proved and r.stopped == "wall_s"


def test_resume_check_names_every_changed_setting():
    recorded = {"strategy": "sample", "seed": 0, "sampling": {"max_tokens": 4096}, "budget": {"samples": 1}}
    check_resume(recorded, dict(recorded), "runs/x")  # the same settings: fine
    with pytest.raises(SettingsChanged) as e:
        check_resume(recorded, {**recorded, "seed": 1, "strategy": "repair"}, "runs/x")
    assert "strategy='sample', not 'repair'" in str(e.value) and "seed=0, not 1" in str(e.value)


def test_an_attempts_error_ends_the_run_after_what_finished_with_it_is_recorded(tmp_path):
    """An attempt that raises ends the run with its error; the attempts that finished in the same moment are in
    the store all the same (a resume does not redo them)."""
    import asyncio

    from data.store import Attempt

    class Executor:  # a TEST executor: attempt 0 of each problem answers, attempt 1 raises, both at once
        def capacity(self) -> int:
            return 4

        async def run(self, unit: WorkUnit) -> Attempt:
            await asyncio.sleep(0)
            if unit.index == 1:
                raise RuntimeError(f"backend broke on {unit.problem.name}")
            return Attempt(problem=unit.problem.name, index=unit.index, text="t", status="failed", verdict={})

    with RunStore(tmp_path / "run") as store:
        run_id = store.start_run("run", {})
        with pytest.raises(RuntimeError, match="backend broke"):
            run_units([WorkUnit(p, i) for p in problems(2) for i in range(2)], Executor(), store, run_id)
        assert set(store.done(run_id)) == {("q0", 0), ("q1", 0)}


class AnswerOnCue:
    """A TEST executor: q0's attempt answers (proved) once `answer` is set, q1's never does; with `slow_to_stop`,
    q1, cancelled, takes its time to stop (a tree search's tactic still running in its REPL) until cancelled
    again."""

    def __init__(self, slow_to_stop: bool = False):
        import asyncio

        self.answer, self.slow_to_stop = asyncio.Event(), slow_to_stop

    def capacity(self) -> int:
        return 2

    async def run(self, unit: WorkUnit):
        import asyncio

        from data.store import Attempt

        if unit.problem.name == "q1":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if self.slow_to_stop:
                    await asyncio.sleep(60)
                raise
        await self.answer.wait()
        return Attempt(problem=unit.problem.name, index=unit.index, text="t", status="proved", verdict={})


def recorded_after_interrupts(tmp_path, executor: AnswerOnCue, interrupts: int) -> set[tuple[str, int]]:
    """Drive q0 and q1 with `executor`, interrupt (cancel the driver) in the moment q0 answers, and again
    `interrupts - 1` times while the driver waits for q1 to stop; the keys in the store afterwards."""
    import asyncio

    from prover.runner import drive

    async def main(store: RunStore, run_id: int) -> None:
        run = asyncio.create_task(drive([WorkUnit(p, 0) for p in problems(2)], executor, store, run_id))
        for _ in range(5):
            await asyncio.sleep(0)  # both attempts are waiting
        executor.answer.set()
        for _ in range(interrupts):
            run.cancel()  # the first lands before the driver has seen the answer
            for _ in range(5):
                await asyncio.sleep(0)
        with pytest.raises(asyncio.CancelledError):
            await run

    with RunStore(tmp_path / "run") as store:
        run_id = store.start_run("run", {})
        run_async(main(store, run_id))
        return set(store.done(run_id))


def test_an_attempt_finished_as_the_run_is_interrupted_is_recorded(tmp_path):
    """Ctrl-C (the driver cancelled) in the same moment as an attempt finishes: that attempt is in the store (it
    finished; only the ones in flight may be lost), and the run still ends cancelled."""
    assert recorded_after_interrupts(tmp_path, AnswerOnCue(), interrupts=1) == {("q0", 0)}


def test_a_second_interrupt_while_attempts_wind_down_still_records_what_finished(tmp_path):
    """Ctrl-C twice: the first cancels the attempts, one of which takes its time to stop; the second must not
    drop the attempt that had already finished."""
    assert recorded_after_interrupts(tmp_path, AnswerOnCue(slow_to_stop=True), interrupts=2) == {("q0", 0)}


def test_a_session_still_opening_when_its_tree_attempt_is_cancelled_is_kept_and_closed():
    """A tree attempt cancelled (stop-at-first, Ctrl-C) while its REPL session is still opening (Mathlib's import
    takes seconds): the session that then opens is the pool's, reused and closed with it, not a REPL process
    nobody holds."""
    import asyncio
    import threading

    from prover.runner import SessionPool

    opening = threading.Event()

    class Session:  # a TEST session: records whether it was closed
        closed = False

        def close(self) -> None:
            self.closed = True

    made: list[Session] = []

    def open_session() -> Session:
        opening.wait(5)  # the REPL still importing when the cancel comes
        made.append(Session())
        return made[-1]

    pool = SessionPool(open_session, size=1)

    async def search() -> None:
        async with pool.session():
            pass

    async def main() -> None:
        task = asyncio.create_task(search())
        await asyncio.sleep(0.05)
        task.cancel()
        opening.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        await search()  # the next attempt gets the session that opened, not a second one

    run_async(main())
    assert len(made) == 1 and pool.opened == made
    pool.close()
    assert made[0].closed
