"""Problem loading: the shared benchmarks, user JSONL, .lean files, HF datasets, the registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data import Problem, load_problems
from data.config import load_config
from data.errors import DataError
from data.lean_file import fill_sorries, load_lean, parse_lean
from data.loaders import load_hf, load_jsonl
from data.registry import SETS, problem_sets

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def cfg(shared_dir: Path):
    return load_config(environ={"SUBGOAL_DATA_DIR": str(shared_dir / "benchmarks")})


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------------- shared sets


@pytest.mark.parametrize(
    "name, count, split",
    [("minif2f-valid", 244, "valid"), ("minif2f-test", 244, "test"), ("putnambench", 672, "test"),
     ("proofnet-valid", 185, "valid"), ("proofnet-test", 186, "test")],
)  # fmt: skip
def test_registry_sets_load_with_exact_counts(cfg, name, count, split):
    problems = load_problems(name, cfg)
    assert len(problems) == count
    assert {p.split for p in problems} == {split}
    assert len({p.name for p in problems}) == count
    for p in problems:
        assert p.formal_statement.rstrip().endswith(":= by")
        assert p.header.startswith("import Mathlib")
        assert p.lean_source == p.header + p.formal_statement


def test_shared_files_totals(shared_dir):
    bench = shared_dir / "benchmarks"
    assert len(load_jsonl(bench / "minif2f.jsonl")) == 488
    assert len(load_jsonl(bench / "putnambench.jsonl")) == 672
    assert len(load_jsonl(bench / "proofnet.jsonl")) == 371


def test_putnambench_answers_and_proofnet_names_kept(cfg):
    putnam = {p.name: p for p in load_problems("putnambench", cfg)}
    with_answer = [p for p in putnam.values() if p.extra["answers"]]
    # the shared README says 341; the file holds 346 problems with an answer (each one `abbrev ..._solution`)
    assert len(with_answer) == 346
    assert all(f"abbrev {name}" in p.formal_statement for p in with_answer for name in p.extra["answers"])
    p = putnam["putnam_1962_a2"]
    assert set(p.extra["answers"]) == {"putnam_1962_a2_solution"}
    assert p.extra["answers"]["putnam_1962_a2_solution"]["type"] == "Set (ℝ → ℝ)"
    assert p.formal_statement.startswith("abbrev putnam_1962_a2_solution")
    assert p.informal_proof and p.extra["tags"] == ["analysis"]
    proofnet = load_problems("proofnet-valid", cfg) + load_problems("proofnet-test", cfg)
    renamed = [p for p in proofnet if p.name != p.extra["theorem_name"]]
    # 19 Lean names repeat (3 of them three times): the 2nd/3rd occurrence get `__2`/`__3`
    assert len({p.extra["theorem_name"] for p in renamed}) == 19 and len(renamed) == 22
    assert all(p.name in (p.extra["theorem_name"] + "__2", p.extra["theorem_name"] + "__3") for p in renamed)
    assert all("goal" in p.extra for p in proofnet)


def test_round_trip_keeps_every_field(cfg):
    for p in load_problems("putnambench", cfg)[:20] + load_problems("proofnet-test", cfg)[:20]:
        assert Problem.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_registry_table_and_unknown_name(cfg):
    assert {
        "minif2f-valid",
        "minif2f-test",
        "putnambench",
        "proofnet-valid",
        "proofnet-test",
        "proverbench",
    } <= set(SETS)
    for entry in SETS.values():
        assert entry.description and callable(entry.load) and callable(entry.available)
    with pytest.raises(DataError, match="known sets: minif2f-valid, minif2f-test, putnambench") as e:
        load_problems("minif2f-tset", cfg)
    assert "minif2f-tset" in str(e.value) and "\n" not in str(e.value)


def test_problem_sets_report_counts_and_reasons(cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # proverbench: never reach for the network in a test
    by_name = {s.name: s for s in problem_sets(cfg)}
    assert by_name["minif2f-test"].splits == {"test": 244} and by_name["minif2f-test"].available
    assert by_name["proofnet-valid"].count == 185
    empty = load_config(environ={"SUBGOAL_DATA_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    by_name = {s.name: s for s in problem_sets(empty)}
    assert not by_name["putnambench"].available
    assert "putnambench.jsonl not found" in by_name["putnambench"].reason
    assert str(tmp_path) in by_name["minif2f-valid"].reason


def test_split_argument(cfg, shared_dir):
    assert len(load_problems(shared_dir / "benchmarks" / "minif2f.jsonl", split="valid")) == 244
    with pytest.raises(DataError, match="no problems in split 'valid'; splits: test"):
        load_problems("minif2f-test", cfg, split="valid")


# ------------------------------------------------------------------------------------- user JSONL


def test_minimal_user_jsonl(tmp_path):
    path = _write_jsonl(tmp_path / "mine.jsonl", [
        {"name": "t1", "formal_statement": "theorem t1 : 1 + 1 = 2 := by"},
        "",
        {"name": "t2", "formal_statement": "theorem t2 : 2 = 2 := by sorry", "difficulty": 3, "header": "import Mathlib\n"},
        {"name": "t3", "formal_statement": "theorem t3 : 3 = 3 := sorry", "informal_prefix": "/-- Three is three. -/\n"},
    ])  # fmt: skip
    t1, t2, t3 = load_problems(path)
    assert (t1.header, t1.split, t1.source, t1.informal_statement) == ("", "", "mine.jsonl", None)
    assert t2.formal_statement == "theorem t2 : 2 = 2 := by" and t2.extra == {"difficulty": 3}
    assert t2.header == "import Mathlib\n"
    assert t3.formal_statement == "theorem t3 : 3 = 3 := by"
    assert t3.informal_statement == "Three is three." and t3.extra["informal_prefix"].startswith("/--")


GOOD = {"name": "a", "formal_statement": "theorem a : True := by"}


@pytest.mark.parametrize(
    "rows, line, needle",
    [
        ([GOOD, '{"name": "b", "formal_statement": '], 2, "bad JSON at column"),
        ([GOOD, {"name": "b"}], 2, "field 'formal_statement' is missing"),
        ([{"formal_statement": "theorem a : True := by"}], 1, "field 'name' is missing"),
        ([GOOD, GOOD | {"name": 7}], 2, "field 'name' must be a string, got int"),
        ([GOOD | {"header": ["import Mathlib"]}], 1, "field 'header' must be a string, got list"),
        ([GOOD | {"informal_statement": 1.5}], 1, "field 'informal_statement' must be a string"),
        ([GOOD, {"x": 1}, GOOD], 2, "field 'name' is missing"),
        ([GOOD, GOOD | {"name": "b"}, GOOD], 3, "field 'name': duplicate name 'a' (first at "),
        (["[1, 2]"], 1, "expected a JSON object"),
        ([GOOD | {"name": "  "}], 1, "field 'name' is empty"),
        (
            [GOOD | {"formal_statement": "theorem a : True"}],
            1,
            "field 'formal_statement' must end in ':= by'",
        ),
    ],
)
def test_bad_jsonl_names_file_line_field(tmp_path, rows, line, needle):
    path = _write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as e:
        load_problems(path)
    message = str(e.value)
    assert message.startswith(f"{path}:{line}: ")
    assert needle in message and "\n" not in message


def test_json_array_file(tmp_path):
    (tmp_path / "arr.json").write_text(json.dumps([GOOD, GOOD | {"name": "b"}], indent=2))
    assert [p.name for p in load_problems(tmp_path / "arr.json")] == ["a", "b"]
    (tmp_path / "arr.json").write_text(json.dumps([GOOD, {"name": "b"}], indent=2))
    with pytest.raises(DataError, match=r"arr.json item 1: field 'formal_statement' is missing"):
        load_problems(tmp_path / "arr.json")


def test_empty_missing_and_binary_files(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="no problems in the file"):
        load_problems(tmp_path / "empty.jsonl")
    with pytest.raises(DataError, match="no such file"):
        load_problems(tmp_path / "absent.jsonl")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="not UTF-8"):
        load_problems(tmp_path / "bin.jsonl")


# ------------------------------------------------------------------------------------- .lean files

LEAN = """import Mathlib
import Aesop

