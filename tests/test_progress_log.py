"""Long work says how far it is when nobody watches a terminal (nohup, a batch scheduler, CI): with stderr a
pipe, `subgoal prove SET` writes a timestamped progress line at a steady interval, while it runs."""

from __future__ import annotations

import re
import subprocess
import time

from fakes.scripted import ScriptedServer
from helpers.cli import SUBGOAL, env_for, served, write_problems

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d prove: (\d+)/(\d+) attempts")


def test_progress_lines_in_a_non_tty_log(tmp_path):
    problems = tmp_path / "set.jsonl"
    write_problems(problems, 4)
    # One attempt at a time (the runner would run all four at once): the run lasts >= 4 s of 1 s requests.
    args = ["prove", str(problems), "-k", "1", "--max-in-flight", "1", "--out", str(tmp_path / "runs" / "log")]
    with ScriptedServer([("theorem p", "  norm_num\n```")], delay_s=1.0) as server:
        proc = subprocess.Popen(SUBGOAL + args + served(server), env=env_for(tmp_path, SUBGOAL_PROGRESS_S="0.4"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        arrivals = []  # (seconds since start, attempts done) of each progress line, as it arrives
        t0 = time.monotonic()
        for line in proc.stderr:
            if m := LINE.match(line):
                arrivals.append((time.monotonic() - t0, int(m.group(1)), int(m.group(2))))
        assert proc.wait(timeout=60) == 0
        finished = time.monotonic() - t0
    assert len(arrivals) >= 5, arrivals  # 4 attempts of >= 1 s each, a line every 0.4 s
    assert all(total == 4 for _, _, total in arrivals) and arrivals[-1][1] == 4
    done = [d for _, d, _ in arrivals]
    assert done == sorted(done) and 0 < len(set(done)) and done[0] == 0
    assert arrivals[1][0] < finished - 1.0  # lines came while it ran, not all at the end


def test_the_count_shrinks_by_the_attempts_stop_at_first_will_not_run(tmp_path):
    """Stop-at-first (the default) skips a proved problem's other attempts: the progress count is of the attempts
    that run, so the last line says the run is done (4/4), not 4/16. The same command again has nothing left to
    do: it loads no model and runs nothing (it counted 0/12 once), and the run's result is the same."""
    problems = tmp_path / "set.jsonl"
    write_problems(problems, 4)
    args = ["prove", str(problems), "-k", "4", "--max-in-flight", "1", "--out", str(tmp_path / "runs" / "skip")]
    with ScriptedServer([("theorem p", "  norm_num\n```")], delay_s=0.0) as server:
        runs = [subprocess.run(SUBGOAL + args + served(server), env=env_for(tmp_path), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, timeout=120) for _ in range(2)]
    first, again = runs
    assert first.returncode == again.returncode == 0, (first.stderr, again.stderr)
    lines = [m for line in first.stderr.splitlines() if (m := LINE.match(line))]
    assert (int(lines[-1].group(1)), int(lines[-1].group(2))) == (4, 4), first.stderr
    assert "loading " in first.stderr and "loading " not in again.stderr, again.stderr
    assert not any(LINE.match(line) for line in again.stderr.splitlines()), again.stderr
    assert (tmp_path / "runs" / "skip" / "proofs.jsonl").read_text().count("\n") == 4
