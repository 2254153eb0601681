"""The tiny models and tokenizers of tests/helpers/tiny_models.py (built in-process: no download) behave."""

from __future__ import annotations

from helpers.tiny_models import bpe_tokenizer, tiny_llama, tiny_moe, word_tokenizer


def test_bpe_tokenizer_round_trips_lean_text():
    tok = bpe_tokenizer()
    text = "theorem x (n : ℕ) (h₀ : 0 < n) : n ≠ 0 := by\n  omega"
    assert tok.decode(tok(text)["input_ids"]) == text
    assert tok.eos_token_id is not None and tok.pad_token_id != tok.eos_token_id


def test_tiny_moe_loads_as_our_model(tmp_path):
    from prover.model import DeepSeekV3
    from prover.train.common import load_policy

    path = tiny_moe(tmp_path / 'moe', bpe_tokenizer())
    assert isinstance(load_policy(str(path)), DeepSeekV3)


def test_tiny_llama_loads_back(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = word_tokenizer(["norm_num", "rfl"])
    path = tiny_llama(tmp_path / "m", tok)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.vocab_size == len(AutoTokenizer.from_pretrained(path))
    assert AutoTokenizer.from_pretrained(path).decode([4, 5]) == "norm_num rfl"
