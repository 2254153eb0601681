"""Decomposition as text (lean_env.decompose): DeepSeek-Prover-V2-style sketches -> lemmas -> substituted back.
Goals are written the way the Lean REPL prints them (unicode, multi-line hypotheses, inaccessible names)."""

from __future__ import annotations

import pytest

from lean_env.decompose import (
    decompose,
    have_steps,
    lemma_statement,
    parse_goal,
    sorry_offsets,
    substitute,
    tactic_body,
)
from lean_env.verdict import Pos, Sorry

SKETCH = """theorem mathd_algebra_478 (b h v : ℝ) (h₀ : 0 < b ∧ 0 < h ∧ 0 < v) (h₁ : v = 1 / 3 * (b * h))
    (h₂ : b = 30) (h₃ : h = 13 / 2) : v = 65 := by
  -- the area formula, then arithmetic (a comment with sorry in it must be ignored)
  have h_bh : b * h = 195 := by
    rw [h₂, h₃]
    norm_num
  have h_v : v = 1 / 3 * 195 := by
    sorry
  calc v = 1 / 3 * 195 := h_v
    _ = 65 := by sorry
"""

CTX = "b h v : ℝ\nh₀ : 0 < b ∧ 0 < h ∧ 0 < v\nh₁ : v = 1 / 3 * (b * h)\nh₂ : b = 30\nh₃ : h = 13 / 2\nh_bh : b * h = 195"


def sorries_of(src: str, goals: list[str], line_offset: int = 0) -> list[Sorry]:
    """What the REPL reports: one Sorry per goal, at the position of the matching `sorry` token."""
    out = []
    offsets = sorry_offsets(src)
    for k, goal in enumerate(goals):
        at = offsets[min(k, len(offsets) - 1)]
        line = src.count("\n", 0, at) + 1 + line_offset
        col = at - (src.rfind("\n", 0, at) + 1)
        out.append(Sorry(goal, Pos(line, col), Pos(line, col + 5), proof_state=k))
    return out


def test_sorry_tokens_skip_comments_strings_and_identifiers():
    src = 'theorem x : True := by\n  -- sorry here\n  /- sorry -/ have h : "sorry" = "sorry" := by sorry\n  sorry_lemma\n  sorry'
    offs = sorry_offsets(src)
    assert len(offs) == 2
    assert all(src[o:o + 5] == "sorry" for o in offs)


def test_parse_goal_multiline_unicode_and_case():
    goal = ("case h.right\nx y : ℝ\nh₀ : x ≠ 0\nh₁ :\n  2 * x + y = 4 ∧\n    x * y = 2\ninst✝ : Fact (1 < 2)\n"
            "n : ℕ := 5\n⊢ x ^ 2 +\n    y ^ 2 = 12")
    g = parse_goal(goal)
    assert g.case == "h.right"
    assert [h.names for h in g.hypotheses] == [("x", "y"), ("h₀",), ("h₁",), ("inst✝",), ("n",)]
    assert g.hypotheses[2].type == "2 * x + y = 4 ∧ x * y = 2"
    assert g.hypotheses[4].value == "5"
    assert g.target == "x ^ 2 + y ^ 2 = 12"


def test_lemma_statement_binders_fresh_names_and_let_values():
    stmt = lemma_statement("foo_sub1", "x✝ : ℕ\nx : ℕ\ninst✝ : Fact (1 < x)\nn : ℕ := x + 1\nh : x ∣ n\n⊢ n ≥ 1")
    assert stmt.startswith("theorem foo_sub1 (x_1 : ℕ) (x : ℕ) [Fact (1 < x)] (n : ℕ) (n_def : n = x + 1)")
    # a fresh name replaces the inaccessible one wherever the goal mentions it
    assert lemma_statement("t", "x✝ : ℕ\nh : x✝ > 0\n⊢ x✝ ≠ 0").startswith("theorem t (x_1 : ℕ) (h : x_1 > 0) :\n    x_1 ≠ 0")
    assert stmt.rstrip().endswith("n ≥ 1 := by")
    assert "✝" not in stmt


def test_have_steps_of_a_sketch():
    steps = have_steps(SKETCH)
    assert [(s["name"], s["statement"], s["sorry"]) for s in steps] == [
        ("h_bh", "b * h = 195", False), ("h_v", "v = 1 / 3 * 195", True)]


def test_decompose_and_recompose_calc_sketch():
    goals = [CTX + "\n⊢ v = 1 / 3 * 195", CTX + "\nh_v : v = 1 / 3 * 195\n⊢ 1 / 3 * 195 = 65"]
    subs = decompose(SKETCH, sorries_of(SKETCH, goals, line_offset=7), "mathd_algebra_478")
    assert [s.lemma_names for s in subs] == [["mathd_algebra_478_sub1"], ["mathd_algebra_478_sub2"]]
    first = subs[0].lemma_statements[0]
    assert first.startswith("theorem mathd_algebra_478_sub1 (b h v : ℝ) (h₀ : 0 < b ∧ 0 < h ∧ 0 < v)")
    assert "(h_bh : b * h = 195)" in first and first.rstrip().endswith("v = 1 / 3 * 195 := by")
    assert "(h_v : v = 1 / 3 * 195)" in subs[1].lemma_statements[0]

    lemma1 = subs[0].lemma_statements[0] + "\n  rw [h₁, h_bh]\n  norm_num\n"
    lemma2 = subs[1].lemma_statements[0] + " norm_num\n"
    proofs = {"mathd_algebra_478_sub1": tactic_body(lemma1, "mathd_algebra_478_sub1"),
              "mathd_algebra_478_sub2": tactic_body(lemma2, "mathd_algebra_478_sub2")}
    full = substitute(SKETCH, subs, proofs)
    assert "have h_v : v = 1 / 3 * 195 := by\n    rw [h₁, h_bh]\n    norm_num\n" in full
    assert "    _ = 65 := by norm_num\n" in full
    assert sorry_offsets(full) == []
    assert full.count("(a comment with sorry in it must be ignored)") == 1


