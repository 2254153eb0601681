"""What users get wrong gets one line and a non-zero exit, never a traceback: paths that name the wrong kind of
thing, values that make no sense, text that cannot be stored. Each case is a reproduction from issue 16."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import FAKE_LEAN
from helpers.cli import cli

from data.store import Attempt, RunStore

STATEMENT = "theorem t : 2 + 3 = 5 := by"


@pytest.fixture
def lean_env(monkeypatch, tmp_path):
    for key in ("SUBGOAL_CONFIG", "SUBGOAL_LEAN__TIMEOUT_S"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SUBGOAL_LEAN__REPL_PATH", str(FAKE_LEAN))
    monkeypatch.setenv("SUBGOAL_LEAN__WORKERS", "1")
    monkeypatch.setenv("SUBGOAL_RUN_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)


def problems_file(tmp_path: Path, name: str = "p0") -> Path:
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps({"name": name, "formal_statement": STATEMENT}) + "\n")
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, err
    return " ".join(err[err.index("error:"):].split())


def test_out_naming_an_existing_file(lean_env, tmp_path, capsys):
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me")
    problems = problems_file(tmp_path)
    unused_server = ["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]
    assert cli("prove", str(problems), "--out", str(taken), *unused_server) == 2
    assert "is an existing file" in one_error_line(capsys)
    assert cli("eval", str(problems), "--out", str(taken), *unused_server) == 2
    assert "is an existing file" in one_error_line(capsys)
    with RunStore(tmp_path / "runs" / "r") as store:
        run_id = store.start_run("r", {"problems": ["p0"]})
        store.record(run_id, Attempt("p0", 0, "...", "failed", {}))
    assert cli("leaderboard", str(tmp_path / "runs"), "--out", str(taken)) == 2
    assert "is an existing file" in one_error_line(capsys)
    assert taken.read_text() == "keep me"


def test_data_export_to_an_existing_directory_leaks_nothing(tmp_path, capsys):
    with RunStore(tmp_path / "run") as store:
        run_id = store.start_run("run", {})
        store.record(run_id, Attempt("p0", 0, "...", "failed", {}))
    target = tmp_path / "exports"
    target.mkdir()
    for fmt in ("jsonl", "parquet"):
        assert cli("data", "export", str(tmp_path / "run"), "--format", fmt, "--out", str(target)) == 2
        assert "is a directory" in one_error_line(capsys)
    assert list(target.iterdir()) == [] and not list(tmp_path.glob(".exports.tmp*"))
    (tmp_path / "file").write_text("x")
    assert cli("data", "export", str(tmp_path / "run"), "--format", "hf", "--out", str(tmp_path / "file")) == 2
    assert "writes a directory" in one_error_line(capsys)


def test_an_infinite_lean_timeout_is_refused(lean_env, tmp_path, capsys, monkeypatch):
    problems = problems_file(tmp_path)
    assert cli("eval", str(problems), "--model", "m", "--lean-timeout", "inf") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--lean-timeout" in err and "finite" in err
    monkeypatch.setenv("SUBGOAL_LEAN__TIMEOUT_S", "inf")
    assert cli("eval", str(problems), "--model", "m") == 2
    assert "lean.timeout_s" in one_error_line(capsys)


def test_a_lone_surrogate_in_a_problem_name_is_refused_at_load(lean_env, tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"name": "p\\ud800", "formal_statement": "theorem t : 1 = 1 := by"}\n')  # valid JSON
    assert cli("eval", str(path), "--model", "m") == 2
    line = one_error_line(capsys)
    assert f"{path}:1" in line and "field 'name'" in line and "lone surrogate" in line
    assert not (tmp_path / "runs").exists()  # refused before any run directory exists


def test_a_boolean_where_a_number_belongs_in_the_config(lean_env, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SUBGOAL_LEAN__WORKERS")  # the environment would override the file
    config = tmp_path / "subgoal.toml"
    config.write_text("[lean]\nworkers = true\n")
    assert cli("--config", str(config), "eval", str(problems_file(tmp_path)), "--model", "m") == 2
    assert "lean.workers" in one_error_line(capsys)


@pytest.mark.parametrize("flags", [
    ["--limit", "-1"], ["--limit", "0"], ["-t", "-1"], ["--top-p", "2"], ["--top-p", "0"], ["--max-tokens", "0"],
    ["--samples", "0"], ["--budget-wall-s", "-1"], ["--budget-wall-s", "nan"], ["-k", "10000000"],
    ["--lean-workers", "0"], ["--budget-samples", "0"], ["--max-in-flight", "0"],
], ids=" ".join)
def test_nonsense_prove_values_are_refused_at_parse_time(lean_env, tmp_path, capsys, flags):
    assert cli("prove", str(problems_file(tmp_path)), "--model", "m", *flags) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Invalid value" in err and flags[0] in err
    assert "loading" not in err  # nothing started


@pytest.mark.parametrize("flags", [["--samples", "0"], ["-k", "0"], ["--temperature", "-0.5"], ["--top-p", "1.5"],
                                   ["--budget-wall-s", "0"], ["--max-tokens", "0"], ["--workers", "0"]], ids=" ".join)
def test_nonsense_eval_values_are_refused_at_parse_time(lean_env, tmp_path, capsys, flags):
    assert cli("eval", str(problems_file(tmp_path)), "--model", "m", *flags) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Invalid value" in err


def test_help_texts_keep_their_brackets(capsys):
    """rich markup would eat `[lean]` (a config section) from a help text unless it is escaped."""
    import typer.main

    from eval.cli import app

    def commands(group, path):
        for name, command in getattr(group, "commands", {}).items():
            yield [*path, name], command
            yield from commands(command, [*path, name])

    checked = 0
    for path, command in commands(typer.main.get_command(app), []):
        bracketed = [p for p in command.params if "[" in (getattr(p, "help", None) or "")]
        if not bracketed:
            continue
        assert cli(*path, "--help") == 0
        shown = " ".join(capsys.readouterr().out.split()).replace("│ ", "")
        for param in bracketed:
            words = param.help.replace("\\[", "[").split()
            for word in (w for w in words if "[" in w):
                assert word.rstrip(").,") in shown, f"`{' '.join(path)} --help` lost {word!r}"
                checked += 1
    assert checked >= 2


def test_library_warnings_print_through_the_console_above_a_live_view(tmp_path, capsys):
    """A transformers deprecation warning (a Python warning, or a record of transformers' own logger) goes
    through the CLI's console, which prints it above the live view, never raw across it on stderr."""
    import io
    import logging
    import re
    import warnings

    from rich.console import Console
    from rich.live import Live

    from eval.cli.common import library_output_on
    from prover.generate.hf import TransformersBackend
    from prover.model.testing import tiny_checkpoint

    TransformersBackend(tiny_checkpoint(tmp_path / "m"), device="cpu").close()  # transformers is set up as in a run
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=300)
    with library_output_on(console), Live("attempts: 3/8", console=console), warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("`past_key_values` is deprecated", FutureWarning, stacklevel=1)
        logging.getLogger("transformers.generation.utils").warning("generation flags are not valid")
    out = "".join(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue()).split())  # text, no colours
    assert "`past_key_values`isdeprecated" in out and "generationflagsarenotvalid" in out
    assert capsys.readouterr().err == ""  # nothing written past the console


def test_an_unknown_strategy_option_is_refused_naming_the_valid_ones(lean_env, tmp_path, capsys):
    code = cli("eval", str(problems_file(tmp_path)), "--model", "m", "--strategy", "tree", "--opt", "widht=3")
    assert code == 2
    line = one_error_line(capsys)
    assert "unknown option 'widht' for strategy tree" in line and "valid: mode, width, max_expansions" in line
    assert not (tmp_path / "runs").exists()  # refused before a run directory was made


def test_an_option_value_of_the_wrong_type_is_refused(lean_env, tmp_path, capsys):
    assert cli("eval", str(problems_file(tmp_path)), "--model", "m", "--strategy", "repair", "--opt", "rounds=many") == 2
    assert "option rounds wants int, got 'many'" in one_error_line(capsys)
