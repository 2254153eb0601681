"""LeanDojo: benchmark loader, tactic examples, tracing errors, and the Dojo proof session (through a fake).

The fixture is written here in the exact LeanDojo Benchmark 4 layout (see `data/leandojo.py`): a tiny
"mathlib4" checkout with one source file, `random/` and `novel_premises/` splits and `corpus.jsonl`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from data.errors import DataError
from data.leandojo import (
    BENCHMARK_DOI,
    load_problems,
    read_corpus,
    read_theorems,
    split_by_premise,
    statement_from_state,
    tactic_examples,
    write_benchmark,
)

URL = "https://github.com/leanprover-community/mathlib4"
COMMIT = "29dcec074de168ac2bf835a77ef68bbe069194c5"
FILE = "Mathlib/Demo/Unicode.lean"
SOURCE = """import Mathlib.Algebra.Ring.Basic

/-!
# Demo: statements with unicode
-/

namespace Demo

variable {α : Type*} [CommRing α]

/-- Addition commutes, in a ring. -/
@[simp]
theorem add_comm' (a b : α) : a + b = b + a := by
  rw [add_comm]

theorem and_intro' (p q : Prop) (hp : p) (hq : q) : p ∧ q := by
  constructor
  · exact hp
  · exact hq

theorem leaked (x y : ℤ) (h₀ : 0 < y) (h₁ : y < x) (h₂ : x + y + x * y = 80) : x = 26 := by
  nlinarith [h₀, h₁, h₂]

lemma lt_of_succ {n m : ℕ} (h : n.succ ≤ m) : n < m :=
  Nat.lt_of_succ_le h

