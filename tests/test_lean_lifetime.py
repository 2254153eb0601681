"""Lean REPL processes die with their driver, whatever kills it (SIGTERM, SIGHUP, SIGKILL), mid-Lean-call.

The driver is `subgoal prove` as a user runs it; generation is the scripted completion server
(tests/fakes/scripted.py), Lean is tests/fakes/fake_lean.py (a FAKE Lean) whose `fake_hang` tactic never returns, so
the driver is killed while it waits on a Lean call.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
from fakes import FAKE_REPL
from fakes.scripted import ScriptedServer
from helpers.cli import STATEMENT, SUBGOAL, env_for, served, store_rows


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _lean_processes(driver: psutil.Process) -> list[psutil.Process]:
    try:
        return [p for p in driver.children(recursive=True) if "fake_lean.py" in " ".join(p.cmdline())]
    except psutil.Error:
        return []


def _repls(driver: psutil.Process) -> list[psutil.Process]:
    """The fake REPLs themselves (not their watchdogs, whose command line names the REPL too)."""
    return [p for p in _lean_processes(driver) if "watchdog.py" not in " ".join(p.cmdline())]


def _until_in_lean(proc: subprocess.Popen, server: ScriptedServer, repls: int = 1) -> None:
    """Until the driver has `repls` REPLs and a completion; then a second for the proofs to be inside Lean."""
    driver = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    while not (server.requests and len(_repls(driver)) >= repls):
        assert proc.poll() is None and time.monotonic() < deadline, "the driver never reached Lean"
        time.sleep(0.05)
    time.sleep(1.0)  # the proof is in Lean now: fake_hang sleeps forever


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name)
def test_no_repl_outlives_a_killed_driver(tmp_path, sig):
    env = env_for(tmp_path, SUBGOAL_LEAN__TIMEOUT_S="120")
    with ScriptedServer([("theorem t", "  fake_hang\n```")]) as server:
        proc = subprocess.Popen(SUBGOAL + ["prove", STATEMENT, "-k", "1", "--no-live", *served(server)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        driver = psutil.Process(proc.pid)
        _until_in_lean(proc, server)
        tree = driver.children(recursive=True)  # the watchdog, the fake REPL, whatever they started
        workdirs = [Path(p.cwd()) for p in _lean_processes(driver)]
        assert tree and workdirs
        proc.send_signal(sig)
        time.sleep(1.0)
        survivors = [p for p in tree if _alive(p)]
        proc.wait(timeout=5)  # the driver does not wait out the Lean timeout (120 s) either
    assert not survivors, f"alive 1 s after {sig.name}: {[p.cmdline() for p in survivors]}"
    assert not any(d.exists() for d in workdirs), "the REPL's private temporary directory was left behind"
    assert proc.returncode == (-sig if sig == signal.SIGKILL else 128 + sig)


def test_a_repl_busy_when_its_process_exits_is_killed(tmp_path):
    """A library user whose program ends while a Lean call runs (in a daemon thread), without close()."""
    script = ("import sys, threading, time, psutil; from lean_env.repl import Repl\n"
              "r = Repl([sys.executable, sys.argv[1]]); r.start()\n"
              "threading.Thread(target=r.run_cmd, args=('FAKE_HANG',), daemon=True).start(); time.sleep(0.5)\n"
              "root = psutil.Process(r.pid); print(*[p.pid for p in [root, *root.children(recursive=True)]])")
    fake = FAKE_REPL
    p = subprocess.run([SUBGOAL[0], "-c", script, str(fake)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert p.returncode == 0, p.stderr
    pids = [int(x) for x in p.stdout.split()]
    assert pids
    time.sleep(1.0)
    assert not [pid for pid in pids if psutil.pid_exists(pid) and _alive(psutil.Process(pid))]


def _proved(out: Path, problem: str, wait_s: float = 0.0) -> bool:
    """Whether the run store in `out` holds a proof of `problem` (within `wait_s`)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if (out / "store.sqlite").exists() and any(row[0] == problem and row[2] == "proved"
                                                         for row in store_rows(out)):
                return True
        except sqlite3.OperationalError:  # the store is being created
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


@pytest.mark.parametrize("command,workers", [("statement", 1), ("tree", 1), ("batch", 1), ("eval", 1), ("batch", 4),
                                             ("eval", 4), ("tree-batch", 4)])
