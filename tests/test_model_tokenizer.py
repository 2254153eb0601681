"""The small Lean BPE tokenizer: CLI, round trip on Lean text, special tokens, errors."""

from __future__ import annotations

import pytest

from prover.model.tokenizer import BOS, EOS, PAD, build_test_tokenizer, main


def test_cli_trains_on_benchmark_statements(tmp_path, shared_dir, capsys):
    out = tmp_path / "tok"
    assert main(["--out", str(out), "--vocab-size", "600", str(shared_dir / "benchmarks" / "minif2f.jsonl")]) == 0
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    assert len(tok) == 600
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (BOS, EOS, PAD)
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 1, 2)
    text = "theorem t (n : ℕ) (h : 0 < n) : ∑ k ∈ Finset.range n, k ≤ n ^ 2 := by\n  nlinarith [sq_nonneg n]"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    assert len(ids) < len(text.encode()) / 2  # it learned merges from Lean text


def test_default_data_dir(shared_dir):
    tok = build_test_tokenizer(vocab_size=300, data_dir=shared_dir / "benchmarks", limit=50)
    assert len(tok) == 300 and tok.decode(tok("x ∈ Set.Icc 0 1")["input_ids"]) == "x ∈ Set.Icc 0 1"


def test_errors_exit_2(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "t"), str(tmp_path / "missing.lean")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "t"), "--data-dir", str(tmp_path)]) == 2


def test_module_runs_as_script(tmp_path):
    import subprocess
    import sys

    lean = tmp_path / "a.lean"
    lean.write_text("theorem a : 1 + 1 = 2 := by norm_num\n" * 20)
    r = subprocess.run([sys.executable, "-m", "prover.model.tokenizer", "--out", str(tmp_path / "t"),
                        "--vocab-size", "300", str(lean)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "t" / "tokenizer.json").is_file()


@pytest.mark.parametrize("vocab", [280])
def test_tiny_vocab(vocab, shared_dir):
    tok = build_test_tokenizer(vocab_size=vocab, data_dir=shared_dir / "benchmarks", limit=20)
    assert len(tok) <= vocab
