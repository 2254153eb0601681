"""The output head and the next-token cross-entropy fused on QuACK's chunked linear cross-entropy (`pip install
'subgoal[quack]'`), for `DeepSeekV3.set_loss_impl("quack")`.

Why: the plain path writes the logits [tokens, vocab] in bf16, reads them back in fp32 for the softmax and writes
their gradient, memory-bound passes around the head's GEMMs: at `small` (16k tokens a step, vocab 32,000) 1 GB of
logits, at DeepSeek-V3's vocabulary (129,280) 4 GB. QuACK runs the softmax and its gradient in the GEMMs'
epilogues, chunk by chunk, and never holds the logits. Training only (labels, no cache): `out.logits` is None
there. CUDA sm90+, bf16; quack is imported on first use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prover.model.hopper import QUACK, import_kernels, require_hopper

IGNORE = -100
_lce = None  # quack.linear_cross_entropy once loaded


def kernels():
    """quack.linear_cross_entropy (`chunked_linear_cross_entropy`), or a clear error where it is missing."""
    global _lce
    if _lce is None:
        _lce = import_kernels("quack.linear_cross_entropy", "loss_impl 'quack'", QUACK)
    return _lce


def check_fused_loss(device: torch.device) -> None:
    """One clear error where loss_impl "quack" cannot run: no CUDA sm90+ device, or quack-kernels missing."""
    require_hopper(device, "loss_impl 'quack'", "Use the default loss (drop --loss-impl quack)")
    kernels()


def next_token_loss(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`causal_lm_loss(hidden @ weight.T, labels)` without the logits: hidden [B, S, d] (normed), weight [V, d],
    labels [B, S] (position i predicts labels[:, i + 1]; -100 ignored) -> the mean over predicted tokens."""
    # Shift the labels, not the hidden states: each row's last position gets -100 (no copy of `hidden`).
    target = F.pad(labels[:, 1:], (0, 1), value=IGNORE).reshape(-1)
    d = hidden.shape[-1]
    return kernels().chunked_linear_cross_entropy(hidden.reshape(-1, d), weight, target, ignore_index=IGNORE,
                                                  chunk_size=chunk_rows(target.numel(), d))


def chunk_rows(n: int, d: int) -> int:
    """Rows per chunk for n rows of width d: QuACK's default 4096, unless a chunk (the last one padded to a
    multiple of 128, as QuACK pads it) would have exactly d rows; then the largest multiple of 128 below d, so
    that every chunk is narrower. QuACK 0.6.5's dx GEMM takes a per-row scale over its [rows, d] output and
    refuses when rows == d ("m == n makes row/col inference ambiguous"), which `medium` (d = 4096) hit."""
    c = 4096
    chunks = [c] * (-(-n // c) - 1) + [-(-(n - (-(-n // c) - 1) * c) // 128) * 128]
    if d in chunks and d > 128:
        c = (d - 1) // 128 * 128
    return c