end Demo
"""

TWO_GOALS = "case left\np q : Prop\nhp : p\nhq : q\n⊢ p\n\ncase right\np q : Prop\nhp : p\nhq : q\n⊢ q"


def _span(name: str) -> tuple[list[int], list[int]]:
    """[line, col] of the declaration keyword and the end of its proof, as LeanDojo records them."""
    lines = SOURCE.split("\n")
    i = next(k for k, line in enumerate(lines) if f" {name} " in line)
    j = i + 1
    while j < len(lines) and lines[j].startswith("  "):
        j += 1
    col = lines[i].index("theorem" if "theorem" in lines[i] else "lemma")
    return [i + 1, col + 1], [j, len(lines[j - 1]) + 1]


def _tac(tactic, before, after, premises=(), annotated=None):
    prov = [
        {
            "full_name": p,
            "def_path": "Mathlib/Algebra/Group/Defs.lean",
            "def_pos": [10, 1],
            "def_end_pos": [12, 5],
        }
        for p in premises
    ]
    return {
        "tactic": tactic,
        "annotated_tactic": [annotated or tactic, prov],
        "state_before": before,
        "state_after": after,
    }


def _thm(full_name, short, tactics, file_path=FILE):
    start, end = _span(short) if file_path == FILE else ([3, 1], [4, 10])
    return {
        "url": URL,
        "commit": COMMIT,
        "file_path": file_path,
        "full_name": full_name,
        "start": start,
        "end": end,
        "traced_tactics": tactics,
    }


THEOREMS = [
    _thm(
        "Demo.add_comm'",
        "add_comm'",
        [
            _tac(
                "rw [add_comm]",
                "α : Type u_1\ninst✝ : CommRing α\na b : α\n⊢ a + b = b + a",
                "no goals",
                ["add_comm"],
                "rw [<a>add_comm</a>]",
            )
        ],
    ),
    _thm(
        "Demo.and_intro'",
        "and_intro'",
        [
            _tac("constructor", "p q : Prop\nhp : p\nhq : q\n⊢ p ∧ q", TWO_GOALS),
            _tac("exact hp", TWO_GOALS, "case right\np q : Prop\nhp : p\nhq : q\n⊢ q"),
            _tac("exact hq", "case right\np q : Prop\nhp : p\nhq : q\n⊢ q", "no goals"),
        ],
    ),
    _thm(
        "Demo.leaked",
        "leaked",
        [
            _tac(
                "nlinarith [h₀, h₁, h₂]",
                "x y : ℤ\nh₀ : 0 < y\nh₁ : y < x\nh₂ : x + y + x * y = 80\n⊢ x = 26",
                "no goals",
            )
        ],
    ),
    _thm("Demo.lt_of_succ", "lt_of_succ", []),  # term-mode proof: no tactics, statement from source only
    _thm(  # a dependency's theorem whose file is not in the checkout: statement derived from the state
        "Nat.lt_irrefl'",
        "",
        [
            _tac(
                "exact Nat.lt_irrefl _",
                "n✝ : ℕ\n⊢ ¬n✝ < n✝",
                "no goals",
                ["Nat.lt_irrefl"],
                "exact <a>Nat.lt_irrefl</a> _",
            )
        ],
        file_path=".lake/packages/batteries/Batteries/Demo.lean",
    ),
]

CORPUS = [
    {
        "path": "Mathlib/Algebra/Group/Defs.lean",
        "imports": [],
        "premises": [
            {
                "full_name": "add_comm",
                "code": "theorem add_comm [AddCommMagma G] (a b : G) : a + b = b + a",
                "start": [10, 1],
                "end": [12, 5],
                "kind": "commanddeclaration",
            }
        ],
    },
    {
        "path": FILE,
        "imports": ["Mathlib/Algebra/Group/Defs.lean"],
        "premises": [
            {
                "full_name": "Demo.add_comm'",
                "code": "theorem add_comm' (a b : α) : a + b = b + a",
                "start": _span("add_comm'")[0],
                "end": _span("add_comm'")[1],
                "kind": "commanddeclaration",
            }
        ],
    },
]


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    root = tmp_path / "leandojo_benchmark_4"
    splits = {"train": THEOREMS[:2], "val": THEOREMS[2:4], "test": THEOREMS[4:]}
    for strategy in ("random", "novel_premises"):
        (root / strategy).mkdir(parents=True)
        for split, items in splits.items():
            (root / strategy / f"{split}.json").write_text(json.dumps(items, ensure_ascii=False))
    (root / "corpus.jsonl").write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in CORPUS))
    src = root / "repos" / "mathlib4" / FILE
    src.parent.mkdir(parents=True)
    src.write_text(SOURCE)
    return root


# ------------------------------------------------------------------------------------------ loader
def test_reads_the_exact_layout(bench: Path):
    train = read_theorems(bench, "random", "train")
    assert [t.full_name for t in train] == ["Demo.add_comm'", "Demo.and_intro'"]
    rw = train[0].traced_tactics[0]
    assert rw.annotated_tactic == "rw [<a>add_comm</a>]"
    assert [p.full_name for p in rw.premises] == ["add_comm"]
    assert rw.premises[0].def_pos == [10, 1]
    assert train[1].traced_tactics[1].state_before.count("⊢") == 2
    corpus = list(read_corpus(bench))
    assert corpus[1].imports == ["Mathlib/Algebra/Group/Defs.lean"]
    assert corpus[0].premises[0]["full_name"] == "add_comm"


def test_statements_come_from_source_with_their_context(bench: Path):
    problems = {p.name: p for p in load_problems(bench, "random")}
    assert set(problems) == {
        "Demo.add_comm'",
        "Demo.and_intro'",
        "Demo.leaked",
        "Demo.lt_of_succ",
        "Nat.lt_irrefl'",
    }
    p = problems["Demo.add_comm'"]
    assert p.formal_statement == "theorem add_comm' (a b : α) : a + b = b + a := by"
    assert p.extra["statement_origin"] == "source"
    # the header is the file before the theorem, without the theorem's own docstring and attribute
    assert p.header.startswith("import Mathlib.Algebra.Ring.Basic\n")
    assert "namespace Demo" in p.header and "variable {α : Type*} [CommRing α]" in p.header
    assert "/--" not in p.header and "@[simp]" not in p.header
    assert (
        p.extra["prompt_header"]
        == "import Mathlib.Algebra.Ring.Basic\nnamespace Demo\nvariable {α : Type*} [CommRing α]\n"
    )
    assert p.lean_source.endswith("[CommRing α]\n\ntheorem add_comm' (a b : α) : a + b = b + a := by")
    assert p.split == "train" and p.source == "leandojo-benchmark-4/random"
    assert p.extra["file_path"] == FILE and p.extra["commit"] == COMMIT
    # a term-mode proof still yields its statement; the proof term is cut at the top-level :=
    assert (
        problems["Demo.lt_of_succ"].formal_statement
        == "lemma lt_of_succ {n m : ℕ} (h : n.succ ≤ m) : n < m := by"
    )
    assert problems["Demo.lt_of_succ"].split == "val"
    # a span that starts at the docstring (modifiers included) gives the same statement and header
    from data.leandojo import TracedTheorem, statement_from_source

    doc_line = SOURCE.split("\n").index("/-- Addition commutes, in a ring. -/") + 1
    thm = TracedTheorem(URL, COMMIT, FILE, "Demo.add_comm'", [doc_line, 1], _span("add_comm'")[1], [])
    assert statement_from_source(thm, bench / "repos" / "mathlib4") == (p.header, p.formal_statement)


def test_statement_derived_from_state_when_source_is_absent(bench: Path):
    p = next(p for p in load_problems(bench, "novel_premises", "test"))
    assert p.name == "Nat.lt_irrefl'"
    assert p.extra["statement_origin"] == "state_before"
    assert p.formal_statement == "theorem Nat.lt_irrefl' (n_1 : ℕ) :\n    ¬n_1 < n_1 := by"
    assert p.header == "import Mathlib\n\n"


def test_without_checkout_every_statement_is_derived(bench: Path, tmp_path: Path):
    import shutil

    shutil.rmtree(bench / "repos")
    problems = {p.name: p for p in load_problems(bench, "random", "train")}
    p = problems["Demo.add_comm'"]
    assert p.extra["statement_origin"] == "state_before"
    assert (
        p.formal_statement
        == "theorem Demo.add_comm' (α : Type u_1) [CommRing α] (a b : α) :\n    a + b = b + a := by"
    )
    assert "(α : Type u_1)" in statement_from_state("x", "α : Type u_1\n⊢ True")[1]
    assert p.header == "import Mathlib\n\nuniverse u_1\n\n"
    # first goal of a multi-goal state; the `case` tag is not a hypothesis
    _, stmt = statement_from_state("t", TWO_GOALS)
    assert stmt == "theorem t (p q : Prop) (hp : p) (hq : q) :\n    p := by"
    assert statement_from_state("t", "x : ℕ := 3\n⊢ x = 3") is None  # a let cannot become a binder
    # a term-mode theorem without source has nothing to derive from: skipped, not invented
    assert "Demo.lt_of_succ" not in {p.name for p in load_problems(bench, "random", "val")}


def test_missing_or_bad_benchmark_is_one_clear_error(tmp_path: Path, bench: Path):
    with pytest.raises(DataError, match="10.5281/zenodo.8040109"):
        load_problems(None, "random")
    with pytest.raises(DataError, match="does not exist.*zenodo"):
        load_problems(tmp_path / "nowhere", "random")
    with pytest.raises(DataError, match="unknown LeanDojo split strategy"):
        load_problems(bench, "by_file")
    (bench / "random" / "val.json").write_text('[{"url": "u", "commit": "c"}]')
    with pytest.raises(DataError, match="val.json item 0: theorem lacks the string field 'file_path'"):
        load_problems(bench, "random", "val")
    (bench / "random" / "val.json").write_text("[{")
    with pytest.raises(DataError, match="not valid JSON"):
        load_problems(bench, "random", "val")
    assert BENCHMARK_DOI.startswith("https://doi.org/")


def test_registry_lists_and_loads_the_leandojo_sets(bench: Path, monkeypatch, capsys):
    from data.config import load_config
    from data.registry import load_problems as load_set
    from data.registry import problem_sets

    cfg = load_config(overrides={"leandojo_dir": bench}, environ={})
    sets = {s.name: s for s in problem_sets(cfg)}
    assert sets["leandojo-random"].splits == {"train": 2, "val": 2, "test": 1}
    assert sets["leandojo-novel"].available
    test = load_set("leandojo-novel", cfg, split="test")
    assert [p.name for p in test] == ["Nat.lt_irrefl'"] and test[
        0
    ].source == "leandojo-benchmark-4/novel_premises"
    unset = {s.name: s for s in problem_sets(load_config(environ={}))}
    assert "zenodo.8040109" in unset["leandojo-random"].reason

    from eval.cli import main

    monkeypatch.setenv("SUBGOAL_LEANDOJO_DIR", str(bench))
    monkeypatch.setenv("COLUMNS", "250")
    try:
        main(["data", "list"])
    except SystemExit as e:
        assert e.code in (0, None)
    out = capsys.readouterr().out
    assert "leandojo-random" in out and "leandojo-novel" in out and "train 2, val 2, test 1" in out


# ------------------------------------------------------------------------------------------ examples
def test_tactic_examples_in_the_sft_format(bench: Path):
    from data.sft_dataset import validate_example

    theorems = read_theorems(bench, "random", "train")
    examples = list(tactic_examples(theorems, "random", "train", bench / "repos" / "mathlib4"))
    assert len(examples) == 4
    rw = examples[0]
    assert rw["kind"] == "tactic" and rw["completion"] == "rw [add_comm]"
    assert rw["prompt"] == "[GOAL]\nα : Type u_1\ninst✝ : CommRing α\na b : α\n⊢ a + b = b + a\n[PROOFSTEP]\n"
    assert rw["premises"] == ["add_comm"]
    assert rw["statement"] == "theorem add_comm' (a b : α) : a + b = b + a := by"
    assert rw["problem"] == "Demo.add_comm'" and rw["source"] == "leandojo-benchmark-4/random/train"
    assert examples[2]["prompt"].count("⊢") == 2  # the multi-goal state is kept whole
    for ex in examples:
        assert validate_example(ex)["kind"] == "tactic"


def test_tactic_examples_flow_into_the_dataset_builder_decontaminated(
    bench: Path, tmp_path: Path, shared_dir
):
    from data.decontam import Decontaminator
    from data.leandojo import write_tactic_examples
    from data.sft_dataset import build_sft_dataset, load_sft_dataset, read_examples

    out = tmp_path / "tactics.jsonl"
    n = sum(
        write_tactic_examples(bench, "random", s, out.with_suffix(f".{s}.jsonl")) for s in ("train", "val")
    )
    assert n == 5
    records = read_examples(out.with_suffix(".train.jsonl")) + read_examples(out.with_suffix(".val.jsonl"))
    whole = {
        "prompt": "p",
        "completion": "by simp",
        "kind": "whole_proof",
        "problem": "x",
        "statement": "theorem x : 1 + 1 = 2 := by",
        "source": "run",
    }
    decon = Decontaminator.from_data_dir(shared_dir / "benchmarks")
    report = build_sft_dataset([*records, whole], tmp_path / "sft", decon)
    # Demo.leaked restates miniF2F's amc12a_2015_p10 under another name: its tactic example is removed
    assert [(c["problem"], c["benchmark"], c["name"]) for c in report.contaminated] == [
        ("Demo.leaked", "minif2f", "amc12a_2015_p10")
    ]
    assert report.by_kind == {"tactic": 4, "whole_proof": 1}
    ds = load_sft_dataset(tmp_path / "sft")
    assert "Demo.leaked" not in set(ds["problem"])


def test_tactics_command_writes_prover_template_prompts(bench: Path, tmp_path: Path, capsys):
    from data.sft_dataset import read_examples
    from eval.cli import main

    out = tmp_path / "tactics.jsonl"
    try:
        main(["data", "tactics", "--leandojo-dir", str(bench), "--split", "train", "--out", str(out)])
    except SystemExit as e:
        assert e.code in (0, None), capsys.readouterr().err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 4 and records[0]["premises"] == ["add_comm"]
    first, third = records[0]["prompt"], records[2]["prompt"]
    # the tree-search template: scope header (no earlier declarations), statement, tactics so far, goals
    assert "import Mathlib.Algebra.Ring.Basic\nnamespace Demo\nvariable {α : Type*} [CommRing α]\n" in first
    assert "theorem add_comm' (a b : α) : a + b = b + a := by\n" in first and "⊢ a + b = b + a" in first
    assert "/--" not in first and "# Demo" not in first
    assert "theorem and_intro' (p q : Prop) (hp : p) (hq : q) : p ∧ q := by\n  constructor\n" in third
    assert [r["completion"] for r in read_examples(out)] == [
        "rw [add_comm]",
        "constructor",
        "exact hp",
        "exact hq",
    ]


# ------------------------------------------------------------------------------------------ splitting / writing
def test_write_benchmark_round_trips_and_splits_by_premise(tmp_path: Path, bench: Path):
    theorems = [t for s in ("train", "val", "test") for t in read_theorems(bench, "random", s)]
    novel = split_by_premise(theorems, num_val=1, num_test=1)
    train_premises = {p for t in novel["train"] for p in t.premise_names()}
    for t in novel["val"] + novel["test"]:
        assert set(t.premise_names()) - train_premises, (
            t.full_name
        )  # each held-out theorem needs a novel premise
    counts = write_benchmark(tmp_path / "out", theorems, read_corpus(bench), {"dataset_name": "t"}, 1, 1)
    assert counts["random"] == {"train": 3, "val": 1, "test": 1}
    assert sum(counts["novel_premises"].values()) == 5
    again = [t for s in ("train", "val", "test") for t in read_theorems(tmp_path / "out", "random", s)]
    assert sorted(t.to_json()["full_name"] for t in again) == sorted(t.full_name for t in theorems)
    assert {t.full_name: t.to_json() for t in again} == {t.full_name: t.to_json() for t in theorems}
    assert [c.path for c in read_corpus(tmp_path / "out")] == [c["path"] for c in CORPUS]
    with pytest.raises(DataError, match="already holds a benchmark"):
        write_benchmark(tmp_path / "out", theorems, [], {})


# ------------------------------------------------------------------------------------------ tracing
def test_trace_without_lean_dojo_says_how_to_install(monkeypatch, tmp_path: Path):
    from data.leandojo import trace_repo

    monkeypatch.setitem(sys.modules, "lean_dojo", None)  # makes `import lean_dojo` raise ImportError
    with pytest.raises(DataError, match=r"pip install 'subgoal\[dojo\]'"):
        trace_repo(URL, COMMIT, tmp_path / "t")


def test_trace_without_lean_says_so(monkeypatch, tmp_path: Path):
    from data.leandojo import trace_repo

    monkeypatch.setitem(sys.modules, "lean_dojo", _FakeLeanDojoModule())
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


def _fake_traced_repo(repo, dep):
    """A FAKE `lean_dojo.TracedRepo` (what `lean_dojo.trace` returns), built from the fixture's theorems."""
    import types

    import networkx as nx

    def traced_theorem(d, owner):
        tactics = []
        for t in d["traced_tactics"]:
            marked, prov = t["annotated_tactic"]
            tactics.append(
                types.SimpleNamespace(
                    tactic=t["tactic"],
                    state_before=t["state_before"],
                    state_after=t["state_after"],
                    get_annotated_tactic=lambda marked=marked, prov=prov: (marked, prov),
                )
            )
        path = d["file_path"].removeprefix(".lake/packages/batteries/")
        return types.SimpleNamespace(
            repo=owner,
            start=tuple(d["start"]),
            end=tuple(d["end"]),
            theorem=types.SimpleNamespace(file_path=Path(path), full_name=d["full_name"]),
            get_traced_tactics=lambda tactics=tactics: tactics,
        )

    theorems = [traced_theorem(d, dep if d["file_path"].startswith(".lake") else repo) for d in THEOREMS]
    theorems.append(
        traced_theorem(
            _thm("Nat.add_zero", "", [], "src/Init/Core.lean"), types.SimpleNamespace(is_lean4=True)
        )
    )  # a theorem of Lean itself: LeanDojo's exporter leaves those out
    graph = nx.DiGraph()
    for c in CORPUS:
        graph.add_node(
            c["path"],
            traced_file=types.SimpleNamespace(
                path=Path(c["path"]), get_premise_definitions=lambda c=c: c["premises"]
            ),
        )
    for c in CORPUS:
        for imp in c["imports"]:
            graph.add_edge(c["path"], imp)
    return types.SimpleNamespace(
        repo=repo,
        dependencies={"batteries": dep},
        traced_files_graph=graph,
        get_traced_theorems=lambda: theorems,
    )


