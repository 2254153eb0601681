"""A tiny LeanDojo Benchmark 4 for the LeanDojo tests, in the exact layout (`data/leandojo/format.py`): a
"mathlib4" checkout with one source file, `random/` and `novel_premises/` splits and `corpus.jsonl`."""

from __future__ import annotations

import json
from pathlib import Path

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


def write_bench(tmp_path: Path) -> Path:
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


def theorem_json(name: str) -> dict:
    return next(t for t in THEOREMS if t["full_name"] == name)
