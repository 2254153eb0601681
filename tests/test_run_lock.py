"""One writing run per run directory: a second `subgoal prove`/`eval` on the same `--out` is refused in one line
naming the running one; a lock left by a killed run does not block the next."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
from fakes.scripted import ScriptedServer
from helpers.cli import SUBGOAL, env_for, run, served, store_rows, write_problems

from data.run_lock import LOCK_FILENAME, RunLock, RunLocked
from data.store import RunStore


def test_a_second_run_on_the_same_out_is_refused(tmp_path):
    problems = tmp_path / "set.jsonl"
    write_problems(problems, 3)
    out = tmp_path / "runs" / "shared"
    args = ["prove", str(problems), "-k", "2", "--all-attempts", "--out", str(out)]
    release = threading.Event()  # the first run's generation waits until the second has been refused
    with ScriptedServer([("theorem p", "  norm_num\n```")], delay_s=lambda n, body: release.wait(60) and 0) as server:
        first = subprocess.Popen(SUBGOAL + args + served(server), env=env_for(tmp_path), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not server.requests:  # the first run holds the store and is generating
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read() if first.stderr else ""
            time.sleep(0.05)
        try:
            second = run(args + served(server), env_for(tmp_path))
        finally:
            release.set()
        _, err = first.communicate(timeout=120)
    assert second.returncode == 2 and "Traceback" not in second.stderr
    line = " ".join(second.stderr.split())
    assert "error:" in line and "in use by a running job" in line and f"pid {first.pid}" in line
    assert socket.gethostname() in line
    assert first.returncode == 0, err
    assert len(store_rows(out)) == 6  # the first run's work, all of it, once


def test_a_killed_runs_lock_does_not_block_the_next(tmp_path):
    out = tmp_path / "run"
    script = ("import os, sys, time; from data.store import RunStore; s = RunStore(sys.argv[1]); "
              "print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([SUBGOAL[0], "-c", script, str(out)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(RunLocked, match=f"pid {holder.pid}"):
        RunStore(out)
    with RunStore(out, create=False):  # readers (report, export, leaderboard) never wait for a writer
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert json.loads((out / LOCK_FILENAME).read_text())["pid"] == holder.pid  # the file stays ...
    with RunStore(out) as store:  # ... but the kernel dropped the lock with its holder
        store.start_run("r", {})


def test_without_flock_a_dead_holder_on_this_host_is_stale(tmp_path, monkeypatch):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / LOCK_FILENAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr("data.run_lock.fcntl.flock", no_flock)
    with RunLock(tmp_path):  # stale: taken over
        assert json.loads((tmp_path / LOCK_FILENAME).read_text())["pid"] == os.getpid()
    (tmp_path / LOCK_FILENAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "x"}))
    with pytest.raises(RunLocked, match="pid 1 on elsewhere"):
        RunLock(tmp_path).acquire()


def test_a_second_prove_set_is_refused_before_its_model_loads(tmp_path, monkeypatch, capfd):
    """The second `prove SET --out X` runs in this process, with a recipe whose model load is recorded: it must be
    refused by the first run's lock, in one line, without loading its model."""
    from eval.cli import main
    from prover.recipe import ProveRecipe

    problems = tmp_path / "set.jsonl"
    write_problems(problems, 2)
    out = tmp_path / "runs" / "shared"
    args = ["prove", str(problems), "-k", "1", "--out", str(out)]
    release = threading.Event()
    with ScriptedServer([("theorem p", "  norm_num\n```")], delay_s=lambda n, body: release.wait(60) and 0) as server:
        first = subprocess.Popen(SUBGOAL + args + served(server), env=env_for(tmp_path), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while not server.requests:  # the first run holds the run directory and is generating
                assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
                time.sleep(0.05)
            for name in [k for k in os.environ if k.startswith("SUBGOAL_")]:
                monkeypatch.delenv(name)
            for name, value in env_for(tmp_path).items():
                monkeypatch.setenv(name, value)
            loads: list[str] = []
            monkeypatch.setattr(ProveRecipe, "make_generator", lambda self: loads.append("model") or 1 / 0)
            capfd.readouterr()
            with pytest.raises(SystemExit) as exit_info:
                main(args + served(server))
            err = capfd.readouterr().err
        finally:
            release.set()
            first.communicate(timeout=120)
    assert exit_info.value.code == 2 and not loads, err
    assert len(err.strip().splitlines()) == 1, err  # the refusal alone: no "loading <model>" before it
    assert err.startswith("error:") and "in use by a running job" in err and f"pid {first.pid}" in err
    assert first.returncode == 0
