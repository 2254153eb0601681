"""Failures of the machine are not failures of the proof: recorded apart, counted apart, retried (a bounded
number of times) when the run resumes. The machine here is a FAKE: a wrapper around tests/fakes/fake_lean.py (a FAKE
Lean) that dies at start while a marker file exists, as a REPL on a broken node would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import FAKE_LEAN
from fakes.scripted import ScriptedServer
from helpers.cli import cli, served, write_problems

from data.store import INFRA_RETRIES, RETRIES_META, RunStore
from lean_env.errors import ReplTimeout, machine_fault


@pytest.fixture
def flaky_node(tmp_path, monkeypatch) -> Path:
    broken = tmp_path / "node-is-broken"
    wrapper = tmp_path / "flaky_lean.py"
    wrapper.write_text(f"import os, runpy, sys\nif os.path.exists({str(broken)!r}):\n    sys.exit(3)\n"
                       f"runpy.run_path({str(FAKE_LEAN)!r}, run_name='__main__')\n")
    for key, value in {"SUBGOAL_LEAN__REPL_PATH": str(wrapper), "SUBGOAL_LEAN__WORKERS": "1",
                       "SUBGOAL_LEAN__TIMEOUT_S": "60", "SUBGOAL_RUN_DIR": str(tmp_path / "runs")}.items():
        monkeypatch.setenv(key, value)
    broken.touch()
    return broken


def _stored(out: Path) -> tuple[list, dict]:
    with RunStore(out, create=False) as store:
        run_id = store.runs()[-1].id
        return store.attempts(run_id), store.get_meta(run_id, RETRIES_META, {})


def test_machine_failures_are_counted_apart_and_retried_on_resume(tmp_path, flaky_node, capsys):
    problems = tmp_path / "set.jsonl"
    write_problems(problems, 2)
    out = tmp_path / "runs" / "flaky"
    with ScriptedServer([("theorem p", "  norm_num\n```")]) as server:
        args = ["eval", str(problems), "-k", "2", "--out", str(out), *served(server)]
        assert cli(*args) == 0
        attempts, _ = _stored(out)
        assert len(attempts) == 4 and all(a.status == "crashed" and a.verdict["infra"] for a in attempts)
        assert all(any("infrastructure:" in r for r in a.verdict["reasons"]) for a in attempts)
        report = json.loads((out / "report.json").read_text())
        assert report["infra_failures"] == 4 and not report["complete"]
        assert "4 infrastructure failures" in " ".join(capsys.readouterr().out.split())

        flaky_node.unlink()  # the node is repaired
        assert cli(*args) == 0
        assert "4 attempts recorded, 0 already done" in " ".join(capsys.readouterr().err.split())
        attempts, retries = _stored(out)
        assert len(attempts) == 4 and all(a.status == "proved" and not a.verdict["infra"] for a in attempts)
        assert retries == {f"p{i}#{j}": 1 for i in range(2) for j in range(2)}
        report = json.loads((out / "report.json").read_text())
        assert report["infra_failures"] == 0 and report["complete"] and report["overall"]["solved"] == 2


def test_retries_are_bounded(tmp_path, flaky_node, capsys):
    problems = tmp_path / "set.jsonl"
    write_problems(problems, 1)
    out = tmp_path / "runs" / "broken-for-good"
    with ScriptedServer([("theorem p", "  norm_num\n```")]) as server:
        args = ["eval", str(problems), "-k", "1", "--out", str(out), *served(server)]
        for _ in range(INFRA_RETRIES + 2):
            assert cli(*args) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("1 attempts recorded") == 1 + INFRA_RETRIES and "0 attempts recorded, 1 already done" in err
    attempts, retries = _stored(out)
    assert len(attempts) == 1 and attempts[0].verdict["infra"] and retries == {"p0#0": INFRA_RETRIES}


def test_a_starved_timeout_is_the_machines_a_busy_one_the_proofs():
    starved, busy = ReplTimeout("no answer within 300s"), ReplTimeout("no answer within 300s")
    starved.wall_s, starved.cpu_s = 300.0, 12.0  # 4% of a CPU: the node was overloaded
    busy.wall_s, busy.cpu_s = 300.0, 297.0  # Lean worked the whole time: the proof's own timeout
    assert "starved" in machine_fault(starved) and machine_fault(busy) == ""