def test_trace_writes_the_benchmark_layout(monkeypatch, tmp_path: Path):
    """`trace_repo` end to end with a fake lean_dojo (no Lean here): conversion, both splits, corpus, metadata."""
    import types

    from data.leandojo import trace_repo

    fake = _fake_lean_dojo()
    calls = {}

    def trace(repo, dst_dir=None, build_deps=True):
        calls.update(repo=repo, dst_dir=dst_dir, build_deps=build_deps)
        return _fake_traced_repo(repo, dep)

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


def theorem_json(name: str) -> dict:
    return next(t for t in THEOREMS if t["full_name"] == name)


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


class _FakeLeanDojoModule:
    """Stands in for `lean_dojo` where only its presence matters (a fake: no Lean exists here)."""

    __version__ = "fake"


# ------------------------------------------------------------------------------------------ Dojo session
def _fake_lean_dojo():
    """A FAKE `lean_dojo` module: the real API's names and shapes (checked against the real package below when
    it is installed), over a toy "Lean" that honestly checks `constructor` on `∧`, `intro` on `→` and `exact h`.
    It stands in for LeanDojo's Lean process, which needs a traced repository and a real Lean toolchain."""
    import types
    from dataclasses import dataclass, field

    fake = types.ModuleType("lean_dojo")
    fake.__version__ = "fake"
    fake.processes = []  # every fake Lean process started, in order

    @dataclass(frozen=True)
    class LeanGitRepo:
        url: str
        commit: str

    @dataclass(frozen=True)
    class Theorem:
        repo: LeanGitRepo
        file_path: Path
        full_name: str

        def __post_init__(self):
            object.__setattr__(self, "file_path", Path(self.file_path))

    @dataclass(frozen=True)
    class TacticState:
        pp: str
        id: int = field(compare=False)
        message: str | None = field(default=None, compare=False)

    @dataclass(frozen=True)
    class ProofFinished:
        tactic_state_id: int
        message: str | None = field(default=None, compare=False)

    @dataclass(frozen=True)
    class ProofGivenUp:
        pass

    @dataclass(frozen=True)
    class LeanError:
        error: str

    class DojoInitError(Exception):
        pass

    class DojoCrashError(Exception):
        pass

    class DojoTacticTimeoutError(Exception):
        pass

    theorems = {
        "Demo.and_intro'": [(None, [("p q", "Prop"), ("hp", "p"), ("hq", "q")], "p ∧ q")],
        "Demo.nat_and": [(None, [("p q", "ℕ"), ("hp", "p = 1"), ("hq", "q = 2")], "p = 1 ∧ q = 2")],
    }

    def render(goals):
        out = []
        for case, hyps, target in goals:
            lines = ([f"case {case}"] if case else []) + [f"{n} : {t}" for n, t in hyps] + [f"⊢ {target}"]
            out.append("\n".join(lines))
        return "\n\n".join(out)

    def step(goals, tactic):
        (case, hyps, target), rest = goals[0], goals[1:]
        words = tactic.split()
        if tactic == "constructor" and " ∧ " in target:
            a, b = target.split(" ∧ ", 1)
            return [("left", hyps, a), ("right", hyps, b), *rest]
        if len(words) == 2 and words[0] == "intro" and " → " in target:
            a, b = target.split(" → ", 1)
            return [(case, [*hyps, (words[1], a)], b), *rest]
        if len(words) == 2 and words[0] == "exact":
            if any(n == words[1] and t == target for n, t in hyps):
                return rest
            return f"type mismatch\n  {words[1]}\nhas a type other than\n  {target}"
        return f"unknown tactic {tactic!r}"

    class Dojo:
        def __init__(self, entry, timeout=600, additional_imports=[], build_deps=True):  # noqa: B006 (real API)
            self.entry, self.timeout = entry, timeout
            self.alive, self.states = False, {}

        def __enter__(self):
            if self.entry.full_name not in theorems:
                raise DojoInitError(f"Failed to locate the theorem with `{self.entry.full_name}`")
            self.alive = True
            fake.processes.append(self)
            self.states = {0: theorems[self.entry.full_name]}
            return self, TacticState(render(self.states[0]), 0)

        def __exit__(self, *exc):
            self.alive = False

        def run_tac(self, state, tactic):
            if not self.alive:
                raise DojoCrashError("Unexpected EOF")
            if tactic == "crash!":
                self.alive = False
                raise DojoCrashError("OOM")
            if tactic == "loop":
                raise DojoTacticTimeoutError()
            if tactic in ("sorry", "admit"):
                return ProofGivenUp()
            if tactic == "fake_close_all":  # test hook: an environment that wrongly reports success
                sid = len(self.states)
                self.states[sid] = []
                return ProofFinished(sid)
            if state.id not in self.states:
                return LeanError(f"unknown tactic state {state.id}")
            new = step(self.states[state.id], tactic)
            if isinstance(new, str):
                return LeanError(new)
            sid = len(self.states)
            self.states[sid] = new
            return ProofFinished(sid) if not new else TacticState(render(new), sid)

    for obj in (LeanGitRepo, Theorem, TacticState, ProofFinished, ProofGivenUp, LeanError, DojoInitError,
                DojoCrashError, DojoTacticTimeoutError, Dojo):  # fmt: skip
        setattr(fake, obj.__name__, obj)
    return fake


