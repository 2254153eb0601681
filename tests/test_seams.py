"""The typed seams between packages: lean_env names a problem by protocol, and data.Problem is one."""

from __future__ import annotations

from data.lean_file import file_problem
from data.problem import Problem
from lean_env.problem import LeanProblem, StatedProblem
from lean_env.text import fill_answers
from lean_env.verifier import Verifier

STATEMENT = "abbrev ans : ℕ := sorry\ntheorem t : ans = 2 := by"


def test_data_problem_and_a_stated_problem_are_lean_problems():
    assert isinstance(Problem("t", STATEMENT), LeanProblem)
    assert isinstance(StatedProblem("t", STATEMENT), LeanProblem)
    assert not isinstance(object(), LeanProblem)


def test_a_lean_files_problem_is_a_data_problem():
    p = file_problem("import Mathlib\n\ndef two := 2\ntheorem t : two = 2 := by\n  rfl\n", "f")
    assert isinstance(p, Problem)
    assert (p.name, p.header) == ("f", "import Mathlib\n\n")
    assert p.formal_statement == "def two := 2\ntheorem t : two = 2 :="


def test_the_verifier_reads_a_data_problem_through_the_protocol():
    p = fill_answers(Problem("t", STATEMENT, extra={"answers": {"ans": {"answer": "2"}}}))
    assert isinstance(p, Problem) and p.formal_statement.startswith("abbrev ans : ℕ := 2")
    prep = Verifier(None).prepare(p, "theorem t : ans = 2 := by\n  rfl\n")
    assert prep.body.startswith("abbrev ans : ℕ := 2") and not prep.reasons  # the verifier placed the answer
