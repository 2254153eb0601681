"""Kernel replay (`subgoal lean audit`): the comparator driver against a FAKE of comparator's command line
(tests/fakes/fake_comparator.py, interface from comparator's README), verdicts into the run store, resumption, the
PutnamBench definition holes, the leaderboard's audited counts, and setup/doctor for comparator."""

from __future__ import annotations

import json
import sys

import pytest
from fakes import FAKE_COMPARATOR, FAKE_LAKE
from fakes.repl_rules import MINIF2F_HEADER

from data.problem import Problem
from data.store import Attempt, RunStore
from eval.audit import audit_counts, audit_run
from lean_env.audit import Comparator, ComparatorTools

STATEMENT = "theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by\n"
HONEST = STATEMENT + "  subst h₀\n  rw [Real.sq_sqrt] <;> norm_num\n"
PUTNAM = ("abbrev putnam_1999_b2_solution : ℕ := sorry\n"
          "theorem putnam_1999_b2 : putnam_1999_b2_solution = 3 * 2 := by\n")


@pytest.fixture
def setup(tmp_path, monkeypatch):
    tools = []
    for name in ("comparator", "lean4export", "landrun"):  # comparator needs them to exist and be executable
        p = tmp_path / "bin" / name
        p.parent.mkdir(exist_ok=True)
        p.write_text("#!/bin/sh\nexit 0\n")
        p.chmod(0o755)
        tools.append(p)
    mathlib = tmp_path / "mathlib4"
    mathlib.mkdir()
    (mathlib / "lean-toolchain").write_text("leanprover/lean4:v4.27.0\n")
    problems = tmp_path / "problems.jsonl"
    rows = [Problem("mathd_algebra_10", STATEMENT, MINIF2F_HEADER),
            Problem("putnam_1999_b2", PUTNAM, "import Mathlib\n\n",
                    extra={"answers": {"putnam_1999_b2_solution": {"type": "ℕ", "answer": "6"}}})]
    problems.write_text("".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in rows))
    run_dir = tmp_path / "run"
    with RunStore(run_dir) as store:
        rid = store.start_run("r", {"problem_set": str(problems), "putnam_answers": "produced"})
        store.record_many(rid, [
            Attempt("mathd_algebra_10", 0, MINIF2F_HEADER + HONEST, "proved", {"status": "proved"}),
            Attempt("mathd_algebra_10", 1, HONEST + "-- FAKE_KERNEL_REJECT\n", "proved", {"status": "proved"}),
            Attempt("mathd_algebra_10", 2, STATEMENT + "  linarith\n", "failed", {"status": "failed"}),
            Attempt("putnam_1999_b2", 0, "abbrev putnam_1999_b2_solution : ℕ := 6\n"
                    "theorem putnam_1999_b2 : putnam_1999_b2_solution = 3 * 2 := by\n  rfl\n", "proved",
                    {"status": "proved"}),
        ])
    log = tmp_path / "comparator.log"
    monkeypatch.setenv("FAKE_COMPARATOR_LOG", str(log))
    checker = Comparator(ComparatorTools(*tools), mathlib, command=[sys.executable, str(FAKE_COMPARATOR)],
                         timeout_s=30, workdir=tmp_path)
    return checker, run_dir, log


def test_audit_records_the_checkers_verdict_beside_ours(setup):
    checker, run_dir, log = setup
    lines: list[str] = []
    summary = audit_run(run_dir, None, checker, log=lines.append)
    assert (summary.proved, summary.audited, summary.accepted, summary.rejected) == (3, 3, 2, 1)
    assert any("REJECTED" in ln and "mathd_algebra_10#1" in ln and "declaration type mismatch" in ln for ln in lines)
    with RunStore(run_dir, create=False) as store:
        audits = store.audits(store.run().id)
        assert store.attempts(store.run().id, status="proved")[0].status == "proved"  # our verdict is kept
    assert audits[("mathd_algebra_10", 0)]["accepted"] is True
    assert audits[("mathd_algebra_10", 1)]["accepted"] is False and ("mathd_algebra_10", 2) not in audits
    calls = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(calls) == 3 and all(c["argv"] == ["config.json"] for c in calls)
    by_theorem = {c["config"]["theorem_names"][0]: c["config"] for c in calls}
    assert by_theorem["mathd_algebra_10"]["definition_names"] == []
    assert by_theorem["putnam_1999_b2"]["definition_names"] == ["putnam_1999_b2_solution"]  # answer produced
    assert by_theorem["putnam_1999_b2"]["permitted_axioms"] == ["Classical.choice", "Quot.sound", "propext"]
    assert audit_counts(run_dir) == {"checker": "comparator", "proved": 3, "audited": 3, "accepted": 2,
                                     "rejected": 1}
    again = audit_run(run_dir, None, checker, log=lines.append)  # resumes: nothing left to check
    assert (again.audited, again.skipped) == (0, 3)
    forced = audit_run(run_dir, None, checker, force=True, limit=1, log=lines.append)
    assert (forced.audited, forced.skipped) == (1, 0)


