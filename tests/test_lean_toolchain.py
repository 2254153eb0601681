"""Toolchain location, doctor, setup plan (never run here: no network), and the `subgoal lean` commands."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from fakes import FAKE_REPL

from eval.cli import main
from lean_env import toolchain
from lean_env.errors import LeanNotFound, SetupError

FAKE = FAKE_REPL


@pytest.fixture
def bare(tmp_path, monkeypatch):
    """No Lean anywhere: empty PATH (but for the shell tools), empty HOME and install home."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SUBGOAL_LEAN_HOME", str(tmp_path / "lean-home"))
    monkeypatch.delenv("ELAN_HOME", raising=False)
    for key in list(os.environ):
        if key.startswith("SUBGOAL_LEAN__"):
            monkeypatch.delenv(key)
    return tmp_path


def _settings(**kw):
    base = dict(lean_version="v4.19.0", project_dir=None, repl_path=None, lake_path=None, workers=1, timeout_s=5.0,
                memory_mb=1024, max_proofs_per_repl=10)
    return SimpleNamespace(**{**base, **kw})


def _exe(path: Path, body: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_locate_without_lean_says_how_to_install(bare):
    with pytest.raises(LeanNotFound) as info:
        toolchain.locate(_settings())
    msg = str(info.value)
    assert "subgoal lean setup" in msg and "SUBGOAL_LEAN__REPL_PATH" in msg and "\n" not in msg


def test_locate_fake_repl_script(bare):
    tc = toolchain.locate(_settings(repl_path=FAKE))
    assert tc.repl_command() == [sys.executable, str(FAKE)] and tc.cwd is None


def test_locate_real_layout(bare):
    project = bare / "proj"
    (project / ".lake" / "build").mkdir(parents=True)
    (project / "lean-toolchain").write_text("leanprover/lean4:v4.19.0\n")
    (project / "lake-manifest.json").write_text(json.dumps(
        {"packages": [{"name": "mathlib", "rev": "abc123", "inputRev": "v4.19.0"}]}))
    lake = _exe(bare / "bin" / "lake")
    repl = _exe(bare / "repl" / ".lake" / "build" / "bin" / "repl")
    tc = toolchain.locate(_settings(project_dir=project, repl_path=repl))
    assert tc.repl_command() == [str(lake), "env", str(repl)] and tc.cwd == project
    assert (tc.lean_version, tc.mathlib_version) == ("v4.19.0", "v4.19.0")
    with pytest.raises(LeanNotFound, match="no Lake project"):
        toolchain.locate(_settings(repl_path=repl))
    with pytest.raises(LeanNotFound, match="does not exist"):
        toolchain.locate(_settings(repl_path=bare / "nope"))


def test_setup_installs_default_layout_that_locate_finds(bare):
    home = bare / "lean-home"
    _exe(bare / "bin" / "lake")
    (home / "mathlib4").mkdir(parents=True)
    (home / "mathlib4" / "lakefile.lean").write_text("-- mathlib")
    repl = _exe(home / "repl" / ".lake" / "build" / "bin" / "repl")
    tc = toolchain.locate(_settings())
    assert tc.repl == repl and tc.project_dir == home / "mathlib4"


def test_setup_plan_commands(bare):
    plan = toolchain.setup_plan("v4.19.0", bare / "h")
    shells = [s.shell() for s in plan]
    assert "elan-init.sh" in shells[0] and not plan[0].skip  # no elan here
    assert plan[1].argv[1:] == ["toolchain", "install", "leanprover/lean4:v4.19.0"]
    assert plan[2].argv == ["git", "clone", "--depth", "1", "--branch", "v4.19.0", toolchain.MATHLIB_GIT,
                            str(bare / "h" / "mathlib4")]
    assert plan[3].argv[1:] == ["exe", "cache", "get"] and plan[3].cwd == bare / "h" / "mathlib4"
    assert plan[4].argv[-2:] == [toolchain.REPL_GIT, str(bare / "h" / "repl")] and "v4.19.0" in plan[4].argv
    assert plan[5].argv[1:] == ["build"] and plan[5].cwd == bare / "h" / "repl"


def test_setup_fails_fast_without_network(bare, monkeypatch):
    monkeypatch.setattr(toolchain, "have_network", lambda *a, **k: False)
    with pytest.raises(SetupError, match="no network"):
        toolchain.run_setup("v4.19.0", bare / "h")
    assert not (bare / "h").exists()


def test_doctor_reports_each_piece(bare):
    checks = {c.name: c for c in toolchain.doctor(_settings())}
    assert set(checks) >= {"elan", "lake", "lean", "mathlib project", "repl"}
    assert not any(c.ok for c in checks.values()) and all(c.fix for c in checks.values())


def _cli(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_cli_doctor_and_setup(bare, capsys):
    code, out, err = _cli(["lean", "doctor"], capsys)
    assert code == 2 and "missing" in out and "Lean is not usable here" in err and "subgoal lean setup" in err
    code, out, _ = _cli(["lean", "setup", "--dry-run", "--home", str(bare / "h")], capsys)
    assert code == 0 and "lake exe cache get" in out.replace("\n", " ") and "git clone" in out


def test_cli_check_with_fake_repl(bare, tmp_path, capsys, monkeypatch):
    from fakes.repl_rules import lean_rules

    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(lean_rules("mathd_algebra_10", {"body": "ok", "axioms": "propext", "type": "same"}),
                                ensure_ascii=False))
    monkeypatch.setenv("FAKE_REPL_RULES", str(rules))
    monkeypatch.setenv("SUBGOAL_LEAN__REPL_PATH", str(FAKE))
    f = tmp_path / "p.lean"
    f.write_text("import Mathlib\n\ntheorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by\n"
                 "  subst h₀\n  norm_num\n")
    code, out, _ = _cli(["lean", "check", str(f)], capsys)
    assert code == 0 and "proved" in out and "axioms: propext" in out
    f.write_text(f.read_text().replace("norm_num", "sorry"))
    code, out, _ = _cli(["lean", "check", str(f)], capsys)
    assert code == 1 and "unsound" in out and "sorry" in out


def test_file_problem_keeps_what_the_theorem_mentions():
    from data.lean_file import file_problem

    src = ("import Mathlib\n\nabbrev sol : ℕ := 6\n\nlemma helper : sol = 6 := rfl\n\n"
           "/-- doc -/\ntheorem main : sol = 3 * 2 := by\n  simp [helper]\n")
    p = file_problem(src, "f")
    assert p.header == "import Mathlib\n\n" and p.name == "f"
    assert p.formal_statement.startswith("abbrev sol : ℕ := 6") and p.formal_statement.endswith("sol = 3 * 2 :=")
    from lean_env import text

    assert text.theorem_name(p.formal_statement) == "main" and text.same_statement(p, src)
    assert not text.same_statement(p, src.replace(":= 6", ":= 7"))
    assert file_problem(src, theorem="helper").formal_statement.endswith("sol = 6 :=")
    assert file_problem("def x := 1\n") is None


def test_cli_check_unreadable_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.lean"
    bad.write_bytes(b"\xff\xfe theorem")
    for path, why in ((tmp_path / "absent.lean", "no such file"), (bad, "not UTF-8"), (tmp_path, "cannot read")):
        code, _, err = _cli(["lean", "check", str(path)], capsys)
        assert code == 2 and why in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_audit_and_setup_comparator(bare, tmp_path, capsys, monkeypatch):
    code, out, _ = _cli(["lean", "setup", "--dry-run", "--comparator", "--home", str(bare / "h")], capsys)
    flat = out.replace("\n", " ")
    assert code == 0 and "leanprover/comparator" in flat and "lean4export" in flat and "landrun" in flat
    monkeypatch.setenv("SUBGOAL_LEAN__REPL_PATH", str(FAKE))
    code, _, err = _cli(["lean", "audit", str(tmp_path / "no-run")], capsys)
    assert code == 2 and "kernel replay" in err and "Traceback" not in err  # one line: Lean or comparator missing
