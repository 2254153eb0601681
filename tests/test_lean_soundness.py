"""Soundness: every cheating proof of tests/soundness_corpus is rejected with the right reason, every honest one
accepted; `soundness.scan` flags each loophole and no honest idiom.

Where a case needs Lean's answer, the FAKE REPL (tests/fakes/fake_repl.py) gives it in the REPL's exact JSON format
(tests/fakes/repl_rules.py builds it from the case's `lean:` line): the proof command's messages and sorries, the `#print axioms`
message, and the `pp.all` type of the theorem.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakes import FAKE_REPL
from fakes.repl_rules import PROBLEMS, lean_rules

from lean_env import ReplPool, Verifier
from lean_env.soundness import scan
from lean_env.text import fill_answers

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "soundness_corpus"
FAKE = [sys.executable, str(FAKE_REPL)]


PROBLEMS["putnam_given"] = fill_answers(PROBLEMS["putnam"])


@dataclass
class Case:
    path: Path
    problem: str
    expect: str
    scan: str
    reason: str | None
    lean: dict[str, str] | None
    layer: str | None = None  # the layer that catches it (LAYERS)

    @property
    def src(self) -> str:
        return self.path.read_text(encoding="utf-8")


def load_case(path: Path) -> Case:
    text = path.read_text(encoding="utf-8")
    front = re.match(r"/- corpus\n(.*?)\n-/\n", text, re.S)
    assert front, f"{path.name}: no corpus front matter"
    meta = dict(line.split(": ", 1) for line in front.group(1).splitlines())
    lean = dict(kv.split("=", 1) for kv in meta["lean"].split()) if "lean" in meta else None
    assert meta.get("layer", "scan") in LAYERS, f"{path.name}: unknown layer {meta.get('layer')}"
    return Case(path, meta["problem"], meta["expect"], meta["scan"], meta.get("reason"), lean, meta.get("layer"))


LAYERS = ("scan", "statement", "messages", "axioms", "type", "protocol", "answers", "none")


CASES = [load_case(p) for p in sorted(CORPUS.glob("*.lean"))]


def test_corpus_covers_the_loopholes():
    kinds = {c.scan for c in CASES}
    assert {"sorry", "axiom", "native", "implemented_by", "kernel_option", "unsafe", "metaprogram", "exit",
            "hidden_text", "redefinition", "inductive", "scope", "none"} <= kinds
    layers = {c.layer for c in CASES if c.layer}
    assert set(LAYERS) - {"none"} <= layers, set(LAYERS) - layers
    assert sum(c.expect == "proved" for c in CASES) >= 5 and sum(c.expect == "unsound" for c in CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.path.stem)
def test_scan(case: Case):
    from lean_env.soundness import redefinitions

    found = scan(case.src) + redefinitions(PROBLEMS[case.problem].formal_statement, case.src)
    kinds = {f.kind for f in found}
    if case.scan == "none":
        assert not [f for f in found if f.kind != "redefinition" or case.expect == "proved"], found
    else:
        assert case.scan in kinds, found


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("soundness")
    rules, log = tmp / "rules.json", tmp / "log.jsonl"
    rules.write_text("[]")
    mp = pytest.MonkeyPatch()
    mp.setenv("FAKE_REPL_RULES", str(rules))
    mp.setenv("FAKE_REPL_LOG", str(log))
    pool = ReplPool(FAKE, workers=1, timeout_s=10)
    yield Verifier(pool, lean_version="v4.19.0"), rules, log
    pool.close()
    mp.undo()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.path.stem)
def test_verdict(case: Case, harness):
    verifier, rules, log = harness
    problem = PROBLEMS[case.problem]
    name = problem.name
    rules.write_text(json.dumps(lean_rules(name, case.lean or {}), ensure_ascii=False))
    verifier._references.clear()  # each case's rules give the problem's reference type too
    before = log.read_text().count("\n") if log.exists() else 0
    verdict = verifier.verify(problem, case.src)
    sent = [json.loads(x)["request"] for x in log.read_text().splitlines()[before:]] if log.exists() else []
    assert verdict.status.value == case.expect, verdict.reasons
    if case.reason:
        assert any(case.reason in r for r in verdict.reasons), verdict.reasons
    if case.expect == "proved":
        assert verdict.reasons == [] and verdict.axioms == case.lean["axioms"].split(",")
        assert verdict.lean_version == "v4.19.0"
    if case.lean is None:  # dangerous or rejected before Lean: the proof text never reaches the REPL
        assert not any(name in r.get("cmd", "") for r in sent), sent
    elif case.expect != "failed" or case.lean.get("body") == "error":
        if case.lean.get("body") != "forged":  # a forged answer may fail the proof before the check is sent
            assert any(r.get("cmd", "").startswith("#print axioms") for r in sent) == (case.lean.get("body") != "error")


# ---- scan: honest idioms, comments and strings -----------------------------------------------------------
@pytest.mark.parametrize("src", [
    "theorem t : True := by\n  simp_all (config := {decide := true})",
    "set_option maxHeartbeats 400000 in\ntheorem t : True := trivial",
    "theorem t : True := by\n  -- sorry, we use trivial\n  trivial",
    "theorem t : True := by\n  /- a /- nested sorry -/ admit -/ trivial",
    'theorem t : "sorry".length = 5 := by decide',
    "theorem t : '\"' = '\"' := rfl\n-- sorry",
    "theorem t (h_unsafe : True) (stop_here : True) (sorry_free : True) : True := h_unsafe",
    "theorem t : 6 * 7 = 42 := by norm_num [Nat.reduceMul]",
    "theorem t : (2 : ℕ) ≤ 3 := by decide",
    "/-- docstring mentioning native_decide and axiom -/\ntheorem t : True := trivial",
    "theorem t (a b : ℝ) : a ^ 2 + b ^ 2 ≥ 2 * a * b := by\n  nlinarith [sq_nonneg (a - b), sq_abs a]",
    "open Real in\ntheorem t : Real.pi > 3 := Real.pi_gt_three",
    "theorem t : True := by\n  have h : ∀ n : ℕ, n + 0 = n := by intro n; omega\n  trivial",
    "set_option maxRecDepth 10000 in\nset_option linter.unusedVariables false in\ntheorem t : True := trivial",
    "theorem t : r\"sorry\" = r\"sorry\" := rfl",
    "example : True := by exact?",
    "attribute [local simp] Nat.add_comm in\ntheorem t : True := trivial",
    "attribute [-simp] Nat.succ_eq_add_one\ntheorem t : True := trivial",
    "-- a zero\u200bwidth space in a comment\ntheorem t : True := trivial",
    "section\nvariable (n : ℕ)\nlemma l : n + 0 = n := rfl\nend\ntheorem t : True := trivial",
    "namespace N\nlemma l : True := trivial\nend N\ntheorem t : True := N.l",
    "theorem t (x : ℕ) : x = x := by\n  open Nat in\n  set_option maxRecDepth 1000 in\n  rfl",
    "/--/ a degenerate doc comment: sorry here is prose -/\ntheorem t : True := trivial",
    'theorem t : s!"{1 + 1}".length = 1 := by decide',
    "theorem t : True := by\n  #check Nat\n  trivial",
    "attribute [local instance] Classical.propDecidable in\ntheorem t : True := trivial",
    "@[simp] lemma l (n : ℕ) : n + 0 = n := rfl\ntheorem t : True := trivial",
    "theorem t (n : ℕ) (h : n < 3) : n + 1 ≤ 3 := by\n  simp +arith [Nat.succ_le_of_lt h]",
    "-- Lean's own tactics: omega, decide\ntheorem t : 2 + 2 = 4 := by decide",
])
def test_scan_accepts_honest_idioms(src):
    assert scan(src) == []


@pytest.mark.parametrize("src,kind", [
    ("theorem t : True := by «sorry»", "sorry"),
    ("theorem t : True := by exact (sorry)", "sorry"),
    ("theorem t : False := by\n  decide (config := {native := true})", "native"),
    ("set_option bootstrap.genMatcherCode false\ntheorem t : True := trivial", "kernel_option"),
    ("set_option allowUnsafeReducibility true\ntheorem t : True := trivial", "kernel_option"),
    ("macro_rules | `(tactic| trivial) => `(tactic| sorry)", "metaprogram"),
    ("syntax \"cheat\" : tactic", "metaprogram"),
    ("initialize counter : IO.Ref Nat ← IO.mkRef 0", "metaprogram"),
    ("@[command_elab Lean.Parser.Command.check] def hijack : Lean.Elab.Command.CommandElab := fun _ => pure ()",
     "metaprogram"),
    ("theorem t : True := by\n  run_tac Lean.Elab.Tactic.evalTactic (← `(tactic| trivial))", "metaprogram"),
    ("theorem t : True := by\n  exact Lean.Elab.Term.mkSorry", "sorry"),
    ("theorem t : True :=\u200b trivial", "hidden_text"),
    ("theorem t : True := trivial\n  #exit", "exit"),
    # class 3: keywords as tokens anywhere, meta APIs however reached
    ("open Lean in elab \"x\" : tactic => pure ()", "metaprogram"),
    ("namespace N\n  macro \"x\" : tactic => `(tactic| trivial)\nend N", "metaprogram"),
    ("theorem t : True := by\n  have := IO.println \"hi\"\n  trivial", "metaprogram"),
    ("open Lean.Meta\ntheorem t : True := trivial", "metaprogram"),
    ("def f : Lean.Elab.TermElabM Unit := pure ()", "metaprogram"),
    ("def f := _root_.Lean.Meta.mkAuxTheorem", "metaprogram"),
    ("def f := withOptions id", "metaprogram"),
    ("theorem t : True := by trivial; run_tac pure ()", "metaprogram"),
    ("#evalx 1", "metaprogram"),
    # class 1: what has no place at the end of a competition proof
    ("#guard_msgs in\ntheorem t : True := trivial", "scope"),
    ("variable (h : False)\ntheorem t : True := trivial", "scope"),
    ("section\ntheorem t : True := trivial", "scope"),
    # class 2: what a wrong reading of strings/comments would hide
    ('theorem t : True := by\n  have := s!"{(sorry : True)}"\n  trivial', "sorry"),
    ('theorem t : True := by\n  have := (1r"\\", native_decide, "")\n  trivial', "native"),
    ("/-/- x -/ set_option debug.skipKernelTC true -- -/\ntheorem t : True := trivial", "kernel_option"),
    ("-- a bidi control \u202e in a comment\ntheorem t : True := trivial", "hidden_text"),
    ("theorem t : True := by\n  exact apply\ud800", "sorry"),  # a lone surrogate reaches Lean as "?"
    # red team of 2026-12-02: Lean's API opened after another namespace, attribute lists holding brackets, the
    # compiler through another configuration or tactic, `eval%`
    ("open Nat Lean Elab Command\ntheorem t : True := trivial", "metaprogram"),
    ("open _root_.Lean in\ntheorem t : True := trivial", "metaprogram"),
    ("@[simp [Nat.add_comm], command_elab Parser.Command.printAxioms] def f := 1", "metaprogram"),
    ("@[inline [x], extern \"lean_cheat\"] def f : Nat := 1", "implemented_by"),
    ("theorem t : 2 ^ 10 = 1024 := by decide -kernel +native", "native"),
    ("theorem t : 2 ^ 10 = 1024 := by decide+native", "native"),
    ("theorem t (x : BitVec 8) : x + 0 = x := by bv_decide", "native"),
    ("theorem t : eval% (2 + 2) = 4 := rfl", "metaprogram"),
    # options that write files where the proof says (Lean's profiler output)
    ('set_option trace.profiler.output "/tmp/x.json" in\ntheorem t : True := trivial', "kernel_option"),
    ('theorem t : True := by\n  set_option trace.profiler.output.pp true in trivial', "kernel_option"),
])
def test_scan_flags(src, kind):
    from lean_env.verifier import as_sent

    assert kind in {f.kind for f in scan(as_sent(src))}


# ---- PutnamBench answers: elaborated where the problem's statement is ------------------------------------------
THEOREM_1999_B2 = "theorem putnam_1999_b2 : putnam_1999_b2_solution = 3 * 2 := by\n  rfl\n"


@pytest.mark.parametrize("tamper", [
    "instance : OfNat ℕ 6 := ⟨0⟩\n",  # `6` in the answer's text would mean 0
    "namespace Cheat\nscoped instance : OfNat ℕ 6 := ⟨0⟩\nend Cheat\nopen Cheat in\n",
])
@pytest.mark.parametrize("problem", ["putnam_given", "putnam"])
def test_answer_text_is_elaborated_before_the_proofs_declarations(problem, tamper):
    """A hole of the answer given track (and of `answer_correct` when produced): the recorded answer was placed where
    the proof wrote it, after the proof's own instances/notations/opens, which could make its text mean another
    value (the theorem then proved about that one). Both now go first, as in the reference environment."""
    from lean_env.verifier import Verifier

    answer = "abbrev putnam_1999_b2_solution : ℕ := 6\n"
    prep = Verifier(None).prepare(PROBLEMS[problem], tamper + answer + THEOREM_1999_B2)
    assert prep.body.startswith(answer) and prep.body.count("abbrev putnam_1999_b2_solution") == 1, prep.body
    assert prep.body.index(THEOREM_1999_B2) > prep.body.index(tamper.splitlines()[0])
    assert prep.reasons == [] and prep.answer_correct is (True if problem == "putnam" else None)
    # the lines Lean reports are still those of the submitted text
    submitted_line = tamper.count("\n") + 2
    assert prep.body.splitlines()[submitted_line - prep.line_shift - 1] == THEOREM_1999_B2.splitlines()[0]


def test_a_wrong_produced_answer_stays_where_the_proof_wrote_it():
    from lean_env.verifier import Verifier

    src = "open Nat\nabbrev putnam_1999_b2_solution : ℕ := 3 * 2\n" + THEOREM_1999_B2
    prep = Verifier(None).prepare(PROBLEMS["putnam"], src)
    assert prep.body == src and prep.answer_correct is False



@pytest.mark.parametrize("line", ["import Mathlib #eval IO.println \"x\"", "import Mathlib instance : OfNat ℕ 5 := ⟨4⟩",
                                  "import Mathlib set_option debug.skipKernelTC true"])
def test_code_on_an_import_line_is_not_the_header(line):
    """A hole for header-less problems (a bare file: its own imports are the header): what follows a module name on
    its line is a command Lean runs, and it was sent unscanned as the header, where the reference statement
    elaborates too. The body now starts at that line, so the scan sees it (an import there is refused)."""
    from fakes.repl_rules import P

    from lean_env.verifier import Verifier

    problem = P("t", "theorem t : (2 : ℕ) + 2 = 5 := by\n", "")
    prep = Verifier(None).prepare(problem, line + "\ntheorem t : (2 : ℕ) + 2 = 5 := rfl\n")
    assert prep.header == "" and not prep.run_lean, (prep.header, prep.reasons)
    assert any("imports after the header" in r for r in prep.reasons), prep.reasons


def test_whole_import_lines_are_still_the_header():
    from lean_env.text import imported_modules, split_imports

    src = "import Mathlib -- all of it\nimport Aesop /- and\n aesop -/\nimport Mathlib.Tactic\n\ntheorem t : True := trivial\n"
    imports, rest = split_imports(src)
    assert rest == "theorem t : True := trivial\n" and imported_modules(imports) == ["Mathlib", "Aesop", "Mathlib.Tactic"]



def test_a_fixed_definition_of_the_problem_is_elaborated_first():
    """The same hole for a definition the problem fixes (not an answer): the theorem's type names it, so what an
    instance before the proof's copy made it mean was never compared."""
    from fakes.repl_rules import P

    from lean_env.verifier import Verifier

    fixed = "def p_aux : ℕ := 6\n"
    problem = P("p", fixed + "theorem p : p_aux = 6 := by\n", "import Mathlib\n\n")
    prep = Verifier(None).prepare(problem, "instance : OfNat ℕ 6 := ⟨0⟩\n" + fixed + "theorem p : p_aux = 6 := rfl\n")
    assert prep.body.startswith(fixed) and prep.body.count("def p_aux") == 1 and prep.reasons == [], prep.body
