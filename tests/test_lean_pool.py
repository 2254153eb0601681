"""Fault tests: a FAKE REPL (tests/fakes/fake_repl.py) that hangs, crashes, answers garbage, grows memory, is slow or
chatters. The Repl always returns or raises a typed error; the pool answers every job, loses none, restarts
workers and keeps going; headers are imported once per process; REPLs are recycled."""

from __future__ import annotations

import asyncio
import json
import queue
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from fakes import FAKE_REPL

from lean_env import Repl, ReplPool
from lean_env.errors import PoolClosed, ReplCrashed, ReplGarbage, ReplOutOfMemory, ReplTimeout
from lean_env.pool import HeaderRejected
from lean_env.protocol import CommandResult

FAKE = [sys.executable, str(FAKE_REPL)]
HEADER = "import Mathlib\nimport Aesop\n\nset_option maxHeartbeats 400000\n\nopen BigOperators Real\n\n"


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ---- one Repl ------------------------------------------------------------------------------------------
def test_repl_timeout_kills_the_whole_group_and_restarts(tmp_path, monkeypatch):
    child_file = tmp_path / "child"
    monkeypatch.setenv("FAKE_REPL_CHILD_PID", str(child_file))
    repl = Repl(FAKE, timeout_s=0.8)
    try:
        assert repl.run_cmd("def a := 1").env == 0
        first_pid = repl.pid
        t0 = time.monotonic()
        with pytest.raises(ReplTimeout):
            repl.run_cmd("FAKE_SPAWN")
        assert time.monotonic() - t0 < 5
        child = int(child_file.read_text())
        deadline = time.monotonic() + 5
        while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the REPL's child survived the group kill"
            time.sleep(0.05)
        assert not psutil.pid_exists(first_pid) or psutil.Process(first_pid).status() == psutil.STATUS_ZOMBIE
        r = repl.run_cmd("def b := 2")  # a fresh process: env ids start again
        assert r.env == 0 and repl.pid != first_pid and repl.restarts == 1 and repl.generation == 2
    finally:
        repl.close()


@pytest.mark.parametrize("marker,error", [("FAKE_CRASH", ReplCrashed), ("FAKE_GARBAGE", ReplGarbage),
                                          ("FAKE_CHATTER", ReplGarbage)])
def test_repl_crash_and_garbage_are_typed(marker, error):
    repl = Repl(FAKE, timeout_s=5)
    try:
        repl.run_cmd("def a := 1")
        with pytest.raises(error) as info:
            repl.run_cmd(marker)
            if marker == "FAKE_CHATTER":  # the unrequested frame after a good answer: caught before the next call
                time.sleep(0.2)
                repl.assert_quiet()
        if error is ReplCrashed:
            assert "crashing on purpose" in info.value.stderr_tail
        assert not repl.alive
        assert repl.run_cmd("def b := 2").env == 0
    finally:
        repl.close()


def test_repl_memory_cap(monkeypatch):
    monkeypatch.setenv("FAKE_REPL_GROW_MB", "300")
    repl = Repl(FAKE, timeout_s=20, memory_mb=150)
    try:
        with pytest.raises(ReplOutOfMemory):
            repl.run_cmd("FAKE_GROW")
        assert not repl.alive
        assert repl.run_cmd("def ok := 1").env == 0
    finally:
        repl.close()


def test_repl_missing_program_is_typed():
    repl = Repl(["/nonexistent/repl-binary"], timeout_s=2, isolate_network=False)
    with pytest.raises(ReplCrashed, match="could not start"):
        repl.run_cmd("def a := 1")
    repl.close()


def test_repl_has_private_tmpdir_and_rlimits():
    repl = Repl(FAKE, timeout_s=5)
    try:
        repl.run_cmd("def a := 1")
        proc = psutil.Process(repl.pid)
        assert proc.cwd() == str(repl.workdir) and "subgoal-repl-" in proc.cwd()
        assert proc.environ()["TMPDIR"] == proc.cwd()
        assert proc.rlimit(psutil.RLIMIT_CORE) == (0, 0)
        assert proc.rlimit(psutil.RLIMIT_FSIZE)[0] == 2048 << 20
        assert proc.pid == proc.pid and psutil.Process(repl.pid).ppid() != 0
        assert __import__("os").getpgid(repl.pid) == repl.pid  # its own process group
    finally:
        workdir = repl.workdir
        repl.close()
    assert not workdir.exists()


