"""`subgoal data list/show/export`: in-process through typer's CliRunner, errors through the real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from data.store import Attempt, RunStore
from eval.cli import app

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def subgoal(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """The real command line (`eval.cli.main`, what the `subgoal` script runs), wide enough not to wrap."""
    full_env = {**os.environ, "COLUMNS": "300", "PYTHONPATH": str(REPO), **env}
    return subprocess.run([sys.executable, "-c", "from eval.cli import main; main()", *args], cwd=cwd,
                          capture_output=True, text=True, env=full_env, timeout=120)  # fmt: skip


@pytest.fixture
def bench(shared_dir: Path) -> str:
    return str(shared_dir / "benchmarks")


def test_list_shows_sets_counts_and_reasons(bench, tmp_path):
    result = runner.invoke(app, ["--data-dir", bench, "data", "list"], env={"HF_HUB_OFFLINE": "1"})
    assert result.exit_code == 0, result.output
    for name, count in [("minif2f-valid", "244"), ("minif2f-test", "244"), ("putnambench", "672"),
                        ("proofnet-valid", "185"), ("proofnet-test", "186")]:  # fmt: skip
        row = next(line for line in result.output.splitlines() if f" {name} " in line)
        assert " yes " in row and f" {count} " in row
    proverbench = next(line for line in result.output.splitlines() if " proverbench " in line)
    assert " no " in proverbench
    missing = subgoal("--data-dir", str(tmp_path), "data", "list", HF_HUB_OFFLINE="1")
    assert missing.returncode == 0
    assert f"{tmp_path}/minif2f.jsonl not found" in missing.stdout
    assert "set proverbench_path in subgoal.toml or SUBGOAL_PROVERBENCH_PATH" in missing.stdout


def test_show_one_problem(bench):
    result = runner.invoke(app, ["--data-dir", bench, "data", "show", "putnambench", "putnam_1962_a2"])
    assert result.exit_code == 0, result.output
    assert "putnam_1962_a2_solution" in result.output and "informal statement" in result.output
    assert "import Mathlib" in result.output and "theorem putnam_1962_a2" in result.output


def test_show_a_lean_file_problem(tmp_path):
    lean = tmp_path / "Mine.lean"
    lean.write_text("import Mathlib\n\ntheorem mine (n : ℕ) : n + 0 = n := by sorry\n")
    result = runner.invoke(app, ["data", "show", str(lean), "mine"])
    assert result.exit_code == 0, result.output
    assert "theorem mine (n : ℕ) : n + 0 = n := by" in result.output and "span" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "show", "minif2f-tset", "x"], "error: unknown problem set 'minif2f-tset' (not a file, directory or hub id); known sets: minif2f-valid"),
        (["data", "show", "minif2f-test", "mathd_algebra_47"], "error: no problem 'mathd_algebra_47' in minif2f-test (244 problems); did you mean"),
        (["data", "export", "no/such/run", "--out", "x.jsonl"], "error: no run store at no/such/run"),
    ],
)  # fmt: skip
def test_user_errors_are_one_line_exit_2(bench, tmp_path, args, message):
    result = subgoal("--data-dir", bench, *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_bad_jsonl_through_the_cli(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"name": "a", "formal_statement": "theorem a : True := by"}\n{"name": "a", "formal_statement": 1}\n'
    )
    result = subgoal("data", "show", str(bad), "a")
    assert result.returncode == 2
    assert result.stderr == f"error: {bad}:2: field 'formal_statement' must be a string, got int 1\n"


def _run_store(tmp_path: Path, runs: tuple[str, ...] = ("r1",)) -> Path:
    run_dir = tmp_path / "runs" / "x"
    with RunStore(run_dir) as store:
        for name in runs:
            run = store.start_run(name, {"k": 2})
            store.record_many(run, [
                Attempt("p1", 0, "theorem p1 : True := by trivial", "proved", {"status": "proved"}, seed=1),
                Attempt("p1", 1, "theorem p1 : True := by simp", "failed", {"status": "failed"}, trace={"t": 1}),
                Attempt("p2", 0, "theorem p2 : False := by sorry", "unsound", {"status": "unsound"}),
            ])  # fmt: skip
    return run_dir


def test_export_formats(tmp_path):
    import datasets
    import pyarrow.parquet as pq

    run_dir = _run_store(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["data", "export", str(run_dir), "--format", "jsonl", "--out", str(out / "a.jsonl")]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "a.jsonl").read_text().splitlines()]
    assert [(r["problem"], r["index"], r["status"]) for r in rows] == [("p1", 0, "proved"), ("p1", 1, "failed"),
                                                                       ("p2", 0, "unsound")]  # fmt: skip
    assert rows[1]["trace"] == {"t": 1} and rows[0]["seed"] == 1
    result = runner.invoke(
        app, ["data", "export", str(run_dir), "--format", "parquet", "--out", str(out / "a.parquet")]
    )
    assert result.exit_code == 0, result.output
    assert pq.read_table(out / "a.parquet").num_rows == 3
    result = runner.invoke(
        app, ["data", "export", str(run_dir / "store.sqlite"), "--format", "hf", "--out", str(out / "hf")]
    )
    assert result.exit_code == 0, result.output
    ds = datasets.load_from_disk(str(out / "hf"))
    assert ds.num_rows == 3 and ds[2]["status"] == "unsound"


def test_export_picks_a_run(tmp_path):
    run_dir = _run_store(tmp_path, runs=("r1", "r2"))
    ambiguous = subgoal("data", "export", str(run_dir), "--out", str(tmp_path / "a.jsonl"))
    assert ambiguous.returncode == 2 and "2 runs in this store (r1, r2); name one" in ambiguous.stderr
    result = runner.invoke(
        app, ["data", "export", str(run_dir), "--run", "r2", "--out", str(tmp_path / "b.jsonl")]
    )
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "b.jsonl").read_text().splitlines()) == 3
    bad_format = runner.invoke(app, ["data", "export", str(run_dir), "--format", "csv", "--out", "x"])
    assert bad_format.exit_code == 2  # click's own usage error


def test_cli_start_up_stays_light():
    """`subgoal --help` imports no heavy library: the registry, pydantic, Lean, the prover load on use."""
    heavy = ("data.registry", "data.leandojo", "data.config", "pydantic", "torch", "lean_env", "prover")
    code = f"import sys, eval.cli; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
