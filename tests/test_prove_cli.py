"""`subgoal prove` as a user runs it: real processes, a pseudo-terminal for the live view and Ctrl-C, SIGKILL
and resume for batch runs. Generation goes through the OpenAI-compatible backend to a scripted completion server
on a local socket (tests/fakes/scripted.py); Lean is tests/fakes/fake_lean.py (a FAKE Lean)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes.scripted import ScriptedServer
from helpers.cli import STATEMENT, SUBGOAL, env_for, run, served, store_rows, write_problems
from helpers.prove import HEADER

pexpect = pytest.importorskip("pexpect", reason="pexpect is not installed (pip install -e '.[dev]')")


def test_prove_a_statement(tmp_path):
    with ScriptedServer([("theorem t", ["  exact h₀\n```", "  ring\n```"])]) as server:
        p = run(["prove", STATEMENT, "-k", "4", "--no-live", *served(server)], env_for(tmp_path))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == STATEMENT + "\n  ring"
    assert "proved t" in p.stderr


def test_not_proved_prints_the_best_candidate_and_exits_1(tmp_path):
    with ScriptedServer([("theorem t", "  exact h₀\n```")]) as server:
        p = run(["prove", STATEMENT, "-k", "2", "--no-live", *served(server)], env_for(tmp_path))
    assert p.returncode == 1
    assert "not proved t" in p.stderr and "exact h₀" in p.stdout


def test_missing_lean_is_one_message(tmp_path):
    env = env_for(tmp_path)
    del env["SUBGOAL_LEAN__REPL_PATH"]
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin"
    env["HOME"] = str(tmp_path)  # no ~/.elan here
    p = run(["prove", STATEMENT, "--model", "unused"], env)
    assert p.returncode == 2
    assert p.stderr.startswith("error: ") and "Traceback" not in p.stderr
    assert "REPL" in p.stderr and len(p.stderr.strip().splitlines()) <= 3


def test_bad_flags_are_user_errors(tmp_path):
    p = run(["prove", STATEMENT, "--strategy", "magic", "--model", "x"], env_for(tmp_path))
    assert p.returncode == 2 and "unknown strategy 'magic'" in p.stderr and "Traceback" not in p.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[complete\n")
    p = run(["prove", STATEMENT, "--prompts", str(bad), "--model", "x"], env_for(tmp_path))
    assert p.returncode == 2 and "prompt file" in p.stderr
    p = run(["prove", STATEMENT, "-k", "4", "-n", "2", "--model", "x"], env_for(tmp_path))  # same rule as eval
    assert p.returncode == 2 and "n >= k" in p.stderr and "Traceback" not in p.stderr


LEAN_FILE = HEADER + """/-- an easy one -/
theorem easy (h₀ : 2 + 2 = 4) : 2 + 3 = 5 := by
  sorry

theorem proved_already : 1 = 1 := by rfl

theorem sketched (h₀ : 2 + 2 = 4) : (2 + 3) * 2 = 10 := by
  have h1 : 2 + 3 = 5 := by sorry
  norm_num

theorem hard (x : ℕ) : x * x + x ≥ x := by sorry
"""


def test_fill_the_sorries_of_a_lean_file(tmp_path):
    src = tmp_path / "Work.lean"
    src.write_text(LEAN_FILE)
    rules = [("theorem easy", "  norm_num\n```"), ("theorem hard", "  exact h₀\n```"),
             ("theorem sketched_sub1", "  decide\n```")]
    with ScriptedServer(rules) as server:
        p = run(["prove", str(src), "-k", "2", "--no-live", *served(server)], env_for(tmp_path))
        assert p.returncode == 1, p.stderr  # two of three proved
        assert src.read_text() == LEAN_FILE  # the input is never overwritten without --in-place
        done = (tmp_path / "Work.proved.lean").read_text()
        assert "theorem easy (h₀ : 2 + 2 = 4) : 2 + 3 = 5 := by\n  norm_num" in done
        assert "theorem hard (x : ℕ) : x * x + x ≥ x := by sorry" in done and "/-- an easy one -/" in done
        assert "  have h1 : 2 + 3 = 5 := by decide\n  norm_num\n" in done  # the sketch, completed
        assert "2/3 sorry theorems proved" in p.stderr

        refused = run(["prove", str(src), "--out", str(src), *served(server)], env_for(tmp_path))
        assert refused.returncode == 2 and "--in-place" in refused.stderr

    rules[1] = ("theorem hard", "  nlinarith\n```")
    with ScriptedServer(rules) as server:
        p = run(["prove", str(src), "--in-place", "--no-live", *served(server)], env_for(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "sorry" not in src.read_text()






# `subgoal` with a Ctrl-C at one exact moment: right after the first result is printed (a user's Ctrl-C as the
# answer appears). The console is wrapped to send it; the signal, its handler and everything after are the real ones.
CTRL_C_AFTER_THE_FIRST_PRINT = """
import signal, sys
from eval.cli import main, prove_cmd