@pytest.fixture
def fake_dojo(monkeypatch):
    fake = _fake_lean_dojo()
    monkeypatch.setitem(sys.modules, "lean_dojo", fake)
    return fake


@pytest.fixture
def problem(bench: Path):
    return next(p for p in load_problems(bench, "random", "train") if p.name == "Demo.and_intro'")


def test_fake_lean_dojo_matches_the_real_api():
    """The fake is only worth something if it has the real package's shapes."""
    import dataclasses
    import inspect

    real = pytest.importorskip("lean_dojo", reason="lean-dojo (the `dojo` extra) is not installed")
    fake = _fake_lean_dojo()
    for name in ("TacticState", "ProofFinished", "ProofGivenUp", "LeanError"):
        real_fields = [f.name for f in dataclasses.fields(getattr(real, name)) if f.init]
        assert [f.name for f in dataclasses.fields(getattr(fake, name))] == real_fields, name
    assert [f.name for f in dataclasses.fields(real.Theorem)] == ["repo", "file_path", "full_name"]
    assert list(inspect.signature(real.Dojo.__init__).parameters) == list(
        inspect.signature(fake.Dojo.__init__).parameters
    )
    assert list(inspect.signature(real.Dojo.run_tac).parameters) == ["self", "state", "tactic"]
    for name in ("DojoInitError", "DojoCrashError", "DojoTacticTimeoutError", "LeanGitRepo"):
        assert hasattr(real, name)


