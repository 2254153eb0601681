"""The candidates' text work in worker processes (`prover.textwork`): the same results as in the run's own process,
for extraction and for the verifier's preparation of every soundness-corpus case, whole verdicts through the
FAKE Lean unchanged, and the work done here when the workers are gone."""

from __future__ import annotations

import os
import signal

import pytest
from fakes import fake_lean_settings
from helpers.prove import HEADER
from test_lean_soundness import CASES, PROBLEMS

from data.problem import Problem
from lean_env import make_verifier
from lean_env.verifier import Verifier
from prover.prompts.extract import candidate_proofs
from prover.runner import AsyncChecker, run_async
from prover.textwork import TextWorkers


@pytest.fixture(scope="module")
def workers():
    pool = TextWorkers(2)
    yield pool
    pool.close()


def test_preparation_in_a_worker_is_the_verifiers_own(workers):
    verifier = Verifier(None, lean_version="v4.19.0")
    items = [(PROBLEMS[c.problem], c.src) for c in CASES]
    here = [verifier.prepare(p, s) for p, s in items]
    there = run_async(workers.run(verifier.preparer(), items))
    assert [prep for prep, _ in there] == here  # every field: findings, reasons, the body sent, answers
    assert sum(not getattr(p, "run_lean", True) for p in here) >= 10  # the dangerous cases are among them


def test_extraction_in_a_worker_is_the_same(workers):
    problem = Problem("q", "theorem q (n : ℕ) : n + 0 = n := by", header=HEADER)
    completions = ["  simp\n```", "```lean4\ntheorem q (n : ℕ) : n + 0 = n := by\n  omega\n```", "no code", ""]
    assert run_async(workers.run(candidate_proofs, completions, problem, True)) == candidate_proofs(
        completions, problem, True)


def test_verdicts_through_the_workers_are_unchanged():
    problem = Problem("q", "theorem q (h₀ : 2 + 2 = 4) : 2 + 3 = 5 ∧ 1 < 2 := by", header=HEADER)
    statement = problem.formal_statement
    proofs = [f"{statement}\n  {tactic}" for tactic in ("norm_num", "sorry", "native_decide", "omega", "decide")]
    proofs.append("axiom cheat : False\n" + statement + "\n  exact cheat.elim")

    def verdicts(text_processes: int):  # each on fresh REPLs: the proof-state ids they number match too
        verifier = make_verifier(fake_lean_settings(workers=2))
        checker = AsyncChecker(verifier, text_processes=text_processes)
        try:
            out = run_async(checker.verify_many([(problem, p) for p in proofs]))
            assert text_processes == 0 or checker.text_workers.alive  # the workers did the preparing
            return out
        finally:
            checker.close()
            verifier.close()

    plain, moved = verdicts(0), verdicts(2)

    def judged(v):
        return {k: val for k, val in v.to_dict().items() if k not in ("wall_time", "cpu_time")}

    assert [judged(v) for v in moved] == [judged(v) for v in plain]
    assert {v.status.value for v in plain} >= {"proved", "unsound"}


def test_the_work_is_done_here_once_a_worker_dies():
    pool = TextWorkers(1)
    try:
        [pid] = {run_async(pool.run(os.getpid)) for _ in range(3)}
        assert pid != os.getpid()
        os.kill(pid, signal.SIGKILL)
        assert run_async(pool.run(os.getpid)) == os.getpid()  # broken pool: this process from now on
        assert not pool.alive
        assert run_async(pool.run(os.getpid)) == os.getpid()
    finally:
        pool.close()


def test_the_number_of_processes_can_be_set_and_is_checked(monkeypatch):
    from prover.errors import ProverError
    from prover.textwork import default_processes

    monkeypatch.setenv("SUBGOAL_TEXT_PROCESSES", "3")
    assert default_processes() == 3
    monkeypatch.setenv("SUBGOAL_TEXT_PROCESSES", "many")
    with pytest.raises(ProverError, match="SUBGOAL_TEXT_PROCESSES must be a number"):
        default_processes()


def test_an_eval_with_text_workers_gives_exact_pass_at_k(fragment_jsonl, fake_lean_env, tmp_path, monkeypatch):
    """The whole `subgoal eval` path with the runner's checker preparing on 2 text workers: the same verdicts and
    pass@k as the estimator gives (sorry never counted)."""
    from helpers.eval_runs import check_scripted_fragment_run

    monkeypatch.setenv("SUBGOAL_TEXT_PROCESSES", "2")
    check_scripted_fragment_run(fragment_jsonl, tmp_path / "fragment-local", ray=False)