def test_the_project_is_what_the_verifier_sent(setup, tmp_path):
    checker, _, _ = setup
    problem = Problem("mathd_algebra_10", STATEMENT, MINIF2F_HEADER)
    project = checker.project(problem, MINIF2F_HEADER + HONEST, tmp_path / "p")
    challenge = (project / "Challenge.lean").read_text()
    solution = (project / "Solution.lean").read_text()
    assert challenge == MINIF2F_HEADER + STATEMENT.rstrip() + " sorry\n"
    assert solution == MINIF2F_HEADER + HONEST  # the repeated header is sent once, as the verifier sends it
    lakefile = (project / "lakefile.toml").read_text()
    assert 'name = "Challenge"' in lakefile and 'name = "Solution"' in lakefile and "mathlib4" in lakefile
    assert (project / "lean-toolchain").read_text() == "leanprover/lean4:v4.27.0\n"


def test_a_checker_that_cannot_run_is_not_a_rejection(setup):
    checker, run_dir, _ = setup
    broken = Comparator(checker.tools, checker.mathlib_dir, command=["/nonexistent/comparator"], timeout_s=5)
    summary = audit_run(run_dir, None, broken, log=lambda _: None)
    assert summary.unavailable == 3 and summary.rejected == 0


def test_setup_plan_and_doctor_cover_comparator(monkeypatch, tmp_path):
    from lean_env import toolchain

    monkeypatch.setenv("SUBGOAL_LEAN_HOME", str(tmp_path))
    monkeypatch.delenv("COMPARATOR_LANDRUN", raising=False)
    monkeypatch.delenv("COMPARATOR_LEAN4EXPORT", raising=False)
    plan = toolchain.comparator_plan("v4.27.0", tmp_path)
    shells = [s.shell() for s in plan]
    assert any("--branch v4.27.0 https://github.com/leanprover/comparator" in s for s in shells)
    assert any("lake build lean4export comparator" in s or "build lean4export comparator" in s for s in shells)
    assert any("landrun" in s and "go build" in s for s in shells)
    assert any("--branch v4.27.0 https://github.com/leanprover/lean4checker" in s for s in shells)
    checks = {c.name: c for c in toolchain.doctor(None)}
    assert not checks["comparator (kernel replay)"].ok and not checks["comparator (kernel replay)"].required
    assert not checks["lean4checker (kernel replay)"].required
    with pytest.raises(toolchain.LeanNotFound, match="comparator, lean4export, landrun"):
        toolchain.find_comparator(None)


def test_leaderboard_shows_audited_counts_and_putnam_tracks(setup):
    from eval.leaderboard import _set_of, collect_reports, load_reported, render_markdown

    checker, run_dir, _ = setup
    audit_run(run_dir, None, checker, log=lambda _: None)
    reports = collect_reports(run_dir, n_boot=10)
    assert reports[0]["audit"]["accepted"] == 2
    md = render_markdown(reports, load_reported())
    assert "kernel-checked" in md and "2/3 (comparator, 1 rejected)" in md
    given = {"run": {"problem_set": "putnambench", "putnam_answers": "given"}}
    produced = {"run": {"problem_set": "putnambench", "putnam_answers": "produced"}}
    assert (_set_of(given), _set_of(produced)) == ("putnambench (lean-wsolution)", "putnambench (lean-nosolution)")
    assert _set_of({"run": {"problem_set": "minif2f-test", "putnam_answers": "given"}}) == "minif2f-test"


def test_lean4checker_builds_then_replays(setup, tmp_path):
    from lean_env.audit import Lean4Checker

    _, run_dir, _ = setup
    checker = Lean4Checker(tmp_path / "bin" / "lean4checker", tmp_path / "mathlib4",
                           lake=[sys.executable, str(FAKE_LAKE)], timeout_s=30, workdir=tmp_path)
    problem = Problem("mathd_algebra_10", STATEMENT, MINIF2F_HEADER)
    assert checker.check(problem, HONEST).accepted is True
    rejected = checker.check(problem, HONEST + "-- FAKE_KERNEL_REJECT\n")
    assert rejected.accepted is False and rejected.detail.startswith("kernel replay: exit 1")
    broken = checker.check(problem, HONEST + "-- FAKE_BUILD_ERROR\n")
    assert broken.accepted is False and broken.detail.startswith("build: exit 1")
    summary = audit_run(run_dir, None, checker, log=lambda _: None)
    assert (summary.accepted, summary.rejected) == (2, 1)
    assert audit_counts(run_dir)["checker"] == "lean4checker"