def test_dojo_session_proves_step_by_step(fake_dojo, problem):
    from lean_env.dojo import DojoSession

    with DojoSession(timeout_s=30) as session:
        s0 = session.start(problem)
        assert s0.goals == ("p q : Prop\nhp : p\nhq : q\n⊢ p ∧ q",)
        r1 = session.run_tactic(s0, "constructor")
        assert r1.error is None and not r1.finished
        assert r1.goals == [
            "case left\np q : Prop\nhp : p\nhq : q\n⊢ p",
            "case right\np q : Prop\nhp : p\nhq : q\n⊢ q",
        ]
        bad = session.run_tactic(r1.state, "exact hq")
        assert bad.state is None and "type mismatch" in bad.error and not bad.finished
        r2 = session.run_tactic(r1.state, "exact hp")
        assert r2.goals == ["case right\np q : Prop\nhp : p\nhq : q\n⊢ q"]
        r3 = session.run_tactic(r2.state, "exact hq")
        assert r3.finished and r3.error is None and r3.goals == []
        assert r3.state.tactics == ("constructor", "exact hp", "exact hq")
        # the full theorem text, for the Verifier to re-check (Dojo's word alone never counts)
        assert session.proof_text(problem, r3.state) == (
            "theorem and_intro' (p q : Prop) (hp : p) (hq : q) : p ∧ q := by\n  constructor\n  exact hp\n  exact hq\n"
        )
        again = session.start(problem)  # a second attempt reuses the theorem's Lean process
        assert again.goals == s0.goals and len(fake_dojo.processes) == 1
        assert session.run_tactic(again, "constructor").goals == r1.goals
        gave_up = session.run_tactic(r2.state, "sorry")
        assert gave_up.error and "gave up" in gave_up.error and not gave_up.finished
        assert fake_dojo.Dojo.__name__ == "Dojo"
        process = fake_dojo.processes[-1]
    assert not process.alive  # close() ends the Lean process