# ---- the pool ------------------------------------------------------------------------------------------
def _cmd(cmd: str):
    return lambda s: s.repl.run_cmd(cmd, s.env)


def test_pool_survives_every_fault(monkeypatch):
    monkeypatch.setenv("FAKE_REPL_GROW_MB", "300")
    pool = ReplPool(FAKE, workers=2, timeout_s=1.0, memory_mb=150, max_proofs_per_repl=1000)
    try:
        kinds = ["ok", "FAKE_HANG", "ok", "FAKE_CRASH", "FAKE_GARBAGE", "ok", "FAKE_GROW", "FAKE_SLOW_100", "ok",
                 "FAKE_CRASH", "ok", "ok"]
        futures = [pool.submit(_cmd(f"theorem t{i} : True := trivial -- {k}"), HEADER) for i, k in enumerate(kinds)]
        outcomes = []
        for k, f in zip(kinds, futures, strict=True):
            try:
                outcomes.append((k, f.result(timeout=30)))
            except Exception as e:  # noqa: BLE001 - the type is what is checked
                outcomes.append((k, e))
        expected = {"ok": CommandResult, "FAKE_SLOW_100": CommandResult, "FAKE_HANG": ReplTimeout,
                    "FAKE_CRASH": ReplCrashed, "FAKE_GARBAGE": ReplGarbage, "FAKE_GROW": ReplOutOfMemory}
        for k, got in outcomes:
            assert isinstance(got, expected[k]), (k, got)
        m = pool.metrics()
        assert m.submitted == len(kinds) == m.completed + m.failed
        assert m.failed == 5 and m.timeouts == 1 and m.out_of_memory == 1
        assert m.crashes == 6  # two crashes and one garbage answer, each tried twice (one retry on a fresh REPL)
        assert m.restarts == m.timeouts + m.out_of_memory + m.crashes
        # still serving
        assert pool.submit(_cmd("theorem after : True := trivial"), HEADER).result(timeout=10).env is not None
    finally:
        pool.close()


def test_pool_imports_the_header_once_per_process(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("FAKE_REPL_LOG", str(log))
    with ReplPool(FAKE, workers=2, timeout_s=5, max_proofs_per_repl=1000) as pool:
        futures = [pool.submit(_cmd(f"theorem t{i} : True := trivial"), HEADER) for i in range(12)]
        assert all(isinstance(f.result(timeout=20), CommandResult) for f in futures)
        assert pool.metrics().header_imports <= 2
    entries = _log(log)
    by_pid: dict[int, list[dict]] = {}
    for e in entries:
        by_pid.setdefault(e["pid"], []).append(e["request"])
    assert 1 <= len(by_pid) <= 2
    for reqs in by_pid.values():
        assert reqs[0] == {"cmd": "import Mathlib\nimport Aesop\n\n"}  # imports first, without env
        assert reqs[1] == {"cmd": "set_option maxHeartbeats 400000\n\nopen BigOperators Real\n\n", "env": 0}
        bodies = reqs[2:]
        assert bodies and all(r["env"] == 1 and r["cmd"].startswith("theorem t") for r in bodies)
    assert sum(len(r) - 2 for r in by_pid.values()) == 12


def test_pool_recycles_after_k_proofs(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("FAKE_REPL_LOG", str(log))
    with ReplPool(FAKE, workers=1, timeout_s=5, max_proofs_per_repl=3) as pool:
        for i in range(7):
            pool.submit(_cmd(f"theorem t{i} : True := trivial"), "").result(timeout=10)
        m = pool.metrics()
        assert m.recycles == 2 and m.restarts == 0
    assert len({e["pid"] for e in _log(log)}) == 3


def test_pool_recycles_above_memory_threshold(monkeypatch):
    monkeypatch.setenv("FAKE_REPL_GROW_MB", "120")
    with ReplPool(FAKE, workers=1, timeout_s=10, memory_mb=400, recycle_fraction=0.2) as pool:
        pool.submit(_cmd("FAKE_GROW"), "").result(timeout=20)  # 120 MiB > 20% of 400: retire after the job
        assert pool.metrics().recycles == 1
        assert pool.submit(_cmd("def ok := 1"), "").result(timeout=10).env == 0  # a fresh process


def test_pool_header_rejected_is_typed(tmp_path, monkeypatch):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([["^import Nonexistent", {"messages": [{
        "severity": "error", "pos": {"line": 1, "column": 0}, "endPos": {"line": 1, "column": 18},
        "data": "unknown module prefix 'Nonexistent'"}], "env": "$ENV"}]]))
    monkeypatch.setenv("FAKE_REPL_RULES", str(rules))
    with ReplPool(FAKE, workers=1, timeout_s=5) as pool:
        fut = pool.submit(_cmd("theorem x : True := trivial"), "import Nonexistent\n\n")
        with pytest.raises(HeaderRejected, match="unknown module prefix"):
            fut.result(timeout=10)
        assert pool.submit(_cmd("theorem x : True := trivial"), HEADER).result(timeout=10).ok


def test_pool_bounded_queue_and_close():
    pool = ReplPool(FAKE, workers=1, timeout_s=5, queue_size=1)
    running = pool.submit(_cmd("FAKE_SLOW_1500"), "")
    time.sleep(0.3)  # the worker holds the slow job; the queue has one free slot
    queued = pool.submit(_cmd("def q := 1"), "")
    with pytest.raises(queue.Full):
        pool.submit(_cmd("def r := 1"), "", block_s=0.1)
    pool.close()
    assert isinstance(running.result(timeout=10), CommandResult)
    with pytest.raises(PoolClosed):
        queued.result(timeout=10)
    with pytest.raises(PoolClosed):
        pool.submit(_cmd("def s := 1"), "")


def test_pool_asyncio():
    async def main(pool: ReplPool):
        return await asyncio.gather(*(pool.asubmit(_cmd(f"def a{i} := {i}"), "") for i in range(6)))

    with ReplPool(FAKE, workers=2, timeout_s=5) as pool:
        results = asyncio.run(main(pool))
        assert len(results) == 6 and all(isinstance(r, CommandResult) for r in results)
        m = pool.metrics()
        assert m.completed == 6 and m.queue_depth == 0 and m.busy == 0 and m.proofs_per_s > 0
        assert m.latency_p50_s <= m.latency_p99_s


def test_pool_run_cmd_from_threads():
    from concurrent.futures import ThreadPoolExecutor

    with ReplPool(FAKE, workers=2, timeout_s=5) as pool, ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda i: pool.run_cmd(f"def t{i} := {i}", HEADER), range(10)))
        assert all(r.ok for r in results) and pool.metrics().completed == 10


