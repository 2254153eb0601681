"""The run store: idempotent records, resume, exports, foreign/corrupt files, and a SIGKILLed writer."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from data.errors import DataError
from data.store import STORE_FILENAME, Attempt, RunStore

REPO = Path(__file__).resolve().parent.parent


def attempt(problem: str, index: int, status: str = "failed", **kw) -> Attempt:
    return Attempt(
        problem=problem,
        index=index,
        text=f"theorem {problem} : True := by\n  trivial -- attempt {index}",
        status=status,
        verdict={"status": status, "messages": [{"severity": "error", "data": f"e{index}"}], "axioms": []},
        **kw,
    )


FULL = attempt(
    "full", 3, "proved", strategy="decompose", model="tiny", sampling={"temperature": 1.0, "top_p": 0.95},
    seed=17, prompt_tokens=120, completion_tokens=340, split="test",
    timings={"wall_s": 2.5, "gen_s": 1.0, "gpu_s": 1.0, "lean_wall_s": 1.2, "lean_cpu_s": 1.1},
    trace={"sketch": "have h : P := by sorry", "lemmas": [{"name": "h", "proved": True}]},
)  # fmt: skip


def test_run_dir_layout_and_idempotent_start(tmp_path):
    with RunStore(tmp_path / "run1") as store:
        run = store.start_run("run1", {"k": 8, "model": "tiny"}, {"lean": "v4.19.0", "mathlib": None})
        assert store.start_run("run1", {"k": 99}) == run  # same name: the existing run (resume)
        other = store.start_run("run2", {})
        assert other != run
        info = store.run("run1")
        assert info.config == {"k": 8, "model": "tiny"} and info.run_id == run
        assert info.versions["python"].count(".") == 2 and info.versions["lean"] == "v4.19.0"
        assert "mathlib" not in info.versions  # None means not given
        if (REPO / ".git").exists():
            assert len(info.versions["git_commit"]) == 40
    assert (tmp_path / "run1" / STORE_FILENAME).is_file()
    with RunStore(tmp_path / "run1" / STORE_FILENAME) as store:  # the file itself opens the same store
        assert [r.name for r in store.runs()] == ["run1", "run2"]
        with pytest.raises(DataError, match="2 runs in this store"):
            store.run()


def test_record_is_idempotent_and_round_trips(tmp_path):
    with RunStore(tmp_path / "s.sqlite") as store:
        run = store.start_run("r", {})
        assert store.record(run, FULL) is True
        changed = attempt("full", 3, "failed")
        assert store.record(run, changed) is False  # same (run, problem, index): ignored, first one kept
        assert store.attempts(run) == [FULL]
        assert store.attempts(run)[0].proved
        assert store.record_many(run, [attempt("a", 0), attempt("a", 1), FULL, attempt("a", 1)]) == 2
        assert store.done(run) == {("full", 3), ("a", 0), ("a", 1)}
        assert [a.index for a in store.attempts(run, problem="a")] == [0, 1]
        assert store.attempts(run, status="proved") == [FULL]
        other = store.start_run("other", {})
        assert store.record(other, FULL) is True and store.done(other) == {("full", 3)}  # runs are separate
        info = store.run("r")
        assert (info.attempts, info.problems, info.proved) == (3, 2, 1)
        with pytest.raises(ValueError, match="not one of"):
            store.record(run, attempt("x", 0, "maybe"))


def test_record_many_is_all_or_nothing(tmp_path):
    with RunStore(tmp_path) as store:
        run = store.start_run("r", {})
        bad = attempt("b", 2)
        bad.text = None  # violates NOT NULL inside the transaction, after two good rows
        with pytest.raises(sqlite3.IntegrityError):
            store.record_many(run, [attempt("b", 0), attempt("b", 1), bad])
        assert store.done(run) == set()
        assert store.record_many(run, [attempt("b", 0), attempt("b", 1)]) == 2


def test_resume_after_reopen_and_many_pages(tmp_path):
    with RunStore(tmp_path) as store:
        run = store.start_run("r", {})
        store.record_many(run, [attempt(f"p{i % 7}", i) for i in range(2500)])
    with RunStore(tmp_path) as store:
        assert store.start_run("r", {}) == run
        assert len(store.done(run)) == 2500
        got = store.attempts(run)  # read back in pages of 1000
        assert len(got) == 2500 and [(a.problem, a.index) for a in got] == sorted(
            (f"p{i % 7}", i) for i in range(2500)
        )


def test_meta(tmp_path):
    with RunStore(tmp_path) as store:
        run = store.start_run("iterate", {})
        assert store.get_meta(run, "round") is None and store.get_meta(run, "round", 0) == 0
        store.set_meta(run, "round", 1)
        store.set_meta(run, "round", 2)
        store.set_meta(run, "checkpoints", {"1": "ckpt/r1"})
    with RunStore(tmp_path) as store:
        assert store.get_meta(run, "round") == 2 and store.get_meta(run, "checkpoints") == {"1": "ckpt/r1"}


def test_exports(tmp_path):
    import pyarrow.parquet as pq

    with RunStore(tmp_path / "run") as store:
        run = store.start_run("r", {})
        store.record_many(run, [FULL, attempt("a", 0), attempt("a", 1, seed=5)])
        expected = store.attempts(run)
        assert store.export_jsonl(run, tmp_path / "out" / "a.jsonl") == 3
        lines = (tmp_path / "out" / "a.jsonl").read_text().splitlines()
        assert [Attempt.from_dict(json.loads(line)) for line in lines] == expected
        assert store.export_parquet(run, tmp_path / "a.parquet") == 3
        table = pq.read_table(tmp_path / "a.parquet").to_pylist()
        assert [row["problem"] for row in table] == ["a", "a", "full"]
        full = table[2]
        assert json.loads(full["trace"]) == FULL.trace and json.loads(full["timings"]) == FULL.timings
        assert full["seed"] == 17 and table[0]["seed"] is None and table[0]["trace"] is None
        ds = store.to_dataset(run)
        assert (
            ds.num_rows == 3 and ds[2]["text"] == FULL.text and json.loads(ds[2]["verdict"]) == FULL.verdict
        )
    assert not [p for p in tmp_path.rglob(".*.tmp*")]  # exports are renamed into place, nothing left over


def test_foreign_corrupt_and_missing_files(tmp_path):
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE people (name TEXT)")
    with pytest.raises(DataError, match="not a Subgoal run store"):
        RunStore(foreign)
    with sqlite3.connect(foreign) as db:  # untouched: still not switched to WAL by us
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(DataError, match="corrupt run store or not an SQLite file"):
        RunStore(garbage)
    with pytest.raises(DataError, match="no run store at"):
        RunStore(tmp_path / "absent-run", create=False)
    newer = tmp_path / "newer"
    RunStore(newer).close()
    with sqlite3.connect(newer / STORE_FILENAME) as db:
        db.execute("UPDATE store_info SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(DataError, match="newer than this Subgoal"):
        RunStore(newer)


# ------------------------------------------------------------------------------------------ crash

MAKE = r"""
from data.store import Attempt

