"""Prompt templates (rendering, user overrides) and extraction of Lean from completions."""

from __future__ import annotations

import pytest

from data.problem import Problem
from prover.errors import ProverError
from prover.prompts import load_prompts, statement_text
from prover.prompts.extract import extract_proof, extract_tactic, last_lean_block, lean_blocks, lean_errors

HEADER = "import Mathlib\nimport Aesop\n\nset_option maxHeartbeats 400000\n\nopen BigOperators Real Nat Topology Rat\n\n"
P = Problem("mathd_algebra_10", "theorem mathd_algebra_10 {n : ℕ} (h₀ : n = 2) : n + 1 = 3 := by\n", header=HEADER,
            informal_statement="Show that 2 + 1 = 3.")
STATEMENT = "theorem mathd_algebra_10 {n : ℕ} (h₀ : n = 2) : n + 1 = 3 := by"


def test_complete_prompt_is_deepseek_non_cot_and_leaves_the_block_open():
    prompts = load_prompts()
    text = prompts.render("complete", P)
    assert text == ("Complete the following Lean 4 code:\n\n```lean4\n" + HEADER + "/-- Show that 2 + 1 = 3. -/\n"
                    + STATEMENT + "\n")
    assert prompts["complete"].continues_code and prompts["complete"].stop == ("```",)
    assert "{n : ℕ}" in text  # Lean braces are not template placeholders


def test_cot_prompt_is_deepseek_v2_and_goes_through_the_chat_template():
    prompts = load_prompts()
    raw = prompts.render("cot", P)
    assert raw.startswith("Complete the following Lean 4 code:\n\n```lean4\n" + HEADER)
    assert STATEMENT + "\n  sorry\n```\n\nBefore producing the Lean 4 code to formally prove the given theorem, " \
        "provide a detailed proof plan outlining the main proof steps and strategies.\nThe plan should highlight " \
        "key ideas, intermediate lemmas, and proof structures that will guide the construction of the final " \
        "formal proof." in raw
    wrapped = prompts.render("cot", P, chat_format=lambda t: f"<user>{t}<assistant>")
    assert wrapped == f"<user>{raw}<assistant>"
    assert prompts.render("complete", P, chat_format=lambda t: "X") != "X"  # raw mode ignores the chat template


def test_sketch_repair_and_tactic_templates():
    prompts = load_prompts()
    assert "have name : statement := by sorry" in prompts.render("sketch", P)
    rep = prompts.render("repair", P, proof=STATEMENT + "\n  simp", errors="- line 2, col 2: simp failed")
    assert "simp failed" in rep and rep.endswith(STATEMENT + "\n")
    tac = prompts.render("tactic", P, tactics="  subst h₀\n", goals="⊢ 2 + 1 = 3")
    assert "  subst h₀\n  /- current goals:\n⊢ 2 + 1 = 3 -/\n  " in tac
    assert prompts["tactic"].stop == ("\n",)


def test_user_override_file(tmp_path):
    f = tmp_path / "my.toml"
    f.write_text('[complete]\ntemplate = "PROVE: {statement}"\nstop = ["END"]\n\n[extra]\ntemplate = "x {goals}"\n')
    prompts = load_prompts(f)
    assert prompts.render("complete", P) == "PROVE: " + STATEMENT
    assert prompts["complete"].stop == ("END",)
    assert prompts["complete"].continues_code  # keys left out keep the defaults
    assert prompts.render("extra", P, goals="⊢ p") == "x ⊢ p"
    assert "proof plan" in prompts.render("cot", P)


@pytest.mark.parametrize("content, message", [
    ("[complete]\ntemplate = 3\n", "template"),
    ("[complete]\ntemplte = 'x'\n", "unknown keys"),
    ("[complete\n", "prompt file"),
    ("[complete]\nstop = 'x'\n", "stop"),
])
def test_bad_override_files_are_one_clear_error(tmp_path, content, message):
    f = tmp_path / "bad.toml"
    f.write_text(content)
    with pytest.raises(ProverError, match=message):
        load_prompts(f)
    with pytest.raises(ProverError, match="does not exist"):
        load_prompts(tmp_path / "missing.toml")
    with pytest.raises(ProverError, match="no prompt template"):
        load_prompts()["nope"]


def test_statement_text_normalises_endings():
    assert statement_text("theorem t : 1 = 1 := by\n  sorry\n") == "theorem t : 1 = 1 := by"
    assert statement_text("theorem t : 1 = 1 :=") == "theorem t : 1 = 1 := by"


# ---- extraction ---------------------------------------------------------------------------------------------

def test_plain_completion_continues_the_open_block():
    out = extract_proof("  subst h₀\n  norm_num\n```\nSome chatter after.", STATEMENT, True, "mathd_algebra_10")
    assert out == STATEMENT + "\n  subst h₀\n  norm_num\n"


def test_plain_completion_truncated_without_closing_fence():
    out = extract_proof("  subst h₀\n  nor", STATEMENT, True, "mathd_algebra_10")
    assert out == STATEMENT + "\n  subst h₀\n  nor\n"


def test_plain_completion_that_restates_the_theorem_in_its_own_block():
    comp = "Here is a proof.\n```lean4\n" + HEADER + STATEMENT + "\n  simp [h₀]\n```\n"
    out = extract_proof(comp, STATEMENT, True, "mathd_algebra_10")
    assert out.startswith(HEADER) and out.rstrip().endswith("simp [h₀]")


def test_cot_completion_takes_the_last_block_and_truncated_last_block():
    comp = ("### Detailed Proof and Analysis\nWe substitute.\n\n### Lean 4 sketch\n```lean4\n" + STATEMENT +
            "\n  have h : n = 2 := by sorry\n  sorry\n```\n\n### Complete Lean 4 Proof\n```lean4\n" + STATEMENT +
            "\n  subst h₀\n  norm_num\n```")
    assert extract_proof(comp, STATEMENT, False, "mathd_algebra_10").rstrip().endswith("subst h₀\n  norm_num")
    truncated = comp.rsplit("```", 1)[0] + "-- still going"
    assert "-- still going" in extract_proof(truncated, STATEMENT, False, "mathd_algebra_10")


def test_bare_tactic_block_gets_the_statement_and_nothing_is_none():
    assert extract_proof("```lean4\nsubst h₀\nnorm_num\n```", STATEMENT, False) == STATEMENT + "\n  subst h₀\n  norm_num\n"
    assert extract_proof("I cannot prove this.", STATEMENT, False) is None
    assert extract_proof("", STATEMENT, True) is None
    assert extract_proof("```python\nprint(1)\n```", STATEMENT, False) is None


def test_lean_blocks_and_last_block():
    text = "```lean\na\n```\ntext\n```lean4\nb\n```\n```python\nc\n```"
    assert lean_blocks(text) == ["a", "b"]
    assert last_lean_block(text).strip() == "b"
    assert last_lean_block("no code") is None


def test_extract_tactic_and_error_listing():
    assert extract_tactic("  norm_num [h₀]  -- close it\nrest") == "norm_num [h₀]"
    assert extract_tactic("\n\n```") is None
    from lean_env.verdict import Message, Pos

    listing = lean_errors([Message("warning", "unused"), Message("error", "linarith failed", Pos(3, 2))])
    assert listing == "- line 3, col 2: linarith failed"
