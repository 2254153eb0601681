"""DeepSeek-Prover-V2's pipeline end to end, as a user runs it: a planner model (a scripted "large general model"
behind an OpenAI-compatible server) writes the sketch, the prover (another scripted server) proves the lemmas,
the FAKE Lean (tests/fakes/fake_lean.py, not Lean) checks everything. The problem is one the prover alone does not
solve; planner + prover solve it; its cold-start example is built and passes decontamination; its lemmas join
expert iteration's next round; GRPO's consistency reward tells a proof with its lemmas from one without."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fakes import FAKE_LEAN
from fakes.scripted import ScriptedServer
from helpers.prove import HEADER
from helpers.tiny_models import tiny_llama, word_tokenizer
from helpers.train import TACTICS
from typer.testing import CliRunner

from data.store import RunStore
from eval.cli import app

torch.set_num_threads(1)
STATEMENT = "theorem pv2 (a : ℕ) (h₀ : a = 2) : 2 + 3 = 5 ∧ a = 2 := by"
SKETCH = (f"{STATEMENT}\n  have h1 : 2 + 3 = 5 := by sorry\n  have h2 : a = 2 := by sorry\n"
          "  constructor\n  · exact h1\n  · exact h2")
PLAN = ("The claim is a conjunction: an arithmetic fact, and the hypothesis itself. Prove each as a lemma.\n"
        f"```lean4\n{SKETCH}\n```")
SKETCH_ASK = "Do not write the full proof"
PLANNER_RULES = [(SKETCH_ASK, PLAN)]
PROVER_RULES = [
    ("theorem pv2_sub1", "  decide\n```"),  # lemma 1: a closed fact
    ("theorem pv2_sub2", "  exact h₀\n```"),  # lemma 2: the hypothesis
    (SKETCH_ASK, f"Easy.\n```lean4\n{STATEMENT}\n  exact h₀\n```"),  # the prover's own sketch does not compile
    ("theorem pv2 ", ["  exact h₀\n```", "  decide\n```"]),  # and its whole proofs fail
]


@pytest.fixture
def env(monkeypatch, tmp_path):
    for key, value in {"SUBGOAL_LEAN__REPL_PATH": str(FAKE_LEAN), "SUBGOAL_LEAN__WORKERS": "1",
                       "SUBGOAL_RUN_DIR": str(tmp_path / "runs"), "COLUMNS": "200"}.items():
        monkeypatch.setenv(key, value)
    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps({"name": "pv2", "header": HEADER, "formal_statement": STATEMENT,
                                    "split": "train"}) + "\n")
    return problems


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def attempts(run_dir: Path) -> list:
    with RunStore(run_dir) as store:
        return [a for run in store.runs() for a in store.attempts(run.run_id)]


def test_planner_and_prover_solve_what_the_prover_alone_does_not(env, tmp_path, shared_dir):
    problems = env
    with ScriptedServer(PROVER_RULES) as prover, ScriptedServer(PLANNER_RULES) as planner:
        served = ["--backend", "openai", "--base-url", prover.url, "--model", "prover-7b"]
        planned = ["--planner-model", "general-671b", "--planner-base-url", planner.url]
        # 1. the prover alone: whole proofs, and decomposition with its own sketches
        alone = tmp_path / "alone"
        cli("prove", str(problems), "-s", "sample", "-k", "2", "--all-attempts", "--out", str(alone), *served)
        cli("prove", str(problems), "-s", "decompose", "-k", "1", "--budget-samples", "2", "--out", str(tmp_path / "own"),
            *served)
        assert [a.status for a in attempts(alone) + attempts(tmp_path / "own")] == ["failed"] * 3
        assert not planner.requests
        # 2. planner + prover
        both = tmp_path / "both"
        before = len(prover.requests)
        printed = cli("prove", str(problems), "-s", "decompose", "-k", "1", "--lemma-samples", "1", "--out",
                      str(both), *served, *planned)
        assert "planner tokens" in printed
        (att,) = attempts(both)
        assert att.status == "proved", att.trace
        assert "have h1 : 2 + 3 = 5 := by decide" in att.text and "sorry" not in att.text
        node = att.trace["sketches"][0]
        assert node["plan"] == PLAN and node["status"] == "proved"
        # both lemma forms are in the trace: (b) with the earlier step, the one proved; (a) without it
        sub2 = node["subgoals"][1]
        assert "(h1 : 2 + 3 = 5)" in sub2["statement"] and "h1" not in sub2["original_statement"]
        # the planner was asked for the sketch only, the prover for everything else
        assert planner.requests and all(SKETCH_ASK in str(r["prompt"]) for r in planner.requests)
        assert {r["model"] for r in planner.requests} == {"general-671b"}
        asked = prover.requests[before:]
        assert asked and not any(SKETCH_ASK in str(r["prompt"]) for r in asked)
        # the two models' usage, apart
        assert att.timings["planner_completion_tokens"] == len(PLAN.split())
        assert att.timings["planner_prompt_tokens"] > 0 and att.completion_tokens > 0
        assert att.sampling["planner"] == "general-671b"
        from eval.report import build_report

        cost = build_report([att], {})["cost"]  # the run report's cost section
        assert cost["planner_tokens"] == att.timings["planner_prompt_tokens"] + att.timings["planner_completion_tokens"]
        assert cost["tokens"] == att.prompt_tokens + att.completion_tokens

        # 3. its cold-start example, decontaminated against the benchmarks like every kind
        ds = tmp_path / "cold"
        cli("--data-dir", str(shared_dir / "benchmarks"), "train", "data", "--runs", str(alone), "--runs", str(both),
            "--kind", "cold-start", "--out", str(ds))
        built = json.loads((ds / "report.json").read_text())
        assert built["by_kind"] == {"cold_start": 1} and built["contaminated"] == []
        import datasets

        (example,) = datasets.load_from_disk(str(ds)).to_list()
        assert "proof plan" in example["prompt"] and example["completion"].startswith(PLAN)
        assert example["completion"].endswith(f"```lean4\n{att.text.strip()}\n```") and example["problem"] == "pv2"

        # 4. expert iteration with the subgoal curriculum: the lemmas join round 1's pool
        model = tiny_llama(tmp_path / "tiny", word_tokenizer(TACTICS), hidden=16, layers=1)
        it = tmp_path / "it"
        cli("iterate", "--problems", str(problems), "--model", str(model), "--rounds", "2", "--out", str(it),
            "--strategy", "decompose", "--curriculum", "subgoals", "-k", "1", "--sft-steps", "1", "--device", "cpu",
            "--batch-size", "1", "--backend", "openai", "--base-url", prover.url, *planned)
    with RunStore(it) as store:
        rounds = store.get_meta(store.run_id("iterate"), "rounds")
        added = store.get_meta(store.run_id("round-0"), "curriculum")
        round1 = {a.problem for a in store.attempts(store.run_id("round-1"))}
    assert rounds[0]["curriculum"]["added"] == 3 and rounds[0]["curriculum"]["pool"] == 4
    assert sorted((p["form"], p["lemma_status"]) for p in added) == [
        ("original", "unattempted"), ("with_steps", "proved"), ("with_steps", "proved")]
    assert round1 == {"pv2"} | {p["name"] for p in added}
    assert json.loads((it / "round-0" / "dataset" / "report.json").read_text())["by_kind"]["cold_start"] == 1

    # 5. the consistency reward: the cold-start answer keeps its plan's lemmas; the same plan followed by a
    # proof without them (which the FAKE Lean accepts too) scores lower in the first steps of GRPO
    from fakes import fake_lean_settings
    from helpers.train import consistency_scores

    from lean_env import make_verifier

    without = f"{PLAN}\n```lean4\n{STATEMENT}\n  constructor\n  · decide\n  · exact h₀\n```"
    verifier = make_verifier(fake_lean_settings())
    try:
        scores = consistency_scores(tmp_path / "grpo", problems, [example["completion"], without], verifier,
                                    steps=5, step=0)
    finally:
        verifier.close()
    assert scores == ([1.0, 0.5], [True, True])