def make(p, i):
    return Attempt(problem=p, index=i, text=f"theorem {p} : True := by trivial -- {i}",
                   status="proved" if (i * 7 + len(p)) % 3 == 0 else "failed", verdict={"i": i, "p": p},
                   seed=i, prompt_tokens=i, completion_tokens=2 * i, timings={"wall_s": i / 10},
                   trace={"n": [p, i]})
"""

WRITER = (
    MAKE
    + r"""
import sys
from data.store import RunStore

path, problems, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with RunStore(path) as store:
    run = store.start_run("crash", {"k": k})
    done = store.done(run)
    for j in range(problems):
        p = f"p{j:03d}"
        todo = [i for i in range(k) if (p, i) not in done]
        singles, batch = [i for i in todo if i < k // 2], [i for i in todo if i >= k // 2]
        for i in singles:  # one transaction per attempt ...
            store.record(run, make(p, i))
            print(p, i, flush=True)
        if batch:  # ... and one for the second half
            store.record_many(run, [make(p, i) for i in batch])
            print("\n".join(f"{p} {i}" for i in batch), flush=True)
"""
)


def _expected(p: str, i: int) -> Attempt:
    namespace: dict = {}
    exec(MAKE, namespace)  # the writer's own attempt factory
    return namespace["make"](p, i)


def test_sigkilled_writer_loses_nothing_and_resumes(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    store_dir, problems, k = tmp_path / "run", 40, 10
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, str(script), str(store_dir), str(problems), str(k)]
    committed: set[tuple[str, int]] = set()
    sizes = []
    for kill_after in (15, 90, 210):  # kill it three times, at different points
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
        seen = 0
        assert proc.stdout is not None
        for line in proc.stdout:
            p, i = line.split()
            committed.add((p, int(i)))
            seen += 1
            if seen == 5:  # a reader in this process while the writer writes (WAL: no lock errors)
                with RunStore(store_dir, create=False) as reader:
                    assert {("p000", 0)} <= reader.done(reader.run("crash").id)
            if seen >= kill_after:
                proc.send_signal(signal.SIGKILL)
                break
        committed.update((p, int(i)) for p, i in (line.split() for line in proc.stdout.read().splitlines()))
        assert proc.wait() == -signal.SIGKILL
        with sqlite3.connect(store_dir / STORE_FILENAME) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        with RunStore(store_dir) as store:
            done = store.done(store.run("crash").id)
        assert committed <= done  # every attempt the writer saw committed survived the kill
        sizes.append(len(done))
    assert sizes == sorted(sizes) and sizes[-1] < problems * k  # each kill landed mid-run, progress kept

    finished = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert finished.returncode == 0, finished.stderr
    resumed = {(p, int(i)) for p, i in (line.split() for line in finished.stdout.splitlines())}
    assert not (resumed & committed)  # the resumed writer redid nothing that was already recorded
    with RunStore(store_dir) as store:
        run = store.run("crash")
        got = store.attempts(run.id)
    keys = [(a.problem, a.index) for a in got]
    assert len(keys) == len(set(keys)) == problems * k  # every (problem, index) exactly once
    assert set(keys) == {(f"p{j:03d}", i) for j in range(problems) for i in range(k)}
    assert all(a == _expected(a.problem, a.index) for a in got)  # contents match what was written
    with sqlite3.connect(store_dir / STORE_FILENAME) as db:
        dups = db.execute(
            "SELECT count(*) FROM (SELECT 1 FROM attempts GROUP BY run_id, problem, idx HAVING count(*) > 1)"
        )
        assert dups.fetchone()[0] == 0
