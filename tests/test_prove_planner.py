"""Decomposition with a separate planner: sketches (rendered with the planner's chat template) go to the planner,
lemmas to the prover, usage is counted per model, lemma decompositions ask the planner again, and on the
streaming runner the sketches of many problems are with the planner at once. Backends are scripted TEST
doubles; Lean is the FAKE Lean of tests/fakes/fake_lean.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from fakes import fake_lean_settings
from fakes.scripted import ScriptedBackend
from helpers.prove import HEADER

from data.problem import Problem
from data.store import RunStore
from lean_env import make_verifier
from prover.generate.base import Completion
from prover.recipe import ProveRecipe
from prover.runner import LocalExecutor, WorkUnit, run_units
from prover.search import Budget, run_attempt

SKETCH_ASK = "Do not write the full proof"
PROVER_RULES = [("_sub1", "  decide\n```"), ("_sub2", "  exact h₀\n```"), ("", "  exact h₀\n```")]


def problem(i: int) -> Problem:
    return Problem(f"pv{i}", f"theorem pv{i} (a : ℕ) (h₀ : a = {i}) : 2 + 3 = 5 ∧ a = {i} := by", header=HEADER)


def sketch_for(prompt: str) -> str:
    """The planner's answer for the problem named in the prompt: an analysis, then a two-lemma sketch."""
    i = int(prompt.split("theorem pv", 1)[1].split()[0])
    statement = problem(i).formal_statement
    return (f"Split the conjunction.\n```lean4\n{statement}\n  have h1 : 2 + 3 = 5 := by sorry\n"
            f"  have h2 : a = {i} := by sorry\n  constructor\n  · exact h1\n  · exact h2\n```")


@pytest.fixture(scope="module")
def verifier():
    v = make_verifier(fake_lean_settings(workers=2))
    yield v
    v.close()


class ChatScripted(ScriptedBackend):
    """A scripted TEST backend with a chat template of its own (a tag around the user turn)."""

    def __init__(self, rules, tag: str):
        super().__init__(rules)
        self.tag = tag
        self.model_id = f"scripted-{tag}"

    def format_chat(self, text: str) -> str:
        return f"<{self.tag}>{text}</{self.tag}>"


def test_sketches_go_to_the_planner_and_usage_is_counted_per_model(verifier):
    prover = ChatScripted(PROVER_RULES, "prover")
    planner = ChatScripted([(SKETCH_ASK, [sketch_for("theorem pv2 ")])], "planner")
    r = run_attempt(problem(2), "decompose", prover, verifier, Budget(samples=8), seed=0, planner=planner,
                    lemma_samples=1)
    assert r.proved, r.trace
    planner_prompts = [p for prompts, _, _ in planner.calls for p in prompts]
    prover_prompts = [p for prompts, _, _ in prover.calls for p in prompts]
    assert planner_prompts and all(p.startswith("<planner>") and SKETCH_ASK in p for p in planner_prompts)
    assert prover_prompts and not any(SKETCH_ASK in p for p in prover_prompts)
    assert r.timings["planner_prompt_tokens"] == sum(len(p) // 4 for p in planner_prompts)
    assert r.prompt_tokens == sum(len(p) // 4 for p in prover_prompts)  # the prover's own, nothing of the planner
    assert r.samples == len(planner_prompts) + len(prover_prompts)  # the budget counts both models
    assert r.sampling["planner"] == "scripted-planner" and r.model == "scripted-prover"


def test_a_lemma_that_sampling_cannot_prove_is_decomposed_by_the_planner_too(verifier):
    hard_lemma = ("  have h1 : 2 + 3 = 5 := by sorry\n  have h2 : a = 2 := by sorry\n"
                  "  constructor\n  · exact h1\n  · exact h2")
    outer = (f"First the whole claim.\n```lean4\n{problem(2).formal_statement}\n  have h : 2 + 3 = 5 ∧ a = 2 := by "
             "sorry\n  exact h\n```")
    inner = f"Now the conjunction.\n```lean4\ntheorem pv2_sub1 (a : ℕ) (h₀ : a = 2) :\n    2 + 3 = 5 ∧ a = 2 := by\n{hard_lemma}\n```"
    planner = ScriptedBackend([((SKETCH_ASK, "theorem pv2_sub1"), inner), (SKETCH_ASK, outer)])
    prover = ScriptedBackend([("theorem pv2_sub1_sub1", "  decide\n```"), ("theorem pv2_sub1_sub2", "  exact h₀\n```"),
                              ("", "  exact h₀\n```")])  # whole-lemma samples fail: `exact h₀` is not a ∧
    r = run_attempt(problem(2), "decompose", prover, verifier, Budget(samples=30), seed=0, planner=planner,
                    lemma_samples=1, max_depth=2)
    assert r.proved, r.trace
    sub = r.trace["sketches"][0]["subgoals"][0]
    assert sub["via"] == "decompose" and sub["trace"]["decompose"]["sketches"][0]["plan"] == inner
    assert len(planner.calls) == 2  # the problem's sketch and the lemma's


class SlowPlanner:
    """TEST double of a planner server that answers many requests at once (a StreamingBackend): each answer
    takes 0.2 s, and it records how many requests it held at the same time."""

    model_id = "slow-planner"
    max_in_flight = 16

    def __init__(self) -> None:
        self.live = self.peak = self.requests = 0

    async def agenerate(self, prompt, params, n=1):
        self.live += 1
        self.requests += 1
        self.peak = max(self.peak, self.live)
        try:
            await asyncio.sleep(0.2)
            text = sketch_for(str(prompt))
            return [Completion(text, 10, len(text.split())) for _ in range(n)]
        finally:
            self.live -= 1

    def close(self) -> None:
        pass


@dataclass
class PlannedRecipe(ProveRecipe):
    """The production recipe with scripted models: `make_planner` is called once per process."""

    def make_generator(self) -> ScriptedBackend:
        return ScriptedBackend(PROVER_RULES)

    def make_planner(self) -> SlowPlanner:
        PLANNERS.append(SlowPlanner())
        return PLANNERS[-1]


PLANNERS: list[SlowPlanner] = []


def test_the_sketches_of_many_problems_are_with_the_planner_at_once(verifier, tmp_path):
    PLANNERS.clear()
    recipe = PlannedRecipe(strategy="decompose", budget={"samples": 8}, options={"lemma_samples": 1})
    problems = [problem(i) for i in range(4)]
    with RunStore(tmp_path / "run") as store:
        run_id = store.start_run("planned", {})
        executor = LocalExecutor(recipe, checker=verifier)
        try:
            run_units([WorkUnit(p, 0) for p in problems], executor, store, run_id)
        finally:
            executor.close()
        attempts = store.attempts(run_id)
    assert sorted(a.problem for a in attempts if a.status == "proved") == [p.name for p in problems]
    (planner,) = PLANNERS  # one planner engine for the whole run
    assert planner.requests == 4 and planner.peak >= 2  # sketches of several problems in flight together
    assert all(a.timings["planner_completion_tokens"] > 0 for a in attempts)
