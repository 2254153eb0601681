"""Helpers for other areas' tests: a tiny random model, a tiny tokenizer, a checkpoint directory that
`transformers.AutoModelForCausalLM` / `AutoTokenizer` and `DeepSeekV3.from_pretrained` load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from prover.model.config import ModelConfig
from prover.model.model import DeepSeekV3
from prover.model.tokenizer import build_test_tokenizer


@torch.no_grad()
def randomize_(model: DeepSeekV3, seed: int = 0, std: float = 0.1) -> DeepSeekV3:
    """Non-trivial random weights: matrices N(0, std), norms 1 + N(0, 0.1), nonzero selection biases (so tests
    see routing that the bias changes, and norms that are not identity)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
        else:
            p.copy_(std * torch.randn(p.shape, generator=g))
    for layer in model.moe_layers():
        b = layer.gate.e_score_correction_bias
        b.copy_(0.05 * torch.randn(b.shape, generator=g))
    return model


def tiny_model(seed: int = 0, **overrides: Any) -> DeepSeekV3:
    torch.manual_seed(seed)
    return randomize_(DeepSeekV3(ModelConfig.preset("tiny", **overrides)), seed)


def tiny_checkpoint(directory: str | Path, vocab_size: int = 512, data_dir: str | Path | None = None,
                    seed: int = 0, tokenizer: Any = None, **overrides: Any) -> Path:
    """Write a tiny random DeepSeek-V3 checkpoint with a tokenizer trained on benchmark statements."""
    tok = tokenizer if tokenizer is not None else build_test_tokenizer(vocab_size, data_dir)
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
    model = tiny_model(seed, vocab_size=len(tok), **ids, **overrides)
    return model.save_pretrained(directory, tokenizer=tok)
