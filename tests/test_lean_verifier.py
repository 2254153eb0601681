"""Verifier over the pool with the FAKE REPL: the exact REPL commands it sends (the contract other fakes answer),
verdicts for timeouts/crashes/bad headers, batch order, positions, and `make_verifier(settings)`."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest
from fakes import FAKE_REPL
from fakes.repl_rules import MINIF2F_HEADER, PROBLEMS, lean_rules

from lean_env import ReplPool, Status, Verifier, make_verifier
from lean_env.text import fill_answers
from lean_env.verifier import check_command, reference_command

FAKE_PATH = FAKE_REPL
FAKE = [sys.executable, str(FAKE_PATH)]
MINI = PROBLEMS["mini"]
HONEST = "theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by\n  subst h₀\n  norm_num\n"
STANDARD = {"body": "ok", "axioms": "propext,Classical.choice,Quot.sound", "type": "same"}


@pytest.fixture
def lean(tmp_path, monkeypatch):
    rules, log = tmp_path / "rules.json", tmp_path / "log.jsonl"
    rules.write_text(json.dumps(lean_rules(MINI.name, STANDARD), ensure_ascii=False))
    monkeypatch.setenv("FAKE_REPL_RULES", str(rules))
    monkeypatch.setenv("FAKE_REPL_LOG", str(log))
    return SimpleNamespace(rules=rules, log=log,
                           sent=lambda: [json.loads(x)["request"] for x in log.read_text().splitlines()])


def test_exact_commands_sent(lean):
    with Verifier(ReplPool(FAKE, workers=1, timeout_s=5)) as v:
        verdict = v.verify(MINI, MINIF2F_HEADER + HONEST)
        assert verdict.status is Status.PROVED and verdict.axioms == ["propext", "Classical.choice", "Quot.sound"]
        v.verify(MINI, HONEST)  # second proof: header and reference are reused
    sent = lean.sent()
    assert sent[0] == {"cmd": "import Mathlib\nimport Aesop\n\n"}
    assert sent[1] == {"cmd": "set_option maxHeartbeats 400000\n\nopen BigOperators Real Nat Topology Rat\n\n", "env": 0}
    assert sent[2] == {"cmd": HONEST, "env": 1}  # the repeated header already ran in env 1
    assert sent[3] == {"cmd": check_command(MINI.name), "env": 2}
    assert check_command(MINI.name) == ("#print axioms _root_.mathd_algebra_10\nset_option pp.maxSteps 100000000 in"
                                        "\nset_option pp.all true in\n#check @_root_.mathd_algebra_10")
    assert sent[4] == {"cmd": reference_command(MINI.formal_statement, MINI.name), "env": 1}
    assert sent[4]["cmd"].startswith(MINI.formal_statement.rstrip() + " sorry\n")
    assert sent[5:] == [{"cmd": HONEST, "env": 1}, {"cmd": check_command(MINI.name), "env": 5}]


def test_timeout_crash_and_recovery(lean):
    with Verifier(ReplPool(FAKE, workers=1, timeout_s=1)) as v:
        hang, crash, ok = (HONEST.replace("norm_num", f"norm_num -- {m}") for m in ("FAKE_HANG", "FAKE_CRASH", "x"))
        verdicts = v.verify_many([(MINI, hang), (MINI, crash), (MINI, ok)])
        assert [x.status for x in verdicts] == [Status.TIMEOUT, Status.CRASHED, Status.PROVED]
        assert "timed out" in verdicts[0].reasons[0] and "crashing on purpose" in " ".join(verdicts[1].reasons)
        assert v.pool.metrics().restarts == 3  # one timeout, one crash tried twice


def test_verify_many_keeps_order_and_pool_busy(lean):
    with Verifier(ReplPool(FAKE, workers=2, timeout_s=5)) as v:
        bad = HONEST.replace("norm_num", "sorry")
        items = [(MINI, HONEST if i % 3 else bad) for i in range(9)]
        verdicts = v.verify_many(items)
        assert [x.status for x in verdicts] == [Status.UNSOUND if i % 3 == 0 else Status.PROVED for i in range(9)]
        assert v.pool.metrics().completed == 9


def test_header_rejected_is_failed(lean):
    lean.rules.write_text(json.dumps([["^import Nope", {"message": "unknown package 'Nope'"}]]))
    problem = SimpleNamespace(name="t", header="import Nope\n\n", formal_statement="theorem t : True := by\n",
                              extra={})
    with Verifier(ReplPool(FAKE, workers=1, timeout_s=5)) as v:
        verdict = v.verify(problem, "theorem t : True := by\n  trivial\n")
    assert verdict.status is Status.FAILED and "header does not compile: unknown package 'Nope'" in verdict.reasons[0]


def test_error_positions_are_in_the_submitted_text(lean):
    rules = lean_rules(MINI.name, {"body": "error"})
    lean.rules.write_text(json.dumps(rules, ensure_ascii=False))
    with Verifier(ReplPool(FAKE, workers=1, timeout_s=5)) as v:
        verdict = v.verify(MINI, MINIF2F_HEADER + HONEST)
    # the fake reports line 2 of the body it got; the body starts after the 7 header lines of the submission
    assert verdict.status is Status.FAILED and verdict.errors[0].pos.line == 2 + 7
    assert verdict.reasons == ["error: line 9: linarith failed to find a contradiction"]


def test_submit_future(lean):
    with Verifier(ReplPool(FAKE, workers=1, timeout_s=5)) as v:
        assert v.submit(MINI, HONEST).result(timeout=20).proved
        assert v.submit(MINI, HONEST.replace("norm_num", "native_decide")).result(timeout=5).status is Status.UNSOUND


def test_make_verifier_from_settings(lean):
    settings = SimpleNamespace(repl_path=FAKE_PATH, project_dir=None, lake_path=None, lean_version="v4.19.0",
                               workers=1, timeout_s=5.0, memory_mb=1024, max_proofs_per_repl=10)
    v = make_verifier(settings)
    try:
        assert v.pool.workers == 1 and v.pool.max_proofs_per_repl == 10 and v.pool.memory_mb == 1024
        assert v.verify(MINI, HONEST).proved
    finally:
        v.close()


def test_bad_problem_and_foreign_import(lean):
    with Verifier(ReplPool(FAKE, workers=1, timeout_s=5)) as v:
        no_thm = SimpleNamespace(name="x", header="", formal_statement="example : True := by\n", extra={})
        assert v.verify(no_thm, "example : True := trivial").status is Status.FAILED
        verdict = v.verify(MINI, "import Mathlib.Cheat\n" + HONEST)
        assert verdict.status is Status.FAILED and "Mathlib.Cheat" in verdict.reasons[0]
    assert not lean.log.exists()  # neither reached Lean


def test_a_repeated_header_with_defs_is_not_run_twice(lean):
    header = "import Mathlib\n\nopen Real\n\nnoncomputable section\n\ndef g (n : ℕ) : ℝ := sqrt (n + 1) - sqrt n\n\n"
    problem = SimpleNamespace(name="ex_3_6a", header=header, extra={},
                              formal_statement="theorem ex_3_6a : g 0 = 1 := by\n")
    proof = header + "theorem ex_3_6a : g 0 = 1 := by\n  simp [g]\n"
    lean.rules.write_text("[]")  # every command accepted: only the commands sent are checked here
    with Verifier(ReplPool(FAKE, workers=1, timeout_s=5), check_types=False) as v:
        v.verify(problem, proof)
    bodies = [r["cmd"] for r in lean.sent() if r.get("env") == 1]
    assert bodies == ["theorem ex_3_6a : g 0 = 1 := by\n  simp [g]\n"]


def test_type_comparison_is_up_to_bound_variable_names():
    from lean_env.verifier import _type_text

    a = "@t : ∀ (x : Real) {n : Nat} [inst : Foo n], @Eq Real x (f n) → @Exists Nat fun (k : Nat) => @Eq Nat k n"
    b = "@t : ∀ (y : Real) {m : Nat} [i : Foo m], @Eq Real y (f m) → @Exists Nat fun (j : Nat) => @Eq Nat j m"
    assert _type_text(a) == _type_text(b)
    swapped = "@t : ∀ (x : Real) (y : Real), @Eq Real x y"
    assert _type_text(swapped) != _type_text("@t : ∀ (x : Real) (y : Real), @Eq Real y x")
    assert _type_text("@t : ∀ (x : Real), @Eq Real x x") != _type_text("@t : ∀ (x : Real), @Eq Real x c")



def test_a_bound_name_that_also_stands_free_is_not_renamed():
    """A hole of the renaming: every token named like a binder was renamed, also a constant of that name outside
    the binder's scope. A statement binding `c` in one part and naming the constant `c` in another then compared
    equal to one naming ANY constant there (the proof's own `y`, say), bound under the same renaming."""
    from lean_env.verifier import _type_text

    problem = "@t : And (∀ (c : Nat), @Eq.{1} Nat c c) (@Eq.{1} Nat c 0)"  # the constant `c` after the ∀
    forged = "@t : And (∀ (y : Nat), @Eq.{1} Nat y y) (@Eq.{1} Nat y 0)"  # the proof's constant `y` instead
    assert _type_text(problem) != _type_text(forged)
    assert _type_text(problem) == _type_text(problem.replace("  ", " "))  # the very type still compares equal
    # a name ending in a binder keyword binds nothing
    assert _type_text("@t : @Eq Nat (Foo.myfun x) x") == "@t : @Eq Nat (Foo.myfun x) x"
    # scopes: a lambda as the last argument reaches to the end of its group; bound names in sibling scopes rename
    a = "@t : And (@Exists.{1} Nat fun (k : Nat) => @Eq.{1} Nat k 0) (∀ (k : Nat), @LE.le.{0} Nat instLENat k k)"
    b = "@t : And (@Exists.{1} Nat fun (j : Nat) => @Eq.{1} Nat j 0) (∀ (j : Nat), @LE.le.{0} Nat instLENat j j)"
    assert _type_text(a) == _type_text(b)


def test_putnam_answers_given_and_produced(lean):
    from fakes.repl_rules import TYPES

    rules = lean_rules("putnam_1999_b2", STANDARD)
    lean.rules.write_text(json.dumps(rules, ensure_ascii=False))
    given, produced = fill_answers(PROBLEMS["putnam"]), PROBLEMS["putnam"]
    theorem = "theorem putnam_1999_b2 : putnam_1999_b2_solution = 3 * 2 := by\n  rfl\n"
    assert TYPES["putnam_1999_b2"]
    with Verifier(ReplPool(FAKE, workers=1, timeout_s=5)) as v:
        placed = v.verify(given, theorem)  # the proof leaves the answer out: the verifier places the recorded one
        repeated = v.verify(given, "abbrev putnam_1999_b2_solution : ℕ := 6\n" + theorem)
        own = v.verify(given, "@[reducible] def putnam_1999_b2_solution : ℕ := 6\n" + theorem)
        right = v.verify(produced, "abbrev putnam_1999_b2_solution : ℕ := 6\n" + theorem)
        wrong = v.verify(produced, "abbrev putnam_1999_b2_solution : ℕ := 3 * 2\n" + theorem)
    assert placed.proved and repeated.proved and placed.answers == {} and placed.answer_correct is None
    assert own.status is Status.UNSOUND and any("declares its own" in r for r in own.reasons)
    sent = [r["cmd"] for r in lean.sent() if "putnam_1999_b2 :" in r.get("cmd", "") and "sorry" not in r["cmd"]]
    assert sent[0].startswith("abbrev putnam_1999_b2_solution : ℕ := 6\n")  # placed from the record
    assert right.proved and right.answers == {"putnam_1999_b2_solution": "6"} and right.answer_correct is True
    assert wrong.proved and wrong.answers == {"putnam_1999_b2_solution": "3 * 2"} and wrong.answer_correct is False
    assert Status(wrong.to_dict()["status"]) is Status.PROVED and wrong.from_dict(wrong.to_dict()) == wrong


def test_check_must_answer_about_the_theorem_once(lean):
    with Verifier(ReplPool(FAKE, workers=1, timeout_s=5)) as v:
        for spec, why in [({"about": "Other.mathd_algebra_10"}, "answered about `Other.mathd_algebra_10`"),
                          ({"answers": "2"}, "gave 2 answers"), ({"answers": "0"}, "gave 0 answers")]:
            lean.rules.write_text(json.dumps(lean_rules(MINI.name, {**STANDARD, **spec}), ensure_ascii=False))
            verdict = v.verify(MINI, HONEST)
            assert verdict.status is Status.UNSOUND and any(why in r for r in verdict.reasons), verdict.reasons


def test_env_ids_out_of_sequence_fail_the_current_proof(lean):
    from lean_env import Repl
    from lean_env.errors import ReplGarbage

    lean.rules.write_text(json.dumps([["FORGE", {"env": 7}]]))
    repl = Repl(FAKE, timeout_s=5)
    try:
        assert repl.run_cmd("def a := 1").env == 0
        with pytest.raises(ReplGarbage, match="next env is 1"):
            repl.run_cmd("FORGE")
        assert repl.run_cmd("def b := 2").env == 0  # a fresh process, numbered from 0 again
    finally:
        repl.close()


def test_the_header_a_file_brings_is_scanned_too():
    from data.lean_file import file_problem
    from lean_env.verifier import Prepared

    src = ("import Mathlib\nset_option debug.skipKernelTC true\n\n"
           "theorem t (x : ℕ) : x + 0 = x := by\n  simp\n")
    problem = file_problem(src, "f")
    assert "skipKernelTC" in problem.header  # `lean check` sends the file's own options as the header
    prep = Verifier(None).prepare(problem, src)
    assert isinstance(prep, Prepared) and not prep.run_lean
    assert any(r.startswith("in the header:") and "skipKernelTC" in r for r in prep.reasons)
    honest = Verifier(None).prepare(MINI, MINIF2F_HEADER + HONEST)  # a benchmark header is clean
    assert isinstance(honest, Prepared) and honest.run_lean and honest.reasons == []


def test_the_statements_own_declarations_are_not_the_proofs_findings():
    from lean_env.verifier import Prepared

    statement = ("inductive Win : ℕ → Prop where\n  | base : Win 0\n"
                 "theorem has_win : Win 0 := by\n")
    problem = SimpleNamespace(name="has_win", formal_statement=statement, header="import Mathlib\n\n", extra={})
    honest = Verifier(None).prepare(problem, statement.rstrip() + "\n  exact Win.base\n")
    assert isinstance(honest, Prepared) and honest.reasons == []  # the problem's own inductive is not flagged
    cheat = Verifier(None).prepare(problem, statement.replace("| base : Win 0", "| base : Win 0\n  | any n : Win n")
                                   + "  exact Win.base\n")
    assert any("inductive" in r for r in cheat.reasons)  # a changed copy is the proof's own
    glued = Verifier(None).prepare(problem, "inductive Win : ℕ → Prop where\n  | base : Win 0\n"
                                   "theorem has_win : Win 0 := by\n  sorry\n")
    assert any("sorry" in r for r in glued.reasons)


def test_verdict_to_dict_is_asdict_with_the_status_as_text():
    """`Verdict.to_dict` is written by hand (speed): the same dict, in the same key order, as `dataclasses.asdict`."""
    from dataclasses import asdict

    from lean_env.verdict import Message, Pos, Sorry, Status, Verdict

    verdict = Verdict(Status.UNSOUND, [Message("error", "bad", Pos(2, 3), None), Message("info", "x")],
                      [Sorry("⊢ True", Pos(1, 0), Pos(1, 5), 7)], ["sorryAx"], ["uses `sorry`"], 0.5, 0.25, "v4.19.0",
                      None, {"ans": "3"}, False, True)
    expected = asdict(verdict) | {"status": "unsound"}
    assert list(verdict.to_dict().items()) == list(expected.items())
    assert Verdict.from_dict(verdict.to_dict()) == verdict


def test_a_line_separator_in_a_header_comment_is_not_a_new_line():
    """Lean ends lines at "\\n" only; Python's `splitlines` also at U+2028 and the like, which a comment may hold.
    A proof repeating the header with one in a comment is still the honest proof: the comment's tail is not
    taken for code, and `prepare` does not crash."""
    from lean_env.verifier import Prepared

    header_lines = MINIF2F_HEADER.rstrip("\n").split("\n")
    header_lines[-1] += "  -- from the prompt \u2028 repeated"
    for src in ("\n".join(header_lines) + "\n\n" + HONEST, HONEST.replace(":= by", ":= by -- \u2028 ok", 1)):
        prep = Verifier(None).prepare(MINI, src)
        assert isinstance(prep, Prepared) and prep.run_lean and prep.reasons == [], src
        assert "repeated" not in prep.body.split("theorem")[0]