def test_pool_sets_a_lifetime_cpu_backstop():
    with ReplPool(FAKE, workers=1, timeout_s=5, max_proofs_per_repl=10) as pool:
        pool.run_cmd("def a := 1")
        soft, hard = psutil.Process(pool._workers[0].repl.pid).rlimit(psutil.RLIMIT_CPU)
        assert soft == hard == pool.limits.cpu_s and 0 < soft < 10**6


def test_repl_sends_raw_utf8_and_survives_lone_surrogates(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("FAKE_REPL_LOG", str(log))
    with Repl(FAKE, timeout_s=5) as repl:
        assert repl.run_cmd("theorem t (F : Type) [Field F] : (𝔽 : ℕ) = 𝔽 := rfl -- ∀ \ud800").env == 0
    sent = _log(log)[0]["request"]["cmd"]
    assert "𝔽" in sent and "\ud800" not in sent and "?" in sent


def test_pool_close_cancel_running_starts_no_queued_job():
    """Ctrl-C's close: the hung jobs' REPLs are killed and no worker takes a queued job into a fresh REPL (which
    would hang again until the Lean timeout, holding the closing process)."""
    pool = ReplPool(FAKE, workers=4, timeout_s=120)
    futures = [pool.submit(_cmd("FAKE_HANG"), "") for _ in range(12)]  # 4 hang in Lean, 8 wait in the queue
    deadline = time.monotonic() + 30
    while pool.metrics().busy < 4:
        assert time.monotonic() < deadline, "the workers never took the hanging jobs"
        time.sleep(0.05)
    time.sleep(0.3)  # every REPL is inside its hanging call
    closer = threading.Thread(target=pool.close, kwargs={"cancel_running": True}, daemon=True)
    closer.start()
    closer.join(timeout=30)
    assert not closer.is_alive(), "close(cancel_running=True) waited for a hanging Lean call"
    assert all(f.done() and isinstance(f.exception(), (PoolClosed, ReplCrashed)) for f in futures)
    assert sum(isinstance(f.exception(), PoolClosed) for f in futures) >= 8  # the queued ones never ran
    assert not [w for w in pool._workers if w.repl.alive]
