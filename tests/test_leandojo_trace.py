"""Tracing a repository with LeanDojo: clear errors, and the layout written (through a fake lean_dojo)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fakes.fake_lean_dojo import FakeLeanDojoModule, fake_lean_dojo, fake_traced_repo
from fakes.leandojo_bench import (
    COMMIT,
    FILE,
    THEOREMS,
    URL,
    theorem_json,
    write_bench,
)

from data.errors import DataError
from data.leandojo import (
    load_problems,
    read_corpus,
    read_theorems,
)


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    return write_bench(tmp_path)


# ------------------------------------------------------------------------------------------ tracing
def test_trace_without_lean_dojo_says_how_to_install(monkeypatch, tmp_path: Path):
    from data.leandojo import trace_repo

    monkeypatch.setitem(sys.modules, "lean_dojo", None)  # makes `import lean_dojo` raise ImportError
    with pytest.raises(DataError, match=r"pip install 'subgoal\[dojo\]'"):
        trace_repo(URL, COMMIT, tmp_path / "t")


def test_trace_without_lean_says_so(monkeypatch, tmp_path: Path):
    from data.leandojo import trace_repo

    monkeypatch.setitem(sys.modules, "lean_dojo", FakeLeanDojoModule())
    monkeypatch.setenv("PATH", str(tmp_path))  # no lean, no lake
    with pytest.raises(DataError, match="needs a Lean 4 toolchain.*elan"):
        trace_repo(URL, COMMIT, tmp_path / "t")


def test_trace_command_is_one_clear_error(monkeypatch, tmp_path: Path, capsys):
    import typer

    from eval.cli import data_trace_cmd

    app = typer.Typer()
    data_trace_cmd.register_into(app)
    app.command("noop")(lambda: None)  # a group with two commands keeps `trace` as a subcommand
    monkeypatch.setitem(sys.modules, "lean_dojo", None)
    with pytest.raises(DataError, match="not installed"):
        app(["trace", URL, "--commit", COMMIT, "--out", str(tmp_path / "t")], standalone_mode=False)
    from eval.cli import main

    capsys.readouterr()
    try:
        main(["data", "trace", URL, "--commit", COMMIT, "--out", str(tmp_path / "t")])
        code = 0
    except SystemExit as e:
        code = e.code
    except Exception as e:  # a usage error the CLI did not turn into an exit code
        code = str(e)
    err = capsys.readouterr().err
    if "No such command" in f"{code}{err}":
        pytest.skip("`trace` is not wired into `subgoal data` yet (eval/cli/data_cmd.py)")
    assert code == 2
    assert "error:" in err and "lean-dojo" in err and "Traceback" not in err


def test_trace_writes_the_benchmark_layout(monkeypatch, tmp_path: Path):
    """`trace_repo` end to end with a fake lean_dojo (no Lean here): conversion, both splits, corpus, metadata."""
    import types

    from data.leandojo import trace_repo

    fake = fake_lean_dojo()
    calls = {}

    def trace(repo, dst_dir=None, build_deps=True):
        calls.update(repo=repo, dst_dir=dst_dir, build_deps=build_deps)
        return fake_traced_repo(repo, dep)

    dep = types.SimpleNamespace(url="https://github.com/leanprover-community/batteries", is_lean4=False)
    fake.trace = trace
    fake.LeanGitRepo = lambda url, commit: types.SimpleNamespace(url=url, commit=commit, is_lean4=False)
    monkeypatch.setitem(sys.modules, "lean_dojo", fake)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("lean", "lake"):  # stand-ins on PATH: only their presence is checked before tracing
        (bin_dir / tool).write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{sys.exec_prefix}/bin:/usr/bin:/bin")
    out = tmp_path / "bench"
    counts = trace_repo(URL, COMMIT, out, num_val=1, num_test=1, build_deps=False)
    assert calls["dst_dir"] == out / "repos" and calls["build_deps"] is False
    assert counts["random"] == {"train": 3, "val": 1, "test": 1}
    written = {t.full_name: t for s in ("train", "val", "test") for t in read_theorems(out, "random", s)}
    assert set(written) == {t["full_name"] for t in THEOREMS}  # Lean's own Nat.add_zero is not exported
    assert written["Nat.lt_irrefl'"].file_path == ".lake/packages/batteries/Batteries/Demo.lean"
    assert written["Demo.add_comm'"].to_json() == theorem_json("Demo.add_comm'")
    assert json.loads((out / "metadata.json").read_text())["from_repo"] == {"url": URL, "commit": COMMIT}
    # dependencies first in corpus.jsonl, as ReProver's Corpus requires (imports seen before importers)
    assert [c.path for c in read_corpus(out)] == ["Mathlib/Algebra/Group/Defs.lean", FILE]
    with pytest.raises(DataError, match="choose an empty --out"):
        trace_repo(URL, COMMIT, out)



@pytest.mark.lean
def test_trace_a_real_repository(tmp_path: Path):
    pytest.importorskip("lean_dojo")
    from data.leandojo import trace_repo

    counts = trace_repo(
        "https://github.com/yangky11/lean4-example",
        "e2602e8d4b1d9cf9240f1a20160a47cfc35165b8",
        tmp_path / "bench",
        num_val=1,
        num_test=1,
    )
    assert counts["random"]["test"] == 1
    assert load_problems(tmp_path / "bench", "random")