set_option maxHeartbeats 400000

open Nat Real

/- A block comment that mentions
theorem in_comment : False := by sorry
-/

/-- The first problem. -/
theorem first (n : ℕ) (h : 0 < n) :
    n ^ 2 > 0 := by
  sorry

def double (n : ℕ) : ℕ := 2 * n  -- context for what follows

def quote : Char := '"'  -- a char literal, not the start of a string
/- nested /- comments -/
theorem in_nested_comment : False := by sorry
-/

lemma proved_already : double 1 = 2 := by
  rfl

@[simp] lemma second (n : ℕ) : double n = n + n := sorry

theorem partial_proof (a b : ℕ) : a + b = b + a := by
  have h : a + b = b + a := by sorry
  exact h

example : 1 = 1 := by sorry

theorem third {x : ℝ} (hx : x = "not := sorry".length) : x = 12 := by sorry
"""


def test_lean_file_problems_header_and_context(tmp_path):
    problems = parse_lean(LEAN, "Demo.lean")
    assert [p.name for p in problems] == ["first", "second", "third"]
    first, second, third = problems
    header = LEAN[: LEAN.index("/-- The first")]
    assert first.header == header
    assert first.header.rstrip().endswith("-/")  # comments before the first declaration stay in the header
    assert (
        first.formal_statement
        == "/-- The first problem. -/\ntheorem first (n : ℕ) (h : 0 < n) :\n    n ^ 2 > 0 := by"
    )
    assert first.extra["line"] == 12
    # later theorems see the declarations before them (the def, the proved lemma), not earlier problems
    assert (
        "def double" in second.header
        and "proved_already" in second.header
        and "theorem first" not in second.header
    )
    assert second.formal_statement == "@[simp] lemma second (n : ℕ) : double n = n + n := by"
    assert "partial_proof" in third.header and "def quote" in third.header
    assert third.formal_statement.endswith('(hx : x = "not := sorry".length) : x = 12 := by')
    for p in problems:
        start, end = p.extra["span"]
        assert LEAN[start:end] == p.extra["decl"] and p.extra["decl"].endswith("sorry")


def test_lean_file_fill_every_sorry(tmp_path):
    path = tmp_path / "Demo.lean"
    path.write_text(LEAN)
    problems = load_problems(path)
    proofs = {
        "first": problems[0].header
        + "theorem first (n : ℕ) (h : 0 < n) :\n    n ^ 2 > 0 := by\n  positivity\n",
        "third": 'theorem third {x : ℝ} (hx : x = "not := sorry".length) : x = 12 := by\n  simp [hx]',
    }
    filled = fill_sorries(LEAN, problems, proofs)
    assert "positivity" in filled and "simp [hx]" in filled and filled.count("import Mathlib") == 1
    assert "/-- The first problem. -/" not in filled  # the declaration, docstring included, was replaced
    path.write_text(filled)
    assert [p.name for p in load_lean(path)] == ["second"]  # only the unfilled one is left
    proofs["second"] = "lemma second (n : ℕ) : double n = n + n := by\n  simp [double]; ring"
    with pytest.raises(DataError, match="changed since"):
        fill_sorries(filled, problems, proofs)  # offsets of the original text no longer fit
    done = fill_sorries(LEAN, problems, proofs)
    with pytest.raises(DataError, match="no `theorem NAME ... := by sorry` found"):
        parse_lean(done, "Done.lean")


def test_lean_file_errors(tmp_path):
    dup = "import Mathlib\n\ntheorem a : True := by sorry\n\ntheorem a : True := by sorry\n"
    with pytest.raises(
        DataError, match=r"Dup.lean:5: field 'name': duplicate theorem name 'a' \(first on line 3\)"
    ):
        parse_lean(dup, "Dup.lean")
    with pytest.raises(DataError, match="no declarations found"):
        parse_lean("import Mathlib\n-- nothing\n", "Empty.lean")


# ------------------------------------------------------------------------------------ HF datasets

ROWS = [
    {"name": "h1", "split": "valid", "header": "import Mathlib\n", "formal_statement": "theorem h1 : True := by\n",
     "informal_statement": "trivially", "goal": "⊢ True"},
    {"name": "h2", "split": "test", "header": "import Mathlib\n", "formal_statement": "theorem h2 : 1 = 1 := by\n",
     "informal_statement": None, "goal": "⊢ 1 = 1"},
]  # fmt: skip


def test_hf_dataset_saved_to_disk(tmp_path):
    import datasets

    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "ds"))
    problems = load_problems(tmp_path / "ds")
    assert [p.name for p in problems] == ["h1", "h2"]
    assert problems[0].extra == {"goal": "⊢ True"} and problems[1].informal_statement is None
    assert [p.name for p in load_problems(str(tmp_path / "ds"), split="test")] == ["h2"]


def test_hf_dataset_dict_splits_parquet_and_bad_rows(tmp_path):
    import datasets

    rows = [{k: v for k, v in r.items() if k != "split"} for r in ROWS]
    dd = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows[:1]), "eval": datasets.Dataset.from_list(rows[1:])}
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    problems = load_hf(tmp_path / "dd")
    assert {p.name: p.split for p in problems} == {
        "h1": "train",
        "h2": "eval",
    }  # split from the dataset split
    assert [p.name for p in load_problems(tmp_path / "dd", split="eval")] == ["h2"]
    datasets.Dataset.from_list(ROWS).to_parquet(str(tmp_path / "p.parquet"))
    assert [p.name for p in load_problems(tmp_path / "p.parquet")] == ["h1", "h2"]
    datasets.Dataset.from_list([{"name": "x", "statement": "theorem x : True := by"}]).save_to_disk(
        str(tmp_path / "bad")
    )
    with pytest.raises(DataError, match=r"bad row 0: field 'formal_statement' is missing"):
        load_problems(tmp_path / "bad")


def test_hub_offline_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(DataError) as e:
        load_problems("someone/not-a-local-dataset")
    assert time.monotonic() - start < 10  # no 25 s of hub retries
    assert "'someone/not-a-local-dataset'" in str(e.value) and "HF_HUB_OFFLINE" in str(e.value)
    assert "\n" not in str(e.value)


def test_hub_unreachable_is_one_clear_error(tmp_path):
    # a fresh process (the HF libraries read HF_HUB_OFFLINE once) whose hub endpoint refuses connections
    code = "from data import load_problems; load_problems('someone/not-a-local-dataset')"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and "proxy" not in k.lower()}
    env |= {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert time.monotonic() - start < 20
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("data.errors.DataError: 'someone/not-a-local-dataset' is not a local file or directory")
    assert "hub cannot be reached to load it as a dataset id (127.0.0.1: Connection refused)" in last


def test_proverbench_local_path_and_missing(tmp_path, monkeypatch, shared_dir):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rows = [
        json.loads(line)
        for line in (shared_dir / "benchmarks" / "minif2f.jsonl").read_text().splitlines()[:3]
    ]
    for r in rows:  # ProverBench's own field name for the informal statement
        r["informal_prefix"] = f"/-- {r.pop('informal_statement')} -/\n"
    local = _write_jsonl(tmp_path / "proverbench.jsonl", rows)
    cfg = load_config(environ={"SUBGOAL_PROVERBENCH_PATH": str(local)})
    problems = load_problems("proverbench", cfg)
    assert [p.name for p in problems] == [r["name"] for r in rows]
    assert problems[0].informal_statement and not problems[0].informal_statement.startswith("/--")
    with pytest.raises(DataError, match="proverbench: .*set proverbench_path"):
        load_problems("proverbench", load_config(environ={}))
    with pytest.raises(DataError, match="proverbench_path .* does not exist"):
        load_problems(
            "proverbench", load_config(environ={"SUBGOAL_PROVERBENCH_PATH": str(tmp_path / "nope.jsonl")})
        )
