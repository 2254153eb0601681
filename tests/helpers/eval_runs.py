"""The two `subgoal eval` runs that test_eval_e2e.py runs in one process and test_eval_ray.py on Ray: miniF2F with a tiny random model, and a fragment the FAKE Lean checks with a scripted backend (a stand-in for a model, wired in by a `ProveRecipe` subclass)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakes import FAKE_LEAN

from data.config import load_config
from data.store import RunStore
from eval.harness import EvalSpec, run_eval
from eval.metrics import pass_at_k
from helpers.cli import cli
from prover.generate.base import Completion, derive_seed
from prover.recipe import ProveRecipe
from prover.search import attempt_seed


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    import torch

    torch.set_num_threads(1)
    from prover.model.testing import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def fake_lean_env(monkeypatch):
    """The fake REPL wired in the way a user wires a real one: SUBGOAL_LEAN__REPL_PATH."""
    monkeypatch.setenv("SUBGOAL_LEAN__REPL_PATH", str(FAKE_LEAN))
    monkeypatch.setenv("SUBGOAL_LEAN__WORKERS", "1")
    monkeypatch.setenv("SUBGOAL_LEAN__TIMEOUT_S", "60")


def stored(out: Path) -> tuple[dict, list]:
    """(the run's recorded eval settings, its attempts), read back from the store."""
    from eval.harness import CONFIG_META

    with RunStore(out, create=False) as store:
        info = store.runs()[-1]
        return store.get_meta(info.id, CONFIG_META) or info.config, store.attempts(info.id)


def minif2f_cli(tiny_model: Path, out: Path, *extra: str) -> int:
    return cli("eval", "minif2f-test", "--model", str(tiny_model), "--backend", "transformers", "-k", "2",
               "--limit", "4", "--budget-tokens", "16", "--budget-samples", "1", "--out", str(out), *extra)


def check_minif2f_run(out: Path, tiny_model: Path) -> dict:
    config, attempts = stored(out)
    assert sorted({(a.problem, a.index) for a in attempts}) == sorted((a.problem, a.index) for a in attempts)
    assert len(attempts) == 8 and len({a.problem for a in attempts}) == 4
    assert {a.index for a in attempts} == {0, 1}
    assert all(a.status != "proved" for a in attempts)  # outside the fake's fragment: nothing is proved
    assert all(a.model for a in attempts) and all(a.split == "test" for a in attempts)
    assert config["model"] == str(tiny_model) and config["problem_set"] == "minif2f-test"
    assert config["strategy"] == "sample" and config["budget"]["tokens"] == 16 and config["budget"]["samples"] == 1
    assert config["versions"]["torch"] and config["date"]
    report = json.loads((out / "report.json").read_text())
    assert report["complete"] and report["overall"]["problems"] == 4
    assert report["overall"]["pass_at_k"]["1"]["value"] == 0.0 and report["overall"]["pass_at_k"]["2"]["value"] == 0.0
    assert report["cost"]["attempts"] == 8 and report["cost"]["completion_tokens"] > 0
    assert report["cost"]["wall_s"] > 0
    return report


FRAGMENT = [
    # name, statement, which attempt indices get a correct proof (the others hand in `sorry`)
    ("two_add_three", "theorem two_add_three : 2 + 3 = 5 := by", {1, 3}),
    ("mul_comm_small", "theorem mul_comm_small (a b : ℕ) (h : a = 2) (hb : b = 3) : a * b = b * a := by", set()),
    ("lt_chain", "theorem lt_chain : 3 < 7 ∧ 7 < 9 := by", {0, 1, 2, 3}),
]


PROOFS = {"two_add_three": "decide", "mul_comm_small": "sorry", "lt_chain": "decide"}


PROMPT_MARK = "-- prompt from the --prompts file"


def _first_index(name: str, call_seed: int | None) -> int:
    """The attempt index whose first generation call is seeded `call_seed` (run seed 0)."""
    return next(g for g in range(64) if derive_seed(attempt_seed(0, name, g), 0) == call_seed)


class ScriptedBackend:
    """A stand-in for a model (tests only): answers each prompt with a fixed proof chosen by theorem name and
    by the attempt index its sampling seed encodes (the first generation call of attempt g of run seed 0 is
    seeded derive_seed(attempt_seed(0, name, g), 0); sample j of a group drawn together in that call is attempt
    g + j), so results do not depend on
    which process or in which order the groups run."""

    model_id = "scripted-test-backend"
    calls: list[tuple[int, bool]] = []  # (samples, custom prompt?) of every call in this process

    def generate(self, prompts, params, n=1):
        ScriptedBackend.calls.append((n * len(prompts), all(PROMPT_MARK in str(p) for p in prompts)))
        out = []
        for prompt in prompts:
            text = prompt if isinstance(prompt, str) else json.dumps(prompt)
            name = next(name for name, _, _ in FRAGMENT if f"theorem {name}" in text)
            statement, good = next((s, g) for nm, s, g in FRAGMENT if nm == name)
            completions = []
            for j in range(n):
                index = _first_index(name, params.seed) + j
                tactic = PROOFS[name] if index in good else "sorry"
                completions.append(Completion(text=f"```lean4\n{statement}\n  {tactic}\n```", prompt_tokens=20,
                                              completion_tokens=10))
            out.append(completions)
        return out

    def close(self):
        pass


@dataclass
class ScriptedRecipe(ProveRecipe):
    def check_generator(self) -> None:
        pass  # the scripted backend below needs no model
    """The production recipe with the scripted backend as its generator (pickles to Ray actors by name)."""

    def make_generator(self) -> ScriptedBackend:
        return ScriptedBackend()


@pytest.fixture
def fragment_jsonl(tmp_path) -> Path:
    path = tmp_path / "fragment.jsonl"
    path.write_text("".join(json.dumps({"name": n, "split": "test", "formal_statement": s}) + "\n"
                            for n, s, _ in FRAGMENT))
    return path


def _expected(k: int) -> float:
    return sum(pass_at_k(4, len(good), k) for _, _, good in FRAGMENT) / len(FRAGMENT)


def check_scripted_fragment_run(fragment_jsonl: Path, out: Path, ray: bool) -> None:
    prompts = out.parent / "prompts.toml"
    prompts.parent.mkdir(parents=True, exist_ok=True)
    prompts.write_text(f'[complete]\ntemplate = """{PROMPT_MARK}\n```lean4\n{{header}}{{statement}}\n"""\n')
    spec = EvalSpec(problem_set=str(fragment_jsonl), out=out, k=4, samples=4, budget={"samples": 1},
                    model="scripted-model-id", ray=ray, workers=2, prompts=str(prompts))
    ScriptedBackend.calls.clear()
    result = run_eval(spec, load_config(), recipe_type=ScriptedRecipe, progress=False)
    _, attempts = stored(out)
    assert len(attempts) == 12
    assert all(a.model == "scripted-model-id" for a in attempts)  # the id the user asked for is recorded
    if not ray:  # every attempt its own one-sample request to the shared engine (on Ray: in the actors)
        assert ScriptedBackend.calls == [(1, True)] * 12
    by_key = {(a.problem, a.index): a for a in attempts}
    for name, _, good in FRAGMENT:
        for i in range(4):
            a = by_key[(name, i)]
            assert (a.status == "proved") == (i in good), (name, i, a.status, a.verdict.get("reasons"))
            if i not in good:
                assert a.status == "unsound" or re.search("sorry", json.dumps(a.verdict)), a.verdict
    table = result.report["overall"]["pass_at_k"]
    for k in (1, 2, 3, 4):
        assert table[str(k)]["value"] == pytest.approx(_expected(k))
    assert result.report["overall"]["solved"] == 2
    assert result.report["cost"]["completion_tokens"] > 0
    assert json.loads((out / "report.json").read_text())["overall"]["solved"] == 2
