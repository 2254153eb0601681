"""End to end through the CLI with tiny models and the FAKE Lean REPL: `subgoal train sft`, `subgoal train data`,
`subgoal train grpo`, `subgoal iterate` (twice: the second run resumes and does nothing new), `subgoal formalize`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fakes import FAKE_LEAN
from helpers.tiny_models import tiny_llama, word_tokenizer
from helpers.train import TACTICS, write_toy_problems
from typer.testing import CliRunner

from eval.cli import app, main

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def fake_lean(monkeypatch):
    monkeypatch.setenv("SUBGOAL_LEAN__REPL_PATH", str(FAKE_LEAN))
    monkeypatch.setenv("SUBGOAL_LEAN__WORKERS", "1")


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("toy") / "m", word_tokenizer(TACTICS), hidden=32)


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_sft_data_and_grpo_commands(tmp_path, toy_model):
    problems = write_toy_problems(tmp_path / "toy.jsonl", n=2)
    examples = tmp_path / "ex.jsonl"
    examples.write_text("".join(json.dumps({"prompt": f"toy {i}", "completion": "assumption", "kind": "tactic",
                                            "problem": f"toy_{i}", "statement": "", "source": "test"}) + "\n"
                                for i in range(4)))
    ds = tmp_path / "ds"
    out = run("train", "data", "--out", str(ds), "--examples", str(examples), "--near-dup", "1.0")
    assert "examples_out" in out and (ds / "dataset_info.json").is_file()
    run("train", "sft", "--model", str(toy_model), "--data", str(ds), "--out", str(tmp_path / "sft"),
        "--max-steps", "3", "--batch-size", "2", "--lr", "1e-3", "--device", "cpu")
    assert (tmp_path / "sft" / "config.json").is_file()
    out = run("train", "grpo", "--model", str(tmp_path / "sft"), "--problems", str(problems), "--out",
              str(tmp_path / "grpo"), "--steps", "2", "--problems-per-step", "2", "--group-size", "4",
              "--max-tokens", "2", "--lr", "1e-3", "--device", "cpu", "--kl", "0.1")
    assert "final_reward" in out and (tmp_path / "grpo" / "metrics.jsonl").is_file()


def test_iterate_runs_rounds_and_resumes(tmp_path, toy_model):
    problems = write_toy_problems(tmp_path / "toy.jsonl", n=3)
    args = ("iterate", "--problems", str(problems), "--model", str(toy_model), "--rounds", "2", "--out",
            str(tmp_path / "it"), "--attempts", "12", "--max-tokens", "2", "--sft-steps", "4", "--lr", "1e-2",
            "--batch-size", "4", "--device", "cpu", "--backend", "transformers")
    run(*args)
    from data.store import RunStore

    with RunStore(tmp_path / "it") as store:
        loop = store.run_id("iterate")
        rounds = store.get_meta(loop, "rounds")
        assert [r["round"] for r in rounds] == [0, 1]
        assert all(r["attempts"] == 36 for r in rounds)
        first = rounds[0]
        assert first["proved"] >= 1 and first["dataset_size"] >= 1 and first["sft_loss"] is not None
        assert rounds[1]["model"] == first["checkpoint"]  # round 1 proves with round 0's checkpoint
        assert store.get_meta(store.run_id("round-0"), "round") == first
        n_attempts = sum(r.attempts for r in store.runs())
    run(*args)  # resume: every round is done, nothing is repeated
    with RunStore(tmp_path / "it") as store:
        assert sum(r.attempts for r in store.runs()) == n_attempts
        assert len(store.get_meta(store.run_id("iterate"), "rounds")) == 2


def test_formalize_command_with_a_tiny_model(tmp_path):
    from helpers.tiny_models import bpe_tokenizer

    from autoformalize.formalize import DEFAULT_HEADER, load_templates

    # A tiny model taught (by `subgoal train sft`) to answer the formalize prompt with one statement.
    statement = "theorem p1 (a b : ℕ) (h₀ : a + b = 5) (h₁ : a = 2) : b = 3 := by sorry"
    prompt = load_templates()["formalize"].render(informal="a plus b is five, a is two: b is three",
                                                 header=DEFAULT_HEADER)
    tok = bpe_tokenizer([prompt, statement], vocab_size=400)
    base = tiny_llama(tmp_path / "base", tok, hidden=64)
    examples = tmp_path / "ex.jsonl"
    examples.write_text(json.dumps({"prompt": prompt, "completion": f"```lean4\n{statement}\n```",
                                    "kind": "whole_proof", "problem": "p1", "statement": "", "source": "t"}) + "\n")
    run("train", "sft", "--model", str(base), "--data", str(examples), "--out", str(tmp_path / "fm"),
        "--max-steps", "60", "--batch-size", "1", "--lr", "1e-2", "--schedule", "constant", "--device", "cpu",
        "--max-length", "1024")
    informal = tmp_path / "informal.jsonl"
    informal.write_text(json.dumps({"id": "p1", "informal_statement": "a plus b is five, a is two: b is three"})
                        + "\n" + json.dumps({"id": "p2", "informal_statement": "something else entirely"}) + "\n")
    out = tmp_path / "formal.jsonl"
    printed = run("formalize", str(informal), "--out", str(out), "--model", str(tmp_path / "fm"), "--samples", "2",
                  "--temperature", "0", "--max-tokens", "80")
    assert "kept statements" in printed
    report = json.loads((tmp_path / "formal.report.json").read_text())
    assert report["candidates"] == 4 and report["kept"] + sum(report["dropped"].values()) <= 4
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert [k["informal_id"] for k in kept] == ["p1"]
    assert kept[0]["formal_statement"].startswith("theorem p1 (a b : ℕ)")
    assert kept[0]["filters_passed"][:4] == ["compiles", "consistent", "not_refuted", "nontrivial"]


def test_user_errors_are_one_line_exit_2(tmp_path, capsys):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(SystemExit) as e:
        main(["formalize", str(missing), "--out", str(tmp_path / "o.jsonl"), "--model", "x"])
    assert e.value.code == 2 and "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["train", "sft", "--model", "x", "--data", str(missing), "--out", str(tmp_path / "o")])
    assert e.value.code == 2
