"""SFT dataset building from run stores: verified proofs only, near-duplicates dropped, benchmark statements
(planted miniF2F problems) removed by decontamination while unrelated ones are kept, tactic records accepted."""

from __future__ import annotations

import json

import pytest

from data.config import load_config
from data.decontam import Decontaminator, normalize_statement
from data.sft_dataset import NoExamples, dedup_examples, normalize_proof
from data.store import Attempt, RunStore
from prover.train.examples import build_dataset, make_renderer, proof_body

HEADER = "import Mathlib\nimport Aesop\n\nset_option maxHeartbeats 400000\n\nopen BigOperators Real Nat Topology Rat\n\n"
TRAIN = "theorem train_1 (a b : ℕ) (h₀ : a = 2) (h₁ : b = 3) : a + b = 5 := by"
UNRELATED = "theorem train_2 (x y : ℕ) (h₀ : x + y = 10) (h₁ : x = 7) : y = 3 := by"
PLANTED = "theorem mathd_numbertheory_136 (n : ℕ) (h₀ : 123 * n + 17 = 39500) : n = 321 := by"  # miniF2F


def attempt(problem: str, index: int, statement: str, proof: str, status: str = "proved") -> Attempt:
    return Attempt(problem=problem, index=index, text=HEADER + statement + "\n" + proof, status=status,
                   verdict={"status": status}, strategy="sample", model="m0")


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "run"
    with RunStore(path) as store:
        run = store.start_run("r0", {})
        store.record(run, attempt("train_1", 0, TRAIN, "  have hs : a + b = 5 := by omega\n  exact hs\n"))
        # the same proof with another name for its hypothesis, a comment and other layout: a duplicate
        store.record(run, attempt("train_1", 1, TRAIN, "  -- the key step\n  have key : a + b = 5 := by  omega\n"
                                  "  exact key\n"))
        store.record(run, attempt("train_1", 2, TRAIN, "  omega\n"))  # a different proof: kept
        store.record(run, attempt("train_1", 3, TRAIN, "  sorry\n", status="unsound"))
        store.record(run, attempt("train_2", 0, UNRELATED, "  omega\n"))
        store.record(run, attempt("mathd_numbertheory_136", 0, PLANTED, "  omega\n"))
    return path


def test_dataset_from_store_dedups_and_decontaminates(store_path, tmp_path, shared_dir):
    tactic_records = tmp_path / "tactics.jsonl"
    tactic_records.write_text("".join(json.dumps(r) + "\n" for r in [
        {"prompt": "a b : ℕ\n⊢ a + b = b + a", "completion": "omega", "kind": "tactic", "problem": "Nat.add_comm'",
         "statement": "theorem add_comm' (a b : ℕ) : a + b = b + a := by", "source": "leandojo"},
        {"prompt": "n : ℕ\n⊢ n = 321", "completion": "omega", "kind": "tactic", "problem": "leak",
         "statement": PLANTED.replace("mathd_numbertheory_136", "leak"), "source": "leandojo"},
    ]))
    cfg = load_config(overrides={"data_dir": shared_dir / "benchmarks"}, environ={})
    out = tmp_path / "ds"
    report = build_dataset([store_path], out, cfg, examples=[tactic_records])

    import datasets

    ds = datasets.load_from_disk(str(out))
    rows = ds.to_list()
    assert report.examples_in == 7 and report.duplicates == 1 and report.examples_out == 4 == len(rows)
    assert sorted(r["problem"] for r in rows) == ["Nat.add_comm'", "train_1", "train_1", "train_2"]
    removed = {(c["problem"], c["benchmark"], c["name"], c["reason"]) for c in report.contaminated}
    assert removed == {("mathd_numbertheory_136", "minif2f-valid", "mathd_numbertheory_136", "exact"),
                       ("leak", "minif2f-valid", "mathd_numbertheory_136", "exact")}
    saved = json.loads((out / "report.json").read_text())
    assert saved["by_kind"] == {"whole_proof": 3, "tactic": 1}
    # whole-proof examples are in the `complete` prompt format: the completion continues the open code block
    ex = next(r for r in rows if r["problem"] == "train_2")
    assert ex["prompt"].startswith("Complete the following Lean 4 code:") and ex["prompt"].endswith(UNRELATED + "\n")
    assert ex["completion"] == "  omega\n```" and ex["kind"] == "whole_proof"


def test_decontamination_threshold_and_ngram_overlap(shared_dir):
    decon = Decontaminator.from_data_dir(shared_dir / "benchmarks")
    # a miniF2F statement with an extra hypothesis and renamed binders still overlaps by n-grams
    variant = ("theorem foo (b : ℕ) (hb : 0 < b) (hc : 3 * b ^ 2 + 2 * b + 1 = 57) (hx : b < 100) : b = 4 := by")
    hit = decon.check(variant)
    assert hit is not None and hit.name == "mathd_numbertheory_48" and hit.reason == "ngram"
    assert decon.check(UNRELATED) is None
    strict = Decontaminator.from_data_dir(shared_dir / "benchmarks", n=13, threshold=1.0)
    assert strict.check(variant) is None  # the threshold is honoured


