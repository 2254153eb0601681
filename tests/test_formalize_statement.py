"""Statement surgery for autoformalization reads Lean through lean_env.text: comments, strings, `«»` names and
brackets are seen the way Lean's lexer sees them."""

from __future__ import annotations

from autoformalize.statement import Signature, extract_statement, negation, parse_signature, rename


def test_signature_split_at_the_depth0_colon():
    sig = parse_signature("theorem t {α : Type} [Fintype α] (f : α → ℕ) (h : ∀ x, f x = 1) :\n  ∑ x, f x = 1 := by")
    assert sig == Signature("t", "{α : Type} [Fintype α] (f : α → ℕ) (h : ∀ x, f x = 1)", "∑ x, f x = 1")
    assert parse_signature("lemma l : 1 + 1 = 2 := by") == Signature("l", "", "1 + 1 = 2")


def test_signature_skips_comments_and_strings_that_look_like_lean():
    text = ('/-- theorem fake (x : ℕ) : x = x := by -/\n-- lemma other : False := by\n'
            'theorem real (s : String) (h : s = ":= by") : s.length = 5 := by')
    assert parse_signature(text) == Signature("real", '(s : String) (h : s = ":= by")', "s.length = 5")


def test_signature_keeps_a_guillemet_name_as_written():
    sig = parse_signature("theorem «my thm» (n : ℕ) : n + 0 = n := by")
    assert sig == Signature("«my thm»", "(n : ℕ)", "n + 0 = n")
    assert negation(sig) == "theorem «my thm»_negation : ¬ (∀ (n : ℕ), n + 0 = n) := by"


def test_no_signature_without_a_theorem_a_colon_or_a_conclusion():
    assert parse_signature("def f : ℕ := 1") is None
    assert parse_signature("theorem t (h : 1 = 1) := by") is None
    assert parse_signature("theorem t : 1 = 1") is None  # no `:=`


def test_rename_touches_the_theorem_not_a_comment_about_one():
    text = "-- theorem old : the comment stays\nlemma old' (a : ℕ) : a = a := by"
    assert rename(text, "new") == "-- theorem old : the comment stays\ntheorem new (a : ℕ) : a = a := by"
    assert rename("theorem «a b» : True := by", "c") == "theorem c : True := by"
    assert rename("example : True := by", "c") == "example : True := by"


def test_extract_statement_from_the_last_block():
    completion = "Here:\n```lean4\nlemma x (n : ℕ) : n = n := by\n  rfl\n```"
    assert extract_statement(completion) == "theorem x (n : ℕ) : n = n := by"
    assert extract_statement("no Lean here") is None
