"""Tiny models and tokenizers for training tests: random weights, built in seconds on a CPU."""

from __future__ import annotations

from pathlib import Path

import torch

LEAN_CORPUS = [
    "Complete the following Lean 4 code:\n\n```lean4\ntheorem t (n : ℕ) : n + 0 = n := by\n",
    "  simp\n```",
    "  norm_num\n```",
    "  rfl\n```",
    "  linarith\n```",
    "theorem foo (a b : ℕ) (h₀ : a = 2) (h₁ : b = 3) : a + b = 5 := by\n  subst h₀ h₁\n  norm_num",
]


def bpe_tokenizer(corpus: list[str] = LEAN_CORPUS, vocab_size: int = 320):
    """The project's byte-level BPE (prover.model.tokenizer), trained on `corpus`."""
    from prover.model.tokenizer import train_tokenizer

    return train_tokenizer(corpus, vocab_size)


def word_tokenizer(words: list[str]):
    """A whitespace word-level tokenizer over a fixed vocabulary (small vocab for the GRPO toy task)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "<unk>", *dict.fromkeys(words)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def tiny_llama(out: Path, tokenizer, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Save a randomly initialised tiny `LlamaForCausalLM` + tokenizer to `out`; returns `out`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def tiny_moe(out: Path, tokenizer, seed: int = 0, **overrides) -> Path:
    """Save a randomly initialised DeepSeek-V3 `tiny` preset (MoE + MTP) sized to `tokenizer`; returns `out`."""
    from prover.model import DeepSeekV3, ModelConfig

    torch.manual_seed(seed)
    cfg = ModelConfig.preset("tiny", vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id, **overrides)
    DeepSeekV3(cfg).save_pretrained(out, tokenizer=tokenizer)
    return out
