"""What `subgoal prove TARGET` reads TARGET as (eval/cli/prove_targets.py), through lean_env.text."""

from __future__ import annotations

import pytest

from eval.cli.prove_targets import completed_file_path, statement_problem, target_kind
from prover.errors import ProverError


def test_target_kind(tmp_path):
    assert target_kind("theorem t (a : ℕ) : a = a := by") == "statement"
    assert target_kind("/-- doc -/\n@[simp] lemma l : True := by") == "statement"
    assert target_kind("example : 1 = 1 := by") == "statement"
    assert target_kind("minif2f-test") == "problem_set"
    assert target_kind("theorem.jsonl") == "problem_set"  # one identifier, not the keyword
    assert target_kind("-- theorem t : True") == "problem_set"  # a comment declares nothing
    src = tmp_path / "A.lean"
    src.write_text("theorem t : True := by sorry\n")
    assert target_kind(str(src)) == "lean_file"
    with pytest.raises(ProverError, match="no such file"):
        target_kind(str(tmp_path / "missing.lean"))


def test_statement_problem_ends_in_by_and_names_an_example():
    p = statement_problem("theorem t (a b : ℕ) : a + b = b + a := by sorry", header="")
    assert (p.name, p.formal_statement, p.header) == ("t", "theorem t (a b : ℕ) : a + b = b + a := by", "")
    assert statement_problem("theorem u : True").formal_statement == "theorem u : True := by"
    ex = statement_problem("  example : 2 = 2 := by", name="two")
    assert (ex.name, ex.formal_statement) == ("two", "theorem two : 2 = 2 := by")
    with pytest.raises(ProverError, match="cannot read a theorem name"):
        statement_problem("1 + 1 = 2")


def test_completed_file_path(tmp_path):
    src = tmp_path / "A.lean"
    assert completed_file_path(src, None, False) == tmp_path / "A.proved.lean"
    assert completed_file_path(src, None, True) == src
    with pytest.raises(ProverError, match="--in-place"):
        completed_file_path(src, src, False)
    with pytest.raises(ProverError, match="name different files"):
        completed_file_path(src, tmp_path / "B.lean", True)