def test_dojo_session_survives_crash_and_timeout_by_replaying(fake_dojo, problem):
    from lean_env.dojo import DojoSession

    session = DojoSession(timeout_s=5)
    s0 = session.start(problem)
    r1 = session.run_tactic(s0, "constructor")
    crashed = session.run_tactic(r1.state, "crash!")
    assert crashed.state is None and "Lean crashed" in crashed.error
    # a state from before the crash still works: the theorem is reopened and its tactics replayed
    r2 = session.run_tactic(r1.state, "exact hp")
    assert r2.error is None and r2.goals == ["case right\np q : Prop\nhp : p\nhq : q\n⊢ q"]
    assert len(fake_dojo.processes) == 2 and not fake_dojo.processes[0].alive
    timed_out = session.run_tactic(r2.state, "loop")
    assert timed_out.error == "timeout after 5s"
    r3 = session.run_tactic(r2.state, "exact hq")
    assert r3.finished and r3.state.tactics == ("constructor", "exact hp", "exact hq")
    assert len(fake_dojo.processes) == 3
    session.close()
    assert not any(p.alive for p in fake_dojo.processes)


def test_dojo_session_clear_errors(monkeypatch, fake_dojo, problem):
    from data.problem import Problem
    from lean_env.dojo import DojoSession
    from lean_env.errors import LeanError

    session = DojoSession()
    with pytest.raises(LeanError, match="--interaction repl"):
        session.start(Problem("t", "theorem t : True := by"))
    unknown = Problem(
        "Demo.nope", "theorem nope : True := by", extra={**problem.extra, "full_name": "Demo.nope"}
    )
    with pytest.raises(LeanError, match="could not open Demo.nope"):
        session.start(unknown)
    monkeypatch.setitem(sys.modules, "lean_dojo", None)
    with pytest.raises(LeanError, match=r"lean-dojo"):
        DojoSession()


