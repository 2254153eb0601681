"""What a run records says what happened: Lean's version is the toolchain's (none for the FAKE REPL), each
attempt's budget is the run's, HTTP waiting is not GPU time, and a zero-byte store is refused, not restarted.
Driven through `subgoal eval` with the scripted completion server and tests/fakes/fake_lean.py (a FAKE Lean)."""

from __future__ import annotations

import json

from fakes.scripted import ScriptedServer
from helpers.cli import env_for, run, served, write_problems

from data.store import RunStore


def test_an_eval_run_records_what_really_ran(tmp_path):
    problems = tmp_path / "set.jsonl"
    write_problems(problems, 2)
    out = tmp_path / "runs" / "e"
    args = ["eval", str(problems), "-k", "2", "--out", str(out)]
    with ScriptedServer([("theorem p", "  norm_num\n```")]) as server:
        p = run(args + served(server), env_for(tmp_path))
        assert p.returncode == 0, p.stderr
        report_text = (out / "report.json").read_text()
        report = json.loads(report_text)
        lean = report["run"]["lean"]
        assert lean["lean_version"] is None and lean["repl"].endswith("fake_lean.py")  # not the pinned v4.27.0
        with RunStore(out, create=False) as store:
            attempts = store.attempts(store.runs()[-1].id)
        assert len(attempts) == 4
        assert all(a.sampling["budget"] == report["run"]["budget"] for a in attempts)
        assert all(a.timings["gen_s"] > 0 and a.timings["gpu_s"] == 0.0 for a in attempts)  # the server's GPU
        assert report["cost"]["gpu_s"] == 0.0

        (out / "store.sqlite").write_bytes(b"")  # truncated (a full disk, a bad copy)
        p = run(args + served(server), env_for(tmp_path))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "is empty (0 bytes)" in " ".join(p.stderr.split())
    assert (out / "report.json").read_text() == report_text  # the last good report is kept
