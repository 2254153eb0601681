"""Lean text utilities: masking, header split, declarations, statements, proof replacement, code blocks."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lean_env import text

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "benchmarks"

SRC = """import Mathlib
-- a comment among the imports
import Aesop

set_option maxHeartbeats 400000

open BigOperators Real Nat
  Topology Rat

/-- The answer. -/
theorem foo (x : ℕ) -- trailing comment
    (h : x = 2 := by rfl) : x ^ 2 = 4 := by
  subst h
  norm_num
"""


def test_mask_preserves_length_and_blanks_literals():
    src = 'a -- c\nb /- x /- y -/ z -/ "s\\"t" \'c\' h\' r#"raw"# d'
    masked = text.mask(src)
    assert len(masked) == len(src) and masked.count("\n") == src.count("\n")
    assert masked.split() == ["a", "b", "h'", "d"]
    assert text.strip_comments(src).split() == ["a", "b", '"s\\"t"', "'c'", "h'", 'r#"raw"#', "d"]


def test_split_header_and_imports():
    header, body = text.split_header(SRC)
    assert header + body == SRC
    assert header.endswith("Topology Rat\n\n") and body.startswith("/-- The answer. -/\ntheorem foo")
    imports, rest = text.split_imports(SRC)
    assert imports == "import Mathlib\n-- a comment among the imports\nimport Aesop\n\n"
    assert rest.startswith("set_option maxHeartbeats")
    assert text.imported_modules(SRC) == ["Mathlib", "Aesop"]
    h, b = text.split_header("open Real in\ntheorem t : True := trivial\n")
    assert h == "" and b.startswith("open Real in")
    assert text.split_header("theorem t : True := trivial") == ("", "theorem t : True := trivial")


def test_theorem_statement_through_its_colon_eq():
    stmt = text.theorem_statement(SRC, "foo")
    assert stmt.startswith("theorem foo (x : ℕ)") and stmt.endswith("x ^ 2 = 4 :=")
    assert "(h : x = 2 := by rfl)" in stmt  # a default value's := is inside brackets
    assert text.theorem_statement(SRC, "bar") is None
    assert text.normalize(stmt) == "theorem foo(x:ℕ)(h:x=2:=by rfl):x^2=4:="


def test_declarations_track_namespaces():
    src = ("namespace A\ntheorem t : True := trivial\nsection\ndef d := 1\nend\nend A\n"
           "theorem _root_.u : True := trivial\nnoncomputable def B.w : ℕ := 2\nlemma t : True := trivial\n")
    names = [(d.kind, d.full_name, d.depth) for d in text.declarations(src)]
    assert names == [("theorem", "A.t", 1), ("def", "A.d", 2), ("theorem", "u", 0), ("def", "B.w", 0),
                     ("lemma", "t", 0)]
    assert text.find_decl(src, "t").kind == "lemma"


@dataclass
class P:
    name: str
    formal_statement: str
    header: str = ""
    extra: dict = field(default_factory=dict)


def test_same_statement_up_to_whitespace_and_comments():
    problem = P("foo", "theorem foo (x : ℕ) (h : x = 2) : x ^ 2 = 4 := by\n")
    ok = "lemma foo (x : ℕ)\n   (h : x = 2) -- hyp\n : x^2 = 4 := by\n  subst h; rfl"
    assert text.same_statement(problem, ok)
    assert not text.same_statement(problem, "theorem foo (x : ℕ) (h : x = 3) : x ^ 2 = 4 := by simp")
    assert not text.same_statement(problem, "theorem foo (x : ℕ) (h : x = 2) : x ^ 2 = 4 ∨ True := by simp")
    assert not text.same_statement(problem, "namespace N\ntheorem foo (x : ℕ) (h : x = 2) : x ^ 2 = 4 := by rfl\nend N")
    # `f x` and `fx` are different terms: whitespace between identifiers is kept
    assert text.normalize("theorem t : f x = 1 :=") != text.normalize("theorem t : fx = 1 :=")


def test_putnam_answers_given_and_produced():
    problem = P("p", "abbrev p_solution : ℕ := sorry\n-- 6\ntheorem p : p_solution = 6 := by\n",
                extra={"answers": {"p_solution": {"type": "ℕ", "answer": "6"}}})
    given = text.fill_answers(problem)
    assert given is not problem and problem.formal_statement.startswith("abbrev p_solution : ℕ := sorry")
    assert given.formal_statement.startswith("abbrev p_solution : ℕ := 6\n")
    assert text.theorem_name(given.formal_statement) == "p"
    produced = "abbrev p_solution : ℕ := 2 * 3\ntheorem p : p_solution = 6 := by rfl"
    assert text.same_statement(problem, produced)  # answer produced: any value
    assert not text.same_statement(given, produced)  # answer given: the value is fixed
    assert text.same_statement(given, "abbrev p_solution : ℕ := 6\ntheorem p : p_solution = 6 := by rfl")
    assert not text.same_statement(problem, "abbrev p_solution : ℤ := 6\ntheorem p : p_solution = 6 := by rfl")
    assert text.preamble(problem.formal_statement) == "abbrev p_solution : ℕ := sorry\n-- 6\n"


@pytest.mark.skipif(not (SHARED / "putnambench.jsonl").is_file(), reason="shared benchmarks absent")
def test_fill_answers_on_every_putnambench_problem():
    rows = [json.loads(x) for x in (SHARED / "putnambench.jsonl").read_text().splitlines()]
    with_answers = [r for r in rows if r.get("answers")]
    assert len(with_answers) > 300
    for r in with_answers:
        p = P(r["name"], r["formal_statement"], r["header"], {"answers": r["answers"]})
        filled = text.fill_answers(p).formal_statement
        for name, rec in r["answers"].items():
            d = text.find_decl(filled, name)
            assert d is not None and text.normalize(filled[d.sig_end:d.end]) == text.normalize(rec["answer"]), name
        assert text.theorem_name(filled) == r["name"]
        assert text.same_statement(p, filled + "  sorry")


@pytest.mark.parametrize("bench", ["minif2f", "proofnet", "putnambench"])
def test_every_benchmark_statement_is_found_and_matches_itself(bench):
    path = SHARED / f"{bench}.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} absent (shared benchmarks)")
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    for r in rows:
        stmt, name = r["formal_statement"], r.get("theorem_name", r["name"])
        assert text.theorem_name(stmt) == name  # (ProofNet: a few targets are `def`s; PutnamBench: after abbrevs)
        assert text.theorem_statement(stmt, name).rstrip().endswith(":=")
        proof = text.with_proof(stmt, "nlinarith [sq_nonneg 1]")
        assert text.same_statement(P(name, stmt), proof)
        assert not text.same_statement(P(name, stmt), proof.replace(f" {name}", f" {name}_x", 1))
        if bench == "minif2f":
            assert text.split_header(r["header"] + stmt) == (r["header"], stmt)


def test_binders_at_column_zero_stay_in_the_statement():
    stmt = "theorem p\n(S : Set ℕ)\n(hS : S.ncard = 5)\n: S.Nonempty := by\n"
    assert text.theorem_statement(stmt + "  sorry\n", "p") == stmt.rstrip()[: -len(" by")]
    d = text.find_decl(stmt + "  sorry\n\ntheorem q : True := trivial\n", "p")
    assert d.sig_end is not None and d.end == len(stmt + "  sorry\n\n")


def test_with_proof_and_replace_proof():
    stmt = "theorem t (n : ℕ) : n + 0 = n := by\n"
    assert text.with_proof(stmt, "simp") == "theorem t (n : ℕ) : n + 0 = n := by simp\n"
    assert text.with_proof(stmt, "  intro\n  simp") == "theorem t (n : ℕ) : n + 0 = n := by\n  intro\n  simp\n"
    src = "theorem a : True := by\n  trivial\n\ntheorem t (n : ℕ) : n + 0 = n := by\n  sorry\n\ntheorem z : True := trivial\n"
    out = text.replace_proof(src, "t", "by simp")
    assert "theorem t (n : ℕ) : n + 0 = n := by simp\n\ntheorem z" in out and "sorry" not in out
    with pytest.raises(ValueError):
        text.replace_proof(src, "missing", "by simp")


@pytest.mark.parametrize("completion,expected", [
    ("Here:\n```lean4\ntheorem a : True := trivial\n```\nand\n```lean4\ntheorem b : True := trivial\n```\n",
     "theorem b : True := trivial\n"),
    ("```lean\ntheorem a : True := by\n  trivial\n```", "theorem a : True := by\n  trivial\n"),
    ("plan...\n```lean4\ntheorem a : True := by\n  trivial", "theorem a : True := by\n  trivial\n"),  # truncated
    ("```lean4\ntheorem a : True := by\n  trivial\n``", "theorem a : True := by\n  trivial\n"),  # cut fence
    ("```python\nprint(1)\n```\n```\ntheorem u : True := trivial\n```", "theorem u : True := trivial\n"),
    ("```lean4\ntheorem a : True := trivial\n```\n```python\nx = 1\n```", "theorem a : True := trivial\n"),
    ("no code at all", None),
    ("```lean4\n```", None),
])
def test_last_lean_block(completion, expected):
    assert text.last_lean_block(completion) == expected


# ---- the lexer ---------------------------------------------------------------------------------------------
def _kinds(src: str, interpolation: str = "lean") -> list[tuple[str, str]]:
    return [(t.kind, src[t.start:t.end]) for t in text.tokens(src, interpolation)]


def test_lexer_comments_as_lean_reads_them():
    assert _kinds("a -- x /- y\nb") == [("ident", "a"), ("comment", "-- x /- y"), ("ident", "b")]
    assert _kinds("/- a /- b -/ c -/ d") == [("comment", "/- a /- b -/ c -/"), ("ident", "d")]
    assert _kinds("/-- doc -/ theorem")[0] == ("doc", "/-- doc -/")
    assert _kinds("/-! mod /- n -/ doc -/ x")[0] == ("moddoc", "/-! mod /- n -/ doc -/")
    # Lean skips the character after `/-` unread: `/-/-` opens one comment, not two
    assert _kinds("/-/- x -/ sorry") == [("comment", "/-/- x -/"), ("ident", "sorry")]
    # `/--/` is a doc opener followed by `/`: it runs to the next closer
    assert _kinds("/--/ sorry -/ y") == [("doc", "/--/ sorry -/"), ("ident", "y")]
    assert _kinds("/---/ z") == [("doc", "/---/"), ("ident", "z")]
    assert _kinds("/- never closed sorry")[0] == ("comment", "/- never closed sorry")


def test_lexer_strings_chars_and_names():
    assert _kinds('"a\\"b" c') == [("string", '"a\\"b"'), ("ident", "c")]
    assert _kinds('r#"a"b"# c') == [("string", 'r#"a"b"#'), ("ident", "c")]
    assert _kinds('2r"\\" x "') == [("number", "2"), ("string", 'r"\\"'), ("ident", "x"), ("string", '"')]
    assert _kinds("f 'a' '\\n' h' x''")[1:3] == [("char", "'a'"), ("char", "'\\n'")]
    assert ("ident", "h'") in _kinds("h' x''") and ("ident", "x''") in _kinds("h' x''")
    assert _kinds("«a b».c `Nat.succ #eval x₁") == [("ident", "«a b».c"), ("name", "`Nat.succ"),
                                                    ("command", "#eval"), ("ident", "x₁")]
    assert text.ident_parts("_root_.«a.b».c") == ["_root_", "a.b", "c"]
    assert _kinds("h.1 ℝ λ")[:3] == [("ident", "h"), ("symbol", "."), ("number", "1")]


def test_lexer_interpolated_strings_have_code_inside():
    src = 's!"x {f "}" {y}} z" w'
    toks = _kinds(src)
    assert ("ident", "f") in toks and ("ident", "y") in toks and toks[-1] == ("ident", "w")
    assert ("string", '"}"') in toks  # a string inside the code part
    assert text.mask(src).split() == ["s!", "f", "{y}", "w"]
    plain = '"{" sorry "}"'  # not after s!/m!/f!: a plain string, so sorry is code
    assert ("ident", "sorry") in _kinds(plain)
    assert ("ident", "sorry") not in _kinds(plain, "all")  # what an unknown interpolating syntax would make of it
    assert len(text.readings(plain)) == 3


def test_declarations_at_any_column():
    src = ("namespace A\n  theorem t : True := trivial\n  @[simp] private lemma u : True := trivial\nend A\n"
           "open Real in theorem v : True := trivial\n/-- doc -/ theorem w : True := trivial\n"
           "attribute [instance] foo\nclass inductive C | a\n")
    ds = text.declarations(src)
    assert [(d.kind, d.full_name, d.depth) for d in ds] == [
        ("theorem", "A.t", 1), ("lemma", "A.u", 1), ("theorem", "v", 0), ("theorem", "w", 0), ("class", "C", 0)]
    u = ds[1]
    assert src[u.start:u.keyword] == "@[simp] private " and src[u.keyword:u.sig_end].endswith(":=")
    assert src[ds[2].keyword:ds[2].end].rstrip().endswith("trivial")
    assert text.open_scopes("namespace A\nsection\nend\n") == [text.Scope("namespace", "A", 0)]
    dotted = "namespace A.B\ntheorem t : True := trivial\nend B\ntheorem u : True := trivial\nend A\n"
    assert [d.full_name for d in text.declarations(dotted)] == ["A.B.t", "A.u"]  # one scope per component
    assert text.open_scopes(dotted) == [] and text.open_scopes(dotted.rsplit("end A", 1)[0]) != []
    h, b = text.split_header("import Mathlib\nopen Real in theorem t : True := trivial\n")
    assert h == "import Mathlib\n" and b.startswith("open Real in theorem")