NAT_AND = "theorem nat_and (p q : ℕ) (hp : p = 1) (hq : q = 2) : p = 1 ∧ q = 2 := by"


@pytest.fixture(params=["dojo", "repl"])
def session_and_problem(request, monkeypatch):
    """The same ProofSession interface through `open_session`: Dojo over the fake lean_dojo, and the REPL
    session over the prove engineer's fake REPL (tests/fake_lean.py)."""
    from data.problem import Problem
    from lean_env.interaction import open_session

    extra = {"url": URL, "commit": COMMIT, "file_path": FILE, "full_name": "Demo.nat_and"}
    problem = Problem("Demo.nat_and", NAT_AND, extra=extra)
    if request.param == "dojo":
        monkeypatch.setitem(sys.modules, "lean_dojo", _fake_lean_dojo())
        session = open_session("dojo", timeout_s=30)
        yield session, problem
        session.close()
    else:
        from lean_env.repl import Repl

        fake_repl = Path(__file__).with_name("fake_lean.py")
        if not fake_repl.is_file():
            pytest.skip("tests/fake_lean.py (the fake REPL) is absent")
        repl = Repl([sys.executable, str(fake_repl)], timeout_s=30)
        session = open_session("repl", repl=repl)
        yield session, problem
        session.close()
        repl.close()


