"""Every precondition (Lean present, the model there, the run directory usable) is checked before anything
expensive starts and before anything is created: one line, exit 2, no run directory left behind, no model load,
no Ray cluster. Through the CLI, as the issue's reproductions (`eval minif2f-test --model M`, with `--ray`)."""

from __future__ import annotations

import os
import sys

import pytest
from helpers.cli import env_for, run, write_problems


def _one_line(p) -> str:
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and "loading" not in p.stderr
    return " ".join(p.stderr.split())


@pytest.mark.parametrize("extra", [[], ["--ray"]], ids=["local", "ray"])
def test_missing_lean_is_found_before_the_model(tmp_path, extra):
    env = env_for(tmp_path)
    del env["SUBGOAL_LEAN__REPL_PATH"]
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin"
    env["HOME"] = str(tmp_path)  # no ~/.elan
    problems = tmp_path / "set.jsonl"
    write_problems(problems, 1)
    line = _one_line(run(["eval", str(problems), "--model", "no-such/model", *extra], env))
    assert "REPL" in line and "subgoal lean setup" in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("extra", [[], ["--ray"]], ids=["local", "ray"])
def test_a_model_that_is_not_there_is_refused_before_loading(tmp_path, extra):
    problems = tmp_path / "set.jsonl"
    write_problems(problems, 1)
    env = env_for(tmp_path, HF_HUB_OFFLINE="1")  # the hub cannot be asked here; the answer must not need it
    line = _one_line(run(["eval", str(problems), "--model", "no-such/model", *extra], env))
    assert "--model no-such/model" in line and "Hugging Face cache" in line
    line = _one_line(run(["eval", str(problems), "--model", str(tmp_path / "missing-dir"), *extra], env))
    assert "missing-dir" in line and "no such checkpoint directory" in line
    (tmp_path / "empty-dir").mkdir()
    line = _one_line(run(["prove", str(problems), "--model", str(tmp_path / "empty-dir")], env))
    assert "without config.json" in line
    assert not (tmp_path / "runs").exists()  # no empty run directory from any of them


def test_no_server_is_refused_before_a_run_directory_exists(tmp_path):
    problems = tmp_path / "set.jsonl"
    write_problems(problems, 1)
    out = tmp_path / "runs" / "x"
    args = ["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--out", str(out)]
    for command in ("prove", "eval"):
        line = _one_line(run([command, str(problems), *args], env_for(tmp_path)))
        assert "no server answers at http://127.0.0.1:9/v1" in line
    assert not out.exists()
