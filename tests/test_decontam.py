"""Decontamination against edited copies of the shared benchmarks (edits made here, from the registry's sets):
recall per kind of edit and false-positive rates are printed (`pytest -s`) and held to thresholds.

Each edit keeps the problem and changes only how it is written: the theorem and binder names, the order of
the hypotheses, ASCII notation, `∑ x in` vs `∑ x ∈`, whitespace and line breaks, comments, and Lean's own
pretty-printed goal (the `goal` field of miniF2F/ProofNet). Negatives are other benchmarks' problems (ProofNet's
textbook statements checked against an index without ProofNet) and short Mathlib-style lemmas written here.
"""

from __future__ import annotations

import random
import re

import pytest

from data import load_problems
from data.config import load_config
from data.decontam import BenchmarkStatement, Decontaminator, canonical_statement, normalize_statement

SETS = ("minif2f-valid", "minif2f-test", "putnambench", "proofnet-valid", "proofnet-test")
_BINDER_NAMES = re.compile(r"[({⦃]\s*((?:[^\W\d][\w'₀-₉]*\s+)*[^\W\d][\w'₀-₉]*)\s*:")
_NAME = re.compile(r"\b(theorem|lemma|def)\s+([^\s(\[{:⦃]+)")
ASCII = [("≤", "<="), ("≥", ">="), ("→", "->"), ("↔", "<->"), ("≠", "!="), ("ℝ", "Real"), ("ℕ", "Nat"),
         ("ℤ", "Int"), ("ℚ", "Rat"), ("ℂ", "Complex"), ("↦", "=>")]

# Short Mathlib-style lemmas, none of them a benchmark problem: the false positives that shared binder
# boilerplate used to cause.
MATHLIB_STYLE = [
    "theorem my_add_comm (a b : ℕ) : a + b = b + a := by",
    "theorem my_mul_comm (a b : ℤ) : a * b = b * a := by",
    "theorem my_add_assoc (a b c : ℝ) : a + b + c = a + (b + c) := by",
    "theorem my_sq_nonneg (x : ℝ) : 0 ≤ x ^ 2 := by",
    "theorem my_abs_nonneg (x : ℝ) : 0 ≤ |x| := by",
    "theorem my_le_refl (n : ℕ) : n ≤ n := by",
    "theorem my_lt_succ (n : ℕ) : n < n + 1 := by",
    "theorem my_two_mul (x : ℝ) : 2 * x = x + x := by",
    "theorem my_sub_self (x : ℤ) : x - x = 0 := by",
    "theorem my_mul_one (x : ℚ) : x * 1 = x := by",
    "theorem my_pow_two (x : ℝ) : x ^ 2 = x * x := by",
    "theorem my_even_add (m n : ℕ) (hm : Even m) (hn : Even n) : Even (m + n) := by",
    "theorem my_dvd_trans (a b c : ℕ) (h₁ : a ∣ b) (h₂ : b ∣ c) : a ∣ c := by",
    "theorem my_le_trans (a b c : ℝ) (h₀ : a ≤ b) (h₁ : b ≤ c) : a ≤ c := by",
    "theorem my_pos_add (x y : ℝ) (hx : 0 < x) (hy : 0 < y) : 0 < x + y := by",
    "theorem my_mul_pos (x y : ℝ) (hx : 0 < x) (hy : 0 < y) : 0 < x * y := by",
    "theorem my_sq_eq (x : ℝ) (h₀ : x ^ 2 = 0) : x = 0 := by",
    "theorem my_nat_sub (n : ℕ) (h₀ : 0 < n) : n - 1 + 1 = n := by",
    "theorem my_mod_two (n : ℕ) : n % 2 = 0 ∨ n % 2 = 1 := by",
    "theorem my_gcd_comm (m n : ℕ) : Nat.gcd m n = Nat.gcd n m := by",
    "theorem my_div_self (x : ℝ) (h₀ : x ≠ 0) : x / x = 1 := by",
    "theorem my_exp_pos (x : ℝ) : 0 < Real.exp x := by",
    "theorem my_sum_range (n : ℕ) : ∑ i ∈ Finset.range (n + 1), i = n * (n + 1) / 2 := by",
    "theorem my_card_le (s t : Finset ℕ) (h : s ⊆ t) : s.card ≤ t.card := by",
    "theorem my_inter_comm (s t : Set ℝ) : s ∩ t = t ∩ s := by",
    "theorem my_prime_two : Nat.Prime 2 := by",
    "theorem my_sqrt_nonneg (x : ℝ) : 0 ≤ Real.sqrt x := by",
    "theorem my_abs_mul (x y : ℝ) : |x * y| = |x| * |y| := by",
    "theorem my_max_comm (a b : ℝ) : max a b = max b a := by",
    "theorem my_neg_neg (x : ℤ) : -(-x) = x := by",
    "theorem my_odd_sq (n : ℤ) (h : Odd n) : Odd (n ^ 2) := by",
    "theorem my_cont_add (f g : ℝ → ℝ) (hf : Continuous f) (hg : Continuous g) : Continuous (f + g) := by",
    "theorem my_inj_comp {α β γ : Type*} (f : α → β) (g : β → γ) (hf : Function.Injective f) "
    "(hg : Function.Injective g) : Function.Injective (g ∘ f) := by",
    "theorem my_subgroup_one {G : Type*} [Group G] (H : Subgroup G) : (1 : G) ∈ H := by",
    "theorem my_norm_nonneg (v : EuclideanSpace ℝ (Fin 2)) : 0 ≤ ‖v‖ := by",
    "theorem my_cos_sq (x : ℝ) : Real.cos x ^ 2 + Real.sin x ^ 2 = 1 := by",
    "theorem my_log_mul (x y : ℝ) (hx : 0 < x) (hy : 0 < y) : Real.log (x * y) = Real.log x + Real.log y := by",
    "theorem my_choose_symm (n k : ℕ) (h : k ≤ n) : Nat.choose n k = Nat.choose n (n - k) := by",
    "theorem my_fact_pos (n : ℕ) : 0 < Nat.factorial n := by",
    "theorem my_zmod (a : ZMod 5) : a ^ 5 = a := by",
]