def test_normalization_ignores_names_comments_and_layout():
    a = "theorem x (a : ℕ) (h₀ : a = 1) :\n  a + 1 = 2 := by"
    b = "/-- doc -/ theorem other  (z : ℕ)   (hz : z = 1) : z + 1 = 2 := by\n  simp"
    assert normalize_statement(a) == normalize_statement(b)
    assert normalize_statement(a) != normalize_statement(a.replace("= 2", "= 3"))
    assert normalize_proof("intro h\n  exact h -- done") == normalize_proof("intro hyp\n exact hyp")
    kept, removed = dedup_examples([
        {"prompt": "p", "completion": "  nlinarith [sq_nonneg (a - b), sq_nonneg (a + b), h₀, h₁]", "kind": "whole_proof"},
        {"prompt": "p", "completion": "  nlinarith [sq_nonneg (a - b), sq_nonneg (a + b), h₀, h₁, h₂]", "kind": "whole_proof"},
        {"prompt": "p", "completion": "  omega", "kind": "whole_proof"},
    ], jaccard=0.7)
    assert len(kept) == 2 and removed[0]["reason"] == "near-duplicate"


def test_renderer_reads_decomposition_and_repair_traces():
    render = make_renderer()
    lemma = "theorem h (a b : ℕ) (h₀ : a = 2) (h₁ : b = 3) : a + b = 5 := by"
    att = attempt("train_1", 0, TRAIN, "  have h : a + b = 5 := by omega\n  exact h\n")
    att.strategy = "decompose"
    att.trace = {"problem": "train_1", "statement": TRAIN, "sketches": [
        {"sketch": "broken", "status": "does_not_compile", "subgoals": []},
        {"sketch": TRAIN + "\n  have h : a + b = 5 := by sorry\n  exact h", "status": "proved",
         "subgoals": [{"name": "h", "statement": lemma, "status": "proved", "via": "sample",
                       "proof": lemma + "\n  omega\n", "trace": {}}]}]}
    examples = render(att)
    assert [e["kind"] for e in examples] == ["whole_proof", "sketch", "lemma"]
    assert examples[2]["prompt"].endswith(lemma + "\n") and examples[2]["completion"] == "  omega\n```"
    assert {e["statement"] for e in examples} == {TRAIN}  # decontamination sees the original problem
    fixed = attempt("train_1", 1, TRAIN, "  omega\n")
    fixed.trace = {"mode": "complete", "rounds": 3, "chains": [[
        {"kind": "complete", "status": "failed", "text": TRAIN + "\n  rfl", "errors": ["rfl failed"]},
        {"kind": "repair", "status": "proved", "text": TRAIN + "\n  omega", "errors": []}]]}
    rep = [e for e in render(fixed) if e["kind"] == "repair"]
    assert len(rep) == 1 and "rfl failed" in rep[0]["prompt"] and rep[0]["completion"] == "  omega\n```"
    assert proof_body("theorem t : 1 = 1 := by rfl") == "  rfl\n"


def decomposed(problem: str, index: int, statement: str) -> Attempt:
    """A verified decompose attempt: the planner's analysis + sketch, one proved lemma, the composed proof."""
    sketch = statement + "\n  have h : a + b = 5 := by sorry\n  exact h"
    composed = statement + "\n  have h : a + b = 5 := by omega\n  exact h"
    att = attempt(problem, index, statement, "  have h : a + b = 5 := by omega\n  exact h\n")
    att.strategy = "decompose"
    att.trace = {"problem": problem, "sketches": [{
        "sketch": sketch, "plan": f"Add the two values.\n```lean4\n{sketch}\n```", "status": "proved",
        "subgoals": [{"name": f"{problem}_sub1", "status": "proved", "statement": "", "proof": ""}],
        "recomposed": {"text": composed, "status": "proved", "errors": []}}]}
    return att


def test_cold_start_examples_only_for_problems_not_solved_end_to_end(tmp_path, shared_dir):
    path = tmp_path / "run"
    with RunStore(path) as store:
        run = store.start_run("r0", {})
        store.record(run, decomposed("train_1", 0, TRAIN))  # only decomposition solved it: cold-start
        store.record(run, decomposed("train_2", 0, TRAIN.replace("train_1", "train_2")))
        store.record(run, attempt("train_2", 1, TRAIN.replace("train_1", "train_2"), "  omega\n"))  # end to end
        store.record(run, decomposed("mathd_numbertheory_136", 0, PLANTED))
    cfg = load_config(overrides={"data_dir": shared_dir / "benchmarks"}, environ={})
    report = build_dataset([path], tmp_path / "ds", cfg, kinds=["cold-start"])
    import datasets

    rows = datasets.load_from_disk(str(tmp_path / "ds")).to_list()
    assert [r["problem"] for r in rows] == ["train_1"] and report.by_kind == {"cold_start": 1}
    assert [c["problem"] for c in report.contaminated] == ["mathd_numbertheory_136"]
    ex = rows[0]
    assert ex["prompt"].startswith("Complete the following Lean 4 code:") and "proof plan" in ex["prompt"]  # cot
    assert ex["completion"].startswith("Add the two values.\n```lean4\n" + TRAIN + "\n  have h : a + b = 5 := by sorry")
    assert ex["completion"].endswith("```lean4\n" + TRAIN + "\n  have h : a + b = 5 := by omega\n  exact h\n```")
    with pytest.raises(NoExamples, match="no cold_start examples"):
        build_dataset([tmp_path / "run"], tmp_path / "ds2", cfg, kinds=["cold-start"], runs=["none"])