def test_ctrl_c_mid_lean_call_exits_within_5_s(tmp_path, command, workers):
    """Batch runs with 4 workers: every REPL hangs in a proof while more candidates wait in the pool's queue; the
    close after Ctrl-C must neither wait for a hanging call nor let a freed worker start a queued one in a fresh
    REPL. (A single statement's attempts run one at a time: one REPL.) Tree search: the first Ctrl-C reaches a
    tactic hanging in the search's own REPL session (a call the search waits out when cancelled otherwise)."""
    problems = tmp_path / "set.jsonl"
    problems.write_text("".join(f'{{"name": "t{i}", "formal_statement": "theorem t{i} : 2 + 3 = 5 := by"}}\n'
                                for i in range(6)))
    args = {"statement": ["prove", STATEMENT, "-k", "4", "--no-live"],
            "tree": ["prove", STATEMENT, "-k", "1", "--no-live", "--strategy", "tree"],
            "batch": ["prove", str(problems), "-k", "4", "--out", str(tmp_path / "runs" / "b")],
            "eval": ["eval", str(problems), "-k", "4", "--out", str(tmp_path / "runs" / "e")],
            "tree-batch": ["prove", str(problems), "-k", "4", "--strategy", "tree", "--out",
                           str(tmp_path / "runs" / "t")]}[command]
    env = env_for(tmp_path, SUBGOAL_LEAN__TIMEOUT_S="120", SUBGOAL_LEAN__WORKERS=str(workers))
    out = Path(args[args.index("--out") + 1]) if "--out" in args else None
    # t0 is proved and recorded first (the other completions are held back until then), every other proof hangs
    def t0_first(count: int, body: dict) -> float:
        if out is not None and "theorem t0 " not in str(body["prompt"]):
            _proved(out, "t0", wait_s=60)
        return 0.0

    rules = [("theorem t0 ", "  decide\n```"), ("theorem t", "  fake_hang\n```")]
    with ScriptedServer(rules, delay_s=t0_first) as server:
        proc = subprocess.Popen(SUBGOAL + args + served(server), env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _until_in_lean(proc, server, workers)
        lean = _lean_processes(psutil.Process(proc.pid))
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()  # its REPLs' watchdogs take them along
            proc.communicate()
            pytest.fail("the driver did not stop within 30 s of Ctrl-C")
        took = time.monotonic() - t0
    # About 1 s on an idle machine; the bound leaves room for a loaded 2-core CI box, far below the 120 s timeout
    # that the bugs this catches waited for.
    assert took < 5.0, f"Ctrl-C took {took:.1f}s (the Lean timeout is 120 s)"
    assert lean and not [p for p in lean if _alive(p)], "a REPL outlived the interrupted driver"
    assert proc.returncode == 130 and "Traceback" not in err
    assert "interrupted" in err
    if command in ("statement", "tree"):
        assert "best so far" in err
    else:
        assert "re-run the same command to resume" in " ".join(err.split())
        rows = store_rows(out)
        assert _proved(out, "t0") and all(name == "t0" for name, _, _ in rows)  # kept, and nothing else


def test_a_killed_repl_process_takes_its_group_along(tmp_path, monkeypatch):
    """What a Ray worker's exit does to its children: SIGKILL to the driver's direct child only. Whatever the REPL
    started (`lake env` runs the real REPL as a grandchild; here the fake's `FAKE_SPAWN` child) must die too."""
    from lean_env.errors import ReplCrashed
    from lean_env.repl import Repl

    child_file = tmp_path / "child"
    monkeypatch.setenv("FAKE_REPL_CHILD_PID", str(child_file))
    repl = Repl([SUBGOAL[0], str(FAKE_REPL)], timeout_s=60)
    repl.start()
    calls: list[BaseException] = []
    caller = threading.Thread(target=lambda: calls.append(_failure(repl.run_cmd, "FAKE_SPAWN")), daemon=True)
    caller.start()
    try:
        deadline = time.monotonic() + 30
        while not child_file.exists() or not child_file.read_text().strip():
            assert time.monotonic() < deadline, "the fake REPL never started its child"
            time.sleep(0.05)
        direct = psutil.Process(repl.pid)
        group = [direct, *direct.children(recursive=True)]  # the REPL, its guard, the REPL's own child
        assert int(child_file.read_text()) in {p.pid for p in group} and len(group) >= 3
        os.kill(repl.pid, signal.SIGKILL)
        caller.join(timeout=10)
        deadline = time.monotonic() + 5
        while [p for p in group if _alive(p)]:
            assert time.monotonic() < deadline, f"alive: {[p.cmdline() for p in group if _alive(p)]}"
            time.sleep(0.05)
        assert len(calls) == 1 and isinstance(calls[0], ReplCrashed)  # the waiting call fails at once, typed
    finally:
        repl.close()


def _failure(call, *args) -> BaseException | None:
    try:
        call(*args)
    except BaseException as e:
        return e
    return None


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name)
def test_nothing_of_a_local_ray_cluster_outlives_a_killed_driver(tmp_path, sig):
    """`eval --ray` starts a local cluster (GCS, raylet, dashboard and runtime-env agents, actors, their REPLs); the
    driver is killed while a REPL hangs in a proof. Ray's agents alone used to wait 60 s on the dead GCS."""
    pytest.importorskip("ray")
    problems = tmp_path / "set.jsonl"
    problems.write_text('{"name": "t", "formal_statement": "theorem t : 2 + 3 = 5 := by"}\n')
    env = env_for(tmp_path, SUBGOAL_LEAN__TIMEOUT_S="120", RAY_USAGE_STATS_ENABLED="0",
                  PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    args = ["eval", str(problems), "-k", "1", "--ray", "--out", str(tmp_path / "runs" / "e")]
    with ScriptedServer([("theorem t", "  fake_hang\n```")]) as server:
        proc = subprocess.Popen(SUBGOAL + args + served(server), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        driver = psutil.Process(proc.pid)
        deadline = time.monotonic() + 120
        while not _repls(driver):  # through Ray: the checker actor's REPL, in a proof that never ends
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        time.sleep(1.0)
        tree = driver.children(recursive=True)
        names = {p.pid: " ".join(p.cmdline())[:80] for p in tree}
        seen = " ".join(names.values())
        assert "raylet" in seen and "gcs_server" in seen and "DashboardAgent" in seen and "fake_lean.py" in seen
        proc.send_signal(sig)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 5
        while (survivors := [p for p in tree if _alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.2)
    for p in survivors:  # leave nothing behind, whatever the verdict
        with contextlib.suppress(psutil.Error):
            p.kill()
    assert not survivors, f"alive 5 s after {sig.name}: {[names[p.pid] for p in survivors]}"