NESTED = """theorem foo (x : ℕ) (h₀ : x % 2 = 1) : x ^ 2 % 2 = 1 ∧ x % 2 = 1 := by
  have h2 : x ^ 2 % 2 = (x % 2) ^ 2 % 2 := by
    have h3 : x ^ 2 = x * x := by sorry
    sorry
  constructor <;> sorry
"""


def test_nested_haves_and_combinator_with_several_goals():
    c = "x : ℕ\nh₀ : x % 2 = 1"
    goals = [c + "\n⊢ x ^ 2 = x * x", c + "\nh3 : x ^ 2 = x * x\n⊢ x ^ 2 % 2 = (x % 2) ^ 2 % 2",
             "case left\n" + c + "\nh2 : x ^ 2 % 2 = (x % 2) ^ 2 % 2\n⊢ x ^ 2 % 2 = 1",
             "case right\n" + c + "\nh2 : x ^ 2 % 2 = (x % 2) ^ 2 % 2\n⊢ x % 2 = 1"]
    reported = sorries_of(NESTED, goals[:2]) + [
        Sorry(g, Pos(5, 18), Pos(5, 23), proof_state=9) for g in goals[2:]]  # one token, two goals
    subs = decompose(NESTED, reported, "foo")
    assert [len(s.lemma_names) for s in subs] == [1, 1, 2]
    assert subs[2].lemma_statements[0].startswith("theorem foo_sub3 (x : ℕ) (h₀ : x % 2 = 1) (h2 :")
    proofs = {"foo_sub1": ["ring"], "foo_sub2": ["rw [Nat.pow_mod]"], "foo_sub3": ["rw [h2, h₀]"],
              "foo_sub4": ["exact h₀"]}
    full = substitute(NESTED, subs, proofs)
    assert "have h3 : x ^ 2 = x * x := by ring\n    rw [Nat.pow_mod]\n" in full
    assert "constructor <;> first | rw [h2, h₀] | exact h₀\n" in full


def test_partial_substitution_keeps_unproved_sorries():
    goals = [CTX + "\n⊢ v = 1 / 3 * 195", CTX + "\nh_v : v = 1 / 3 * 195\n⊢ 1 / 3 * 195 = 65"]
    subs = decompose(SKETCH, sorries_of(SKETCH, goals), "t")
    partial = substitute(SKETCH, subs, {"t_sub2": ["norm_num"]})
    assert len(sorry_offsets(partial)) == 1
    assert "_ = 65 := by norm_num" in partial


def test_multiline_proof_on_its_own_line_and_in_term_position():
    src = "theorem t (p q : Prop) (hp : p) (hq : q) : p ∧ q := by\n  refine ⟨sorry, ?_⟩\n  · sorry\n"
    goals = ["p q : Prop\nhp : p\nhq : q\n⊢ p", "case right\np q : Prop\nhp : p\nhq : q\n⊢ q"]
    subs = decompose(src, sorries_of(src, goals), "t")
    full = substitute(src, subs, {"t_sub1": ["exact hp"], "t_sub2": ["have := hq", "exact this"]})
    assert "refine ⟨(by exact hp), ?_⟩" in full
    assert "  · have := hq\n    exact this\n" in full


def test_term_proof_of_a_lemma_becomes_exact():
    lemma = "theorem t_sub1 (h : 1 = 1) :\n    1 = 1 := h\n"
    assert tactic_body(lemma, "t_sub1") == ["exact h"]
    with pytest.raises(ValueError):
        tactic_body(lemma, "other_name")


def test_mismatched_sorry_count_is_an_error():
    with pytest.raises(ValueError):
        decompose(SKETCH, [Sorry("⊢ True", Pos(1, 0))], "t")


def test_both_lemma_forms_original_hypotheses_and_with_earlier_steps():
    goals = [CTX + "\n⊢ v = 1 / 3 * 195", CTX + "\nh_v : v = 1 / 3 * 195\n⊢ 1 / 3 * 195 = 65"]
    subs = decompose(SKETCH, sorries_of(SKETCH, goals), "t")
    with_steps, original = subs[1].lemma_statements[0], subs[1].original_statements[0]
    assert "(h_bh : b * h = 195)" in with_steps and "(h_v : v = 1 / 3 * 195)" in with_steps
    assert "h_bh" not in original and "h_v" not in original  # form (a): earlier `have`s left out
    assert original.startswith("theorem t_sub2 (b h v : ℝ) (h₀ : 0 < b ∧ 0 < h ∧ 0 < v) (h₁ : v = 1 / 3 * (b * h))")
    assert original.rstrip().endswith("1 / 3 * 195 = 65 := by")
    assert "h_bh" not in subs[0].original_statements[0] and "(h_bh" in subs[0].lemma_statements[0]


def test_original_form_keeps_a_left_out_step_that_the_rest_mentions():
    goal = "x : ℕ\nn : ℕ\nhn : n = x + 1\nh : 0 < n\n⊢ x < n"  # `have n : ℕ` is data the target uses
    stmt = lemma_statement("t_sub1", goal, leave_out={"n", "h"})
    assert "(n : ℕ)" in stmt and "(h :" not in stmt and "(hn : n = x + 1)" in stmt