@pytest.fixture(scope="module")
def problems(shared_dir):
    config = load_config(environ={"SUBGOAL_DATA_DIR": str(shared_dir / "benchmarks")})
    return {name: load_problems(name, config) for name in SETS}


def rename(statement: str, k: int) -> str:
    """Another theorem name and other names for the theorem's binders (whole-word renames)."""
    out = _NAME.sub(lambda m: f"{m.group(1)} renamed_{k}", statement)
    _, spans = binder_spans(statement)
    names = {n for a, b in spans for group in _BINDER_NAMES.findall(statement[a:b][:1] + statement[a + 1:b].split(
        ":")[0] + ":") for n in group.split()}
    for i, n in enumerate(sorted(names, key=len, reverse=True)):
        out = re.sub(rf"(?<![\w.']){re.escape(n)}(?![\w'₀-₉])", f"w{i}_{k}", out)
    return out


def binder_spans(statement: str) -> tuple[int, list[tuple[int, int]]]:
    """(offset after the theorem name, spans of its top-level binder groups)."""
    m = list(_NAME.finditer(statement))[-1]
    i, spans = m.end(), []
    while True:
        while i < len(statement) and statement[i].isspace():
            i += 1
        if i >= len(statement) or statement[i] not in "([{⦃":
            return m.end(), spans
        depth, j = 0, i
        while j < len(statement):
            depth += statement[j] in "([{⦃"
            depth -= statement[j] in ")]}⦄"
            j += 1
            if depth == 0:
                break
        spans.append((i, j))
        i = j


def reorder(statement: str, rng: random.Random) -> str | None:
    """The hypotheses (binders after the variables they mention) in another order; None if there is one."""
    _, spans = binder_spans(statement)
    groups = [statement[a:b] for a, b in spans]
    hyps = [k for k, g in enumerate(groups) if re.match(r"[({]\s*h", g)]
    if len(hyps) < 2:
        return None
    shuffled = hyps[:]
    while shuffled == hyps:
        rng.shuffle(shuffled)
    new = groups[:]
    for src, dst in zip(hyps, shuffled, strict=True):
        new[dst] = groups[src]
    a, b = spans[0][0], spans[-1][1]
    return statement[:a] + " ".join(new) + statement[b:]


def ascii_notation(statement: str) -> str | None:
    out = statement
    for uni, asc in ASCII:
        out = re.sub(rf"(?<![\w.]){re.escape(uni)}(?![\w])", asc, out) if uni.isalpha() else out.replace(uni, asc)
    return out if out != statement else None


