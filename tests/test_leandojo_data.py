"""LeanDojo Benchmark 4 as data: the loader, statements, tactic examples, splits and the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes.leandojo_bench import (
    COMMIT,
    CORPUS,
    FILE,
    SOURCE,
    TWO_GOALS,
    URL,
    _span,
    write_bench,
)

from data.errors import DataError
from data.leandojo import (
    BENCHMARK_DOI,
    load_problems,
    read_corpus,
    read_theorems,
    split_by_premise,
    statement_from_state,
    tactic_examples,
    write_benchmark,
)


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    return write_bench(tmp_path)


# ------------------------------------------------------------------------------------------ loader
def test_reads_the_exact_layout(bench: Path):
    train = read_theorems(bench, "random", "train")
    assert [t.full_name for t in train] == ["Demo.add_comm'", "Demo.and_intro'"]
    rw = train[0].traced_tactics[0]
    assert rw.annotated_tactic == "rw [<a>add_comm</a>]"
    assert [p.full_name for p in rw.premises] == ["add_comm"]
    assert rw.premises[0].def_pos == [10, 1]
    assert train[1].traced_tactics[1].state_before.count("⊢") == 2
    corpus = list(read_corpus(bench))
    assert corpus[1].imports == ["Mathlib/Algebra/Group/Defs.lean"]
    assert corpus[0].premises[0]["full_name"] == "add_comm"


def test_statements_come_from_source_with_their_context(bench: Path):
    problems = {p.name: p for p in load_problems(bench, "random")}
    assert set(problems) == {
        "Demo.add_comm'",
        "Demo.and_intro'",
        "Demo.leaked",
        "Demo.lt_of_succ",
        "Nat.lt_irrefl'",
    }
    p = problems["Demo.add_comm'"]
    assert p.formal_statement == "theorem add_comm' (a b : α) : a + b = b + a := by"
    assert p.extra["statement_origin"] == "source"
    # the header is the file before the theorem, without the theorem's own docstring and attribute
    assert p.header.startswith("import Mathlib.Algebra.Ring.Basic\n")
    assert "namespace Demo" in p.header and "variable {α : Type*} [CommRing α]" in p.header
    assert "/--" not in p.header and "@[simp]" not in p.header
    assert (
        p.extra["prompt_header"]
        == "import Mathlib.Algebra.Ring.Basic\nnamespace Demo\nvariable {α : Type*} [CommRing α]\n"
    )
    assert p.lean_source.endswith("[CommRing α]\n\ntheorem add_comm' (a b : α) : a + b = b + a := by")
    assert p.split == "train" and p.source == "leandojo-benchmark-4/random"
    assert p.extra["file_path"] == FILE and p.extra["commit"] == COMMIT
    # a term-mode proof still yields its statement; the proof term is cut at the top-level :=
    assert (
        problems["Demo.lt_of_succ"].formal_statement
        == "lemma lt_of_succ {n m : ℕ} (h : n.succ ≤ m) : n < m := by"
    )
    assert problems["Demo.lt_of_succ"].split == "val"
    # a span that starts at the docstring (modifiers included) gives the same statement and header
    from data.leandojo import TracedTheorem, statement_from_source

    doc_line = SOURCE.split("\n").index("/-- Addition commutes, in a ring. -/") + 1
    thm = TracedTheorem(URL, COMMIT, FILE, "Demo.add_comm'", [doc_line, 1], _span("add_comm'")[1], [])
    assert statement_from_source(thm, bench / "repos" / "mathlib4") == (p.header, p.formal_statement)


def test_statement_derived_from_state_when_source_is_absent(bench: Path):
    p = next(p for p in load_problems(bench, "novel_premises", "test"))
    assert p.name == "Nat.lt_irrefl'"
    assert p.extra["statement_origin"] == "state_before"
    assert p.formal_statement == "theorem Nat.lt_irrefl' (n_1 : ℕ) :\n    ¬n_1 < n_1 := by"
    assert p.header == "import Mathlib\n\n"


def test_without_checkout_every_statement_is_derived(bench: Path, tmp_path: Path):
    import shutil

    shutil.rmtree(bench / "repos")
    problems = {p.name: p for p in load_problems(bench, "random", "train")}
    p = problems["Demo.add_comm'"]
    assert p.extra["statement_origin"] == "state_before"
    assert (
        p.formal_statement
        == "theorem Demo.add_comm' (α : Type u_1) [CommRing α] (a b : α) :\n    a + b = b + a := by"
    )
    assert "(α : Type u_1)" in statement_from_state("x", "α : Type u_1\n⊢ True")[1]
    assert p.header == "import Mathlib\n\nuniverse u_1\n\n"
    # first goal of a multi-goal state; the `case` tag is not a hypothesis
    _, stmt = statement_from_state("t", TWO_GOALS)
    assert stmt == "theorem t (p q : Prop) (hp : p) (hq : q) :\n    p := by"
    # a let becomes a binder and its equation, as decomposition lemmas write it (one rule)
    assert statement_from_state("t", "x : ℕ := 3\n⊢ x = 3")[1] == "theorem t (x : ℕ) (x_def : x = 3) :\n    x = 3 := by"
    # a term-mode theorem without source has nothing to derive from: skipped, not invented
    assert "Demo.lt_of_succ" not in {p.name for p in load_problems(bench, "random", "val")}


def test_missing_or_bad_benchmark_is_one_clear_error(tmp_path: Path, bench: Path):
    with pytest.raises(DataError, match="10.5281/zenodo.8040109"):
        load_problems(None, "random")
    with pytest.raises(DataError, match="does not exist.*zenodo"):
        load_problems(tmp_path / "nowhere", "random")
    with pytest.raises(DataError, match="unknown LeanDojo split strategy"):
        load_problems(bench, "by_file")
    (bench / "random" / "val.json").write_text('[{"url": "u", "commit": "c"}]')
    with pytest.raises(DataError, match="val.json item 0: theorem lacks the string field 'file_path'"):
        load_problems(bench, "random", "val")
    (bench / "random" / "val.json").write_text("[{")
    with pytest.raises(DataError, match="not valid JSON"):
        load_problems(bench, "random", "val")
    assert BENCHMARK_DOI.startswith("https://doi.org/")


def test_registry_lists_and_loads_the_leandojo_sets(bench: Path, monkeypatch, capsys):
    from data.config import load_config
    from data.registry import load_problems as load_set
    from data.registry import problem_sets

    cfg = load_config(overrides={"leandojo_dir": bench}, environ={})
    sets = {s.name: s for s in problem_sets(cfg)}
    assert sets["leandojo-random"].splits == {"train": 2, "val": 2, "test": 1}
    assert sets["leandojo-novel"].available
    test = load_set("leandojo-novel", cfg, split="test")
    assert [p.name for p in test] == ["Nat.lt_irrefl'"] and test[
        0
    ].source == "leandojo-benchmark-4/novel_premises"
    unset = {s.name: s for s in problem_sets(load_config(environ={}))}
    assert "zenodo.8040109" in unset["leandojo-random"].reason

    from eval.cli import main

    monkeypatch.setenv("SUBGOAL_LEANDOJO_DIR", str(bench))
    monkeypatch.setenv("COLUMNS", "250")
    try:
        main(["data", "list"])
    except SystemExit as e:
        assert e.code in (0, None)
    out = capsys.readouterr().out
    assert "leandojo-random" in out and "leandojo-novel" in out and "train 2, val 2, test 1" in out


# ------------------------------------------------------------------------------------------ examples
def test_tactic_examples_in_the_sft_format(bench: Path):
    from data.sft_dataset import validate_example

    theorems = read_theorems(bench, "random", "train")
    examples = list(tactic_examples(theorems, "random", "train", bench / "repos" / "mathlib4"))
    assert len(examples) == 4
    rw = examples[0]
    assert rw["kind"] == "tactic" and rw["completion"] == "rw [add_comm]"
    assert rw["prompt"] == "[GOAL]\nα : Type u_1\ninst✝ : CommRing α\na b : α\n⊢ a + b = b + a\n[PROOFSTEP]\n"
    assert rw["premises"] == ["add_comm"]
    assert rw["statement"] == "theorem add_comm' (a b : α) : a + b = b + a := by"
    assert rw["problem"] == "Demo.add_comm'" and rw["source"] == "leandojo-benchmark-4/random/train"
    assert examples[2]["prompt"].count("⊢") == 2  # the multi-goal state is kept whole
    for ex in examples:
        assert validate_example(ex)["kind"] == "tactic"


def test_tactic_examples_flow_into_the_dataset_builder_decontaminated(
    bench: Path, tmp_path: Path, shared_dir
):
    from data.decontam import Decontaminator
    from data.leandojo import write_tactic_examples
    from data.sft_dataset import build_sft_dataset, load_sft_dataset, read_examples

    out = tmp_path / "tactics.jsonl"
    n = sum(
        write_tactic_examples(bench, "random", s, out.with_suffix(f".{s}.jsonl")) for s in ("train", "val")
    )
    assert n == 5
    records = read_examples(out.with_suffix(".train.jsonl")) + read_examples(out.with_suffix(".val.jsonl"))
    whole = {
        "prompt": "p",
        "completion": "by simp",
        "kind": "whole_proof",
        "problem": "x",
        "statement": "theorem x : 1 + 1 = 2 := by",
        "source": "run",
    }
    decon = Decontaminator.from_data_dir(shared_dir / "benchmarks")
    report = build_sft_dataset([*records, whole], tmp_path / "sft", decon)
    # Demo.leaked restates miniF2F's amc12a_2015_p10 under another name: its tactic example is removed
    assert [(c["problem"], c["benchmark"], c["name"]) for c in report.contaminated] == [
        ("Demo.leaked", "minif2f", "amc12a_2015_p10")
    ]
    assert report.by_kind == {"tactic": 4, "whole_proof": 1}
    ds = load_sft_dataset(tmp_path / "sft")
    assert "Demo.leaked" not in set(ds["problem"])


def test_tactics_command_writes_prover_template_prompts(bench: Path, tmp_path: Path, capsys):
    from data.sft_dataset import read_examples
    from eval.cli import main

    out = tmp_path / "tactics.jsonl"
    try:
        main(["data", "tactics", "--leandojo-dir", str(bench), "--split", "train", "--out", str(out)])
    except SystemExit as e:
        assert e.code in (0, None), capsys.readouterr().err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 4 and records[0]["premises"] == ["add_comm"]
    first, third = records[0]["prompt"], records[2]["prompt"]
    # the tree-search template: scope header (no earlier declarations), statement, tactics so far, goals
    assert "import Mathlib.Algebra.Ring.Basic\nnamespace Demo\nvariable {α : Type*} [CommRing α]\n" in first
    assert "theorem add_comm' (a b : α) : a + b = b + a := by\n" in first and "⊢ a + b = b + a" in first
    assert "/--" not in first and "# Demo" not in first
    assert "theorem and_intro' (p q : Prop) (hp : p) (hq : q) : p ∧ q := by\n  constructor\n" in third
    assert [r["completion"] for r in read_examples(out)] == [
        "rw [add_comm]",
        "constructor",
        "exact hp",
        "exact hq",
    ]


# ------------------------------------------------------------------------------------------ splitting / writing
def test_write_benchmark_round_trips_and_splits_by_premise(tmp_path: Path, bench: Path):
    theorems = [t for s in ("train", "val", "test") for t in read_theorems(bench, "random", s)]
    novel = split_by_premise(theorems, num_val=1, num_test=1)
    train_premises = {p for t in novel["train"] for p in t.premise_names()}
    for t in novel["val"] + novel["test"]:
        assert set(t.premise_names()) - train_premises, (
            t.full_name
        )  # each held-out theorem needs a novel premise
    counts = write_benchmark(tmp_path / "out", theorems, read_corpus(bench), {"dataset_name": "t"}, 1, 1)
    assert counts["random"] == {"train": 3, "val": 1, "test": 1}
    assert sum(counts["novel_premises"].values()) == 5
    again = [t for s in ("train", "val", "test") for t in read_theorems(tmp_path / "out", "random", s)]
    assert sorted(t.to_json()["full_name"] for t in again) == sorted(t.full_name for t in theorems)
    assert {t.full_name: t.to_json() for t in again} == {t.full_name: t.to_json() for t in theorems}
    assert [c.path for c in read_corpus(tmp_path / "out")] == [c["path"] for c in CORPUS]
    with pytest.raises(DataError, match="already holds a benchmark"):
        write_benchmark(tmp_path / "out", theorems, [], {})
