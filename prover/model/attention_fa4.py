"""Causal attention on FlashAttention-4's Hopper kernels (Dao-AILab's CuTe-DSL `flash-attn-4`, `pip install
'subgoal[fa4]'`), for `DeepSeekV3.set_attention("fa4")`.

Why: MLA's training heads have qk 128 (nope 64 + rope 64) and v 64. torch's SDPA runs these on cuDNN (flash
needs equal head dims), which took 12.9 ms of `small`'s 70.8 ms step on the H200, about a third of the bf16 peak;
FA4's sm90 kernels take unequal qk/v head dims directly. They read [B, S, H, D], the layout MLA builds its heads
in, so no transposes either.

FA4's entry point is a torch.autograd.Function whose body torch.compile cannot trace, so the forward and the
backward are wrapped here as two torch.library custom ops with fake (shape-only) implementations: a compiled block
keeps one graph around them. flash-attn-4 is imported on first use; CUDA sm90+ only.

Measured on the H200 (docs/BENCHMARKS.md, 2026-12-04): its kernels take 1.8-2.0 ms a step off `small`'s attention,
but its Python interface adds host work to every call, so it pays only where the host keeps up (CUDA graphs:
+1%); hence opt-in.
"""

from __future__ import annotations

import torch

from prover.model.hopper import FA4, import_kernels, require_hopper

_fa4 = None  # flash_attn.cute.interface once loaded


def kernels():
    """flash_attn.cute.interface (`_flash_attn_fwd`, `_flash_attn_bwd`), or a clear error where it is missing."""
    global _fa4
    if _fa4 is None:
        _fa4 = import_kernels("flash_attn.cute.interface", "attention 'fa4'", FA4)
    return _fa4


def check_fa4(device: torch.device) -> None:
    """One clear error where attention "fa4" cannot run: no CUDA sm90+ device, or flash-attn-4 missing."""
    require_hopper(device, "attention 'fa4'", "Use --attention sdpa")
    kernels()


@torch.library.custom_op("subgoal::fa4_causal_fwd", mutates_args=())
def _fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    out, lse, *_ = kernels()._flash_attn_fwd(q, k, v, softmax_scale=scale, causal=True, return_lse=True)
    return out, lse


@_fwd.register_fake
def _(q, k, v, scale):
    B, S, H, _ = q.shape
    return q.new_empty(B, S, H, v.shape[-1]), q.new_empty(B, H, S, dtype=torch.float32)


@torch.library.custom_op("subgoal::fa4_causal_bwd", mutates_args=())
def _bwd(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
         lse: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dq, dk, dv = kernels()._flash_attn_bwd(q, k, v, out, dout.contiguous(), lse, softmax_scale=scale, causal=True)
    return dq, dk, dv


@_bwd.register_fake
def _(dout, q, k, v, out, lse, scale):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup(ctx, inputs, output):
    q, k, v, scale = inputs
    ctx.save_for_backward(q, k, v, *output)
    ctx.scale = scale


def _backward(ctx, dout, _dlse):
    q, k, v, out, lse = ctx.saved_tensors
    return (*_bwd(dout, q, k, v, out, lse, ctx.scale), None)


_fwd.register_autograd(_backward, setup_context=_setup)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """q, k [B, S, H, Dqk], v [B, S, H, Dv] -> [B, S, H, Dv]: softmax(q k^T * scale, causal) v."""
    return _fwd(q, k, v, scale)[0]