def big_operator_syntax(statement: str) -> str | None:
    swapped = re.sub(r"([∑∏][^,]*?)\s(in|∈)\s", lambda m: f"{m.group(1)} {'∈' if m.group(2) == 'in' else 'in'} ",
                     statement)
    return swapped if swapped != statement else None


def collapsed(statement: str) -> str:
    """Whitespace and line breaks collapsed: PutnamBench's `abbrev … theorem …` on one line (its `--` comments
    dropped first: on one line they would comment out the rest)."""
    return " ".join(re.sub(r"--[^\n]*", "", statement).split())


def commented(statement: str, k: int) -> str:
    return f"/-- problem {k}, restated -/\n-- from a textbook\n" + statement.replace(" :", " :  -- note\n ", 1)


def edited_sets(problems) -> dict[str, list[tuple[str, str]]]:
    """edit kind -> [(benchmark problem name, edited statement)]."""
    rng = random.Random(0)
    edits: dict[str, list[tuple[str, str]]] = {k: [] for k in
                                               ("renamed", "reordered", "ascii", "big-operator", "collapsed",
                                                "commented", "goal", "all-at-once")}
    for probs in problems.values():
        for k, p in enumerate(probs):
            s = p.formal_statement
            edits["renamed"].append((p.name, rename(s, k)))
            edits["collapsed"].append((p.name, collapsed(s)))
            edits["commented"].append((p.name, commented(s, k)))
            if (r := reorder(s, rng)) is not None:
                edits["reordered"].append((p.name, r))
                edits["all-at-once"].append((p.name, collapsed(ascii_notation(rename(r, k)) or rename(r, k))))
            if (a := ascii_notation(s)) is not None:
                edits["ascii"].append((p.name, a))
            if (b := big_operator_syntax(s)) is not None:
                edits["big-operator"].append((p.name, b))
            if goal := p.extra.get("goal"):
                edits["goal"].append((p.name, goal))
    return edits


@pytest.fixture(scope="module")
def index(problems) -> Decontaminator:
    return Decontaminator([BenchmarkStatement(s, p.name, p.formal_statement) for s, ps in problems.items() for p in ps])


# Lean's pretty-printed goals also differ in elaboration (`P.eval x`, `{ re := 0, im := 1 }` for `⟨0, 1⟩`,
# `20!.gcd`), which no lexical canonical form undoes: measured 0.87 there, 1.0 on every textual edit.
RECALL_FLOOR = {"renamed": 0.99, "reordered": 0.99, "ascii": 0.99, "big-operator": 0.99, "collapsed": 0.99,
                "commented": 0.99, "goal": 0.85, "all-at-once": 0.99}


def test_recall_on_edited_benchmark_statements(problems, index):
    lines = ["", f"{'edit':<14}{'statements':>11}{'exact':>8}{'recall':>9}"]
    for kind, items in edited_sets(problems).items():
        assert len(items) >= 100, (kind, len(items))  # enough cases for a rate to mean something
        hits = [index.check(text) for _, text in items]
        recall = sum(h is not None for h in hits) / len(items)
        exact = sum(h is not None and h.reason == "exact" for h in hits) / len(items)
        lines.append(f"{kind:<14}{len(items):>11}{exact:>8.3f}{recall:>9.3f}")
        assert recall >= RECALL_FLOOR[kind], (kind, recall)
    print("\n".join(lines))


def test_false_positives_on_other_problems(problems):
    others = Decontaminator([BenchmarkStatement(s, p.name, p.formal_statement)
                             for s, ps in problems.items() if not s.startswith("proofnet") for p in ps])
    # ProofNet restates a few Putnam problems (exercise_1998_a3 is putnam_1998_a3), formalized anew: not negatives
    putnam = {p.name for p in problems["putnambench"]}
    proofnet = [p for s in ("proofnet-valid", "proofnet-test") for p in problems[s]]
    shared = [p for p in proofnet if re.sub(r"^exercise_(\d{4}_[ab]\d)$", r"putnam_\1", p.name) in putnam]
    assert len(shared) >= 10
    textbook = [p.formal_statement for p in proofnet if p not in shared]
    fp_textbook = sum(others.check(t) is not None for t in textbook) / len(textbook)
    full = Decontaminator([BenchmarkStatement(s, p.name, p.formal_statement) for s, ps in problems.items() for p in ps])
    fp_short = sum(full.check(t) is not None for t in MATHLIB_STYLE) / len(MATHLIB_STYLE)
    print(f"\nfalse positives: ProofNet vs miniF2F+PutnamBench {fp_textbook:.3f} ({len(textbook)}); "
          f"short Mathlib-style lemmas vs all {fp_short:.3f} ({len(MATHLIB_STYLE)})")
    assert fp_textbook <= 0.01
    assert fp_short <= 0.05