class CtrlCAfterThePrint:
    def __init__(self, console):
        self.console, self.sent = console, False
    def print(self, *args, **kwargs):
        self.console.print(*args, **kwargs)
        if not self.sent:
            self.sent = True
            signal.raise_signal(signal.SIGINT)
    def __getattr__(self, name):
        return getattr(self.console, name)

prove_cmd.console = CtrlCAfterThePrint(prove_cmd.console)
main(sys.argv[1:])
"""


def test_a_ctrl_c_as_the_result_is_printed_still_writes_the_completed_file(tmp_path):
    """The race of the interactive prover: the proof was printed, the Ctrl-C came before the .lean file was written.
    What is printed is on disk (written first, atomically), the rest is printed, then the Ctrl-C stops it: 130."""
    src = tmp_path / "Work.lean"
    src.write_text(LEAN_FILE)
    rules = [("theorem easy", "  norm_num\n```"), ("theorem hard", "  nlinarith\n```"),
             ("theorem sketched_sub1", "  decide\n```")]
    with ScriptedServer(rules) as server:
        p = subprocess.run([sys.executable, "-c", CTRL_C_AFTER_THE_FIRST_PRINT, "prove", str(src), "--in-place",
                            "--no-live", *served(server)], env=env_for(tmp_path), capture_output=True, text=True,
                           timeout=120)
    done = src.read_text()
    assert "sorry" not in done and "theorem easy (h₀ : 2 + 2 = 4) : 2 + 3 = 5 := by\n  norm_num" in done
    assert p.returncode == 130, p.stderr
    assert "Traceback" not in p.stderr and "interrupted" in p.stderr
    assert "  norm_num" in p.stdout and "nlinarith" in p.stdout  # printed in full, after the Ctrl-C too
    assert "3/3 sorry theorems proved; wrote" in p.stderr
    assert sorted(f.name for f in tmp_path.iterdir() if f.is_file()) == ["Work.lean"]  # no temporary file left


def test_batch_run_summary_and_exported_proofs(tmp_path):
    problems = tmp_path / "set.jsonl"
    write_problems(problems, 3)
    out = tmp_path / "runs" / "b"
    rules = [("theorem p1", "  exact h₀\n```"), ("theorem p", "  norm_num\n```")]
    with ScriptedServer(rules) as server:
        p = run(["prove", str(problems), "-k", "2", "--all-attempts", "--out", str(out), *served(server)],
                env_for(tmp_path))
        asked = len(server.requests)
        # the same run directory with another seed or strategy: refused, one line naming the changes
        again = run(["prove", str(problems), "-k", "2", "--all-attempts", "--out", str(out), "--seed", "1",
                     "--strategy", "repair", *served(server)], env_for(tmp_path))
        asked_again = len(server.requests) - asked
    assert p.returncode == 0, p.stderr
    rows = store_rows(out)
    assert len(rows) == 6 and len(set((r[0], r[1]) for r in rows)) == 6
    assert {r[0] for r in rows if r[2] == "proved"} == {"p0", "p2"}
    assert "2/3" in p.stdout and "Lean CPU" in p.stdout
    proofs = [json.loads(line) for line in (out / "proofs.jsonl").read_text().splitlines()]
    assert [(x["problem"], x["index"]) for x in proofs] == [("p0", 0), ("p2", 0)]
    assert proofs[0]["proof"].endswith("norm_num\n")
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert asked_again == 0 and "loading " not in again.stderr  # the refused run loaded no model, generated nothing
    message = " ".join(again.stderr.split())
    assert "strategy='sample', not 'repair'" in message and "seed=0, not 1" in message
    assert len(store_rows(out)) == 6  # nothing added


def test_batch_resumes_after_sigkill_without_duplicates_or_losses(tmp_path):
    problems = tmp_path / "set.jsonl"
    names = write_problems(problems, 5)
    out = tmp_path / "runs" / "killed"
    # two attempts at a time: a run whose 15 requests all went out at once would finish before the kill
    args = ["prove", str(problems), "-k", "3", "--all-attempts", "--max-in-flight", "2", "--out", str(out)]
    rules = [("theorem p", ["  norm_num\n```", "  exact h₀\n```", "  decide\n```"])]
    with ScriptedServer(rules, delay_s=0.4) as server:
        proc = subprocess.Popen(SUBGOAL + args + served(server), env=env_for(tmp_path), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 90
        before: list = []
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "store.sqlite").exists():
                try:
                    before = store_rows(out)
                except sqlite3.OperationalError:  # the schema is being created
                    before = []
                if len(before) >= 3:
                    break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        before = store_rows(out)
        assert 3 <= len(before) < 15, "the batch should be killed mid-run"
        done_first = {r[0] for r in before}
        first_requests = len(server.requests)
        p = run(args + served(server), env_for(tmp_path))
        resumed_prompts = [r["prompt"] for r in server.requests[first_requests:]]
    assert p.returncode == 0, p.stderr
    after = store_rows(out)
    assert len(after) == 15 and len({(r[0], r[1]) for r in after}) == 15  # every unit once
    assert [r for r in after if (r[0], r[1]) in {(b[0], b[1]) for b in before}] == before  # nothing rewritten
    complete_first = {n for n in done_first if sum(1 for r in before if r[0] == n) == 3}
    for name in complete_first:  # work already recorded is not generated again
        assert not any(f"theorem {name} " in prompt for prompt in resumed_prompts)
    assert {r[0] for r in after} == set(names)


def wait_for_rows(proc: subprocess.Popen, out: Path, at_least: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "store.sqlite").exists():
            try:
                if len(store_rows(out)) >= at_least:
                    return
            except sqlite3.OperationalError:  # the schema is being created
                pass
        time.sleep(0.02)


def test_batch_exactly_once_under_sigkill_at_random_moments(tmp_path):
    import random

    rng = random.Random(13)
    problems = tmp_path / "set.jsonl"
    write_problems(problems, 6)
    out = tmp_path / "runs" / "kills"
    args = ["prove", str(problems), "-k", "6", "--all-attempts", "--max-in-flight", "3", "--out", str(out)]
    rules = [("theorem p", ["  norm_num\n```", "  exact h₀\n```"])]
    with ScriptedServer(rules, delay_s=lambda count, body: 0.1 + 0.1 * rng.random()) as server:
        history: list[list] = []
        for _ in range(3):  # three kills, each at a random moment while attempts stream
            proc = subprocess.Popen(SUBGOAL + args + served(server), env=env_for(tmp_path),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            wait_for_rows(proc, out, (len(history[-1]) if history else 0) + rng.randint(1, 4))
            time.sleep(rng.uniform(0.0, 0.1))  # between results: some attempts are in flight
            assert proc.poll() is None, "the run should still be streaming when it is killed"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rows = store_rows(out)
            assert len(rows) == len(set((r[0], r[1]) for r in rows)) < 36  # no duplicate, not finished
            if history:
                assert set(history[-1]) <= set(rows)  # nothing recorded was lost or rewritten
            history.append(rows)
        p = run(args + served(server), env_for(tmp_path))
    assert p.returncode == 0, p.stderr
    after = store_rows(out)
    assert len(after) == 36 and len({(r[0], r[1]) for r in after}) == 36  # every attempt exactly once
    assert set(history[-1]) <= set(after)


def test_batch_ctrl_c_keeps_what_finished_prints_the_summary_and_resumes(tmp_path):
    problems = tmp_path / "set.jsonl"
    write_problems(problems, 4)
    out = tmp_path / "runs" / "interrupted"
    args = ["prove", str(problems), "-k", "3", "--all-attempts", "--max-in-flight", "2", "--out", str(out)]
    with ScriptedServer([("theorem p", "  norm_num\n```")], delay_s=0.2) as server:
        proc = subprocess.Popen(SUBGOAL + args + served(server), env=env_for(tmp_path), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        wait_for_rows(proc, out, 2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
        assert "Traceback" not in stderr and "interrupted" in stderr
        assert "subgoal prove" in stdout and "proved" in stdout  # the summary of what finished
        rows = store_rows(out)
        assert 2 <= len(rows) < 12 and len({(r[0], r[1]) for r in rows}) == len(rows)
        proofs = (out / "proofs.jsonl").read_text().splitlines()
        assert len(proofs) == len({r[0] for r in rows if r[2] == "proved"})  # the best so far, exported
        p = run(args + served(server), env_for(tmp_path))
    assert p.returncode == 0, p.stderr
    assert len(store_rows(out)) == 12 and set(rows) <= set(store_rows(out))


def test_interactive_live_view_in_a_terminal(tmp_path):
    with ScriptedServer([("theorem t", ["  exact h₀\n```", "  omega\n```"])]) as server:
        child = pexpect.spawn(SUBGOAL[0], SUBGOAL[1:] + ["prove", STATEMENT, "-k", "3", *served(server)],
                              env=env_for(tmp_path), encoding="utf-8", timeout=90, dimensions=(40, 110))
        child.expect("subgoal prove: t")  # the live panel
        child.expect("Lean calls")
        child.expect(r"proved\S* t")  # colored in a terminal
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 0
    assert "omega" in child.before


def test_ctrl_c_prints_the_best_partial_sketch(tmp_path):
    sketch = ("```lean4\ntheorem d (h₀ : 2 + 2 = 4) : (2 + 3) * 2 = 10 ∧ 1 < 2 := by\n  have h1 : 2 + 3 = 5 := by sorry\n"
              "  have h2 : 5 * 2 = 10 := by sorry\n  constructor\n  · norm_num\n  · decide\n```")
    rules = [("Do not write the full proof", sketch), ("theorem d_sub1", "  norm_num\n```"),
             ("theorem d_sub2", "  decide\n```")]

    def slow_second_lemma(count: int, body: dict) -> float:
        return 60.0 if "theorem d_sub2" in str(body.get("prompt")) else 0.0

    statement = "theorem d (h₀ : 2 + 2 = 4) : (2 + 3) * 2 = 10 ∧ 1 < 2 := by"
    with ScriptedServer(rules, delay_s=slow_second_lemma) as server:
        child = pexpect.spawn(SUBGOAL[0], SUBGOAL[1:] + ["prove", statement, "--strategy", "decompose", "-k", "1",
                                                         *served(server)],
                              env=env_for(tmp_path), encoding="utf-8", timeout=90, dimensions=(40, 110))
        child.expect("subgoal prove: d")
        deadline = time.monotonic() + 60
        while not any("theorem d_sub2" in str(r.get("prompt")) for r in server.requests):
            assert time.monotonic() < deadline, "the second lemma was never requested"
            child.expect([pexpect.TIMEOUT, pexpect.EOF], timeout=0.2)
        # The lemmas run concurrently: interrupt only once the first one is verified (the live view says so).
        child.expect(r"proved[^\n]*d_sub1", timeout=60)
        child.sendintr()
        child.expect("interrupted")
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 130
    printed = child.before.replace("\r\n", "\n")
    assert "sketch" in printed
    assert "have h1 : 2 + 3 = 5 := by norm_num" in printed  # the proved lemma, substituted
    assert "have h2 : 5 * 2 = 10 := by sorry" in printed  # the open one, still a sorry


def tiny_model_args(tmp_path_factory) -> list[str]:
    from helpers.prove import tiny_checkpoint_dir

    return ["--backend", "transformers", "--model", str(tiny_checkpoint_dir(tmp_path_factory)), "--max-tokens", "12"]


def test_the_tiny_model_in_batch_mode(tmp_path, tmp_path_factory):
    """The real transformers backend with a tiny random checkpoint: it writes no proofs, but the whole batch path
    runs (batched generation, extraction, Lean, store, summary)."""
    model = tiny_model_args(tmp_path_factory)
    env = env_for(tmp_path, OMP_NUM_THREADS="1", SUBGOAL_MODEL__DEVICE="cpu")
    problems = tmp_path / "set.jsonl"
    write_problems(problems, 2)
    out = tmp_path / "runs" / "tiny"
    p = run(["prove", str(problems), "-k", "2", "--out", str(out), *model], env)
    assert p.returncode == 0, p.stderr
    rows = store_rows(out)
    assert [(r[0], r[1]) for r in rows] == [("p0", 0), ("p0", 1), ("p1", 0), ("p1", 1)]
    assert all(r[2] in ("failed", "unsound") for r in rows)
    assert "0/2" in p.stdout


@pytest.mark.slow
def test_the_tiny_model_in_interactive_mode(tmp_path, tmp_path_factory):
    env = env_for(tmp_path, OMP_NUM_THREADS="1", SUBGOAL_MODEL__DEVICE="cpu")
    child = pexpect.spawn(SUBGOAL[0], SUBGOAL[1:] + ["prove", STATEMENT, "-k", "2", *tiny_model_args(tmp_path_factory)],
                          env=env, encoding="utf-8", timeout=120, dimensions=(40, 110))
    child.expect("subgoal prove: t")
    child.expect(r"not proved\S* t")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