def test_both_sessions_share_the_proof_session_interface(session_and_problem):
    from lean_env.interaction import ProofSession

    session, problem = session_and_problem
    assert isinstance(session, ProofSession)
    s0 = session.start(problem)
    assert len(s0.goals) == 1 and "⊢" in s0.goals[0]
    r1 = session.run_tactic(s0, "constructor")
    assert r1.error is None and len(r1.goals) == 2 and not r1.finished
    wrong = session.run_tactic(r1.state, "exact hq")
    assert wrong.state is None and wrong.error and not wrong.finished
    r2 = session.run_tactic(r1.state, "exact hp")
    assert r2.error is None and len(r2.goals) == 1
    r3 = session.run_tactic(r2.state, "exact hq")
    assert r3.finished and r3.error is None and r3.goals == []
    assert session.proof_text(problem, r3.state) == NAT_AND + "\n  constructor\n  exact hp\n  exact hq\n"


class _ScriptedTactics:
    """A stand-in for a model (tests only): answers a tree-search prompt with the tactics scripted for the
    target of its first goal, best first."""

    model_id = "scripted-tactics"

    def __init__(self, script: dict[str, list[str]]):
        self.script = script

    def generate(self, prompts, params, n=1):
        from prover.generate.base import Completion

        out = []
        for prompt in prompts:
            goals = prompt.rsplit("current goals:", 1)[1]
            target = goals.split("⊢", 1)[1].split("\n")[0].removesuffix("-/").strip()
            tactics = self.script.get(target, ["sorry"])[:n]
            out.append([Completion(t, 10, 3, token_logprobs=[-0.1 * (i + 1)]) for i, t in enumerate(tactics)])
        return out

    def close(self):
        pass


@pytest.mark.parametrize("lying", [False, True])
def test_tree_search_through_dojo_is_reverified(monkeypatch, lying):
    """`--interaction dojo` end to end: tree search steps through DojoSession (fake lean_dojo), and the proof it
    finds counts only when the Verifier (fake REPL) accepts the whole text; a Dojo that wrongly reports success
    is caught."""
    from data.config import LeanSettings
    from data.problem import Problem
    from prover.batch import ProveRecipe

    monkeypatch.setitem(sys.modules, "lean_dojo", _fake_lean_dojo())
    extra = {"url": URL, "commit": COMMIT, "file_path": FILE, "full_name": "Demo.nat_and"}
    problem = Problem("Demo.nat_and", NAT_AND, extra=extra)
    first = ["fake_close_all"] if lying else ["constructor"]
    backend = _ScriptedTactics({"p = 1 ∧ q = 2": first, "p = 1": ["exact hp"], "q = 2": ["exact hq"]})
    settings = LeanSettings(repl_path=Path(__file__).with_name("fake_lean.py"), workers=1, timeout_s=60)
    recipe = ProveRecipe(strategy="tree", interaction="dojo", lean_settings=settings, budget={"lean_calls": 40},
                         options={"width": 1, "max_expansions": 8})  # fmt: skip
    verifier = recipe.make_checker()
    try:
        result = recipe.attempt(backend, verifier, problem, 0)
        assert type(recipe.session()).__name__ == "DojoSession"  # the recipe's session, reused per process
    finally:
        recipe.close()
        verifier.close()
    if lying:
        assert not result.verdict.proved
        assert "fake_close_all" in result.text  # the claimed proof was checked, and rejected
    else:
        assert result.verdict.proved, result.verdict.to_dict()
        assert result.text == NAT_AND + "\n  constructor\n  exact hp\n  exact hq\n"


@pytest.mark.lean
def test_real_dojo_on_lean4_example():
    pytest.importorskip("lean_dojo")
    from data.problem import Problem
    from lean_env.dojo import DojoSession

    extra = {"url": "https://github.com/yangky11/lean4-example", "commit": "e2602e8d4b1d9cf9240f1a20160a47cfc35165b8",
             "file_path": "Lean4Example.lean", "full_name": "hello_world"}  # fmt: skip
    p = Problem("hello_world", "theorem hello_world (a b c : Nat) : a + b + c = a + c + b := by", extra=extra)
    with DojoSession(timeout_s=120) as session:
        r = session.run_tactic(session.start(p), "rw [add_assoc, add_comm b, ←add_assoc]")
        assert r.finished, r.error