def test_canonical_form_ignores_names_order_notation_and_layout():
    a = "theorem t (x y : ℝ) (h₀ : x ≤ y) (h₁ : 0 < x) : ∑ i in Finset.range 3, x * i ≤ y ^ 2 := by"
    b = ("/-- doc -/ lemma other {b a : Real} (hb : 0 < b) (ha : b <= a) :\n"
         "    ∑ j ∈ Finset.range 3, b * j <= a ^ 2 := by\n  simp")
    assert normalize_statement(a) == normalize_statement(b)
    assert normalize_statement(a) != normalize_statement(a.replace("3,", "4,"))
    goal = "x y : ℝ\nh₀ : x ≤ y\nh₁ : 0 < x\n⊢ ∑ i ∈ Finset.range 3, x * i ≤ y ^ 2"
    assert normalize_statement(goal) == normalize_statement(a)
    assert canonical_statement("abbrev s : ℕ := sorry theorem p : s = 1 := by")[-3:] == ["s", "=", "1"]


def test_empty_statement_is_checked_through_prompt_and_completion(problems, index):
    p = problems["minif2f-test"][0]
    leak = {"prompt": f"Complete the following Lean 4 code:\n```lean4\n{p.header}{p.formal_statement}",
            "completion": "  simp\n```", "statement": "", "problem": "x", "kind": "whole_proof"}
    in_completion = {"prompt": "Prove it.", "completion": f"```lean4\n{rename(p.formal_statement, 9)}  simp\n```",
                     "statement": "", "problem": "y", "kind": "whole_proof"}
    clean = {"prompt": "Prove it.", "completion": f"```lean4\n{MATHLIB_STYLE[0]}\n  omega\n```", "statement": "",
             "problem": "z", "kind": "whole_proof"}
    kept, removed = index.filter([leak, in_completion, clean])
    assert [r["problem"] for r in removed] == ["x", "y"] and removed[0]["name"] == p.name
    assert kept == [clean]


def test_every_registered_benchmark_is_covered_and_an_unloadable_one_is_a_loud_warning(shared_dir, caplog, tmp_path):
    config = load_config(overrides={"data_dir": shared_dir / "benchmarks",  # ProverBench: a copy that is not there
                                    "proverbench_path": tmp_path / "missing.jsonl"}, environ={})
    with caplog.at_level("WARNING"):
        decon = Decontaminator.from_registry(config)
    assert set(decon.coverage.sets) == set(SETS)
    assert "proverbench" in decon.coverage.unavailable and "leandojo-random" not in decon.coverage.unavailable
    assert any("proverbench could not be loaded" in r.message and "NOT checked" in r.message for r in caplog.records)


def test_report_is_written_when_everything_is_removed(problems, index, tmp_path):
    from data.sft_dataset import NoExamples, build_sft_dataset

    p = problems["putnambench"][3]
    records = [{"prompt": "Prove:", "completion": "  simp", "kind": "whole_proof", "problem": "leak", "source": "t",
                "statement": collapsed(p.formal_statement)}]
    with pytest.raises(NoExamples, match="report.json"):
        build_sft_dataset(records, tmp_path / "ds", index)
    import json

    report = json.loads((tmp_path / "ds" / "report.json").read_text())
    assert report["examples_out"] == 0 and [c["name"] for c in report["contaminated"]] == [p.name]


def test_words_join_the_lexers_symbols_into_notation():
    from data.decontam import words

    src = 'theorem t (x : ℝ) /- c -/ (h₀ : x <= 2) -- note\n : Real.sqrt x ≤ "a b".length ∧ h.1 → x⁻¹ ≠ 0 := by'
    assert words(src) == ["theorem", "t", "(", "x", ":", "ℝ", ")", "(", "h₀", ":", "x", "<=", "2", ")", ":",
                          "Real.sqrt", "x", "≤", ".", "length", "∧", "h", ".", "1", "→", "x", "⁻¹", "≠", "0", ":=",
                          "by"]
    assert words("a < = b")[1:3] == ["<", "="]  # apart, they are two symbols
