"""FAKE of FlashAttention-4's two entry points (`flash_attn.cute.interface._flash_attn_fwd` / `_flash_attn_bwd`),
in plain torch: the real ones are CuTe-DSL kernels that need a CUDA sm90+ GPU. For the arguments
`prover.model.attention_fa4` passes ([B, S, H, D] tensors, causal, lse [B, H, S] in fp32), it computes what the
kernels compute, the backward from the saved output and log-sum-exp as FlashAttention's does, so the CPU tests
check how attention_fa4 wires them. `calls` counts them, so a test can tell that the path ran."""

from __future__ import annotations

import torch

calls = {"fwd": 0, "bwd": 0}


def _scores(q, k, scale):
    """[B, H, S, T] scaled scores, -inf above the diagonal (causal)."""
    s = torch.einsum("bshd,bthd->bhst", q.float(), k.float()) * scale
    S, T = s.shape[-2:]
    return s.masked_fill(torch.ones(S, T, dtype=torch.bool).triu(1 + T - S), float("-inf"))


def _flash_attn_fwd(q, k, v, softmax_scale=None, causal=False, return_lse=False, **_):
    assert causal and return_lse
    calls["fwd"] += 1
    s = _scores(q, k, softmax_scale)
    lse = s.logsumexp(-1)
    out = torch.einsum("bhst,bthd->bshd", (s - lse.unsqueeze(-1)).exp(), v.float())
    return out.to(q.dtype), lse, None, None, None


def _flash_attn_bwd(q, k, v, out, dout, lse, softmax_scale=None, causal=False, **_):
    assert causal
    calls["bwd"] += 1
    p = (_scores(q, k, softmax_scale) - lse.unsqueeze(-1)).exp()  # the probabilities, rebuilt from lse
    do = dout.float()
    dv = torch.einsum("bhst,bshd->bthd", p, do)
    dp = torch.einsum("bshd,bthd->bhst", do, v.float())
    delta = (do * out.float()).sum(-1).transpose(1, 2).unsqueeze(-1)  # [B, H, S, 1]
    ds = p * (dp - delta) * softmax_scale
    dq = torch.einsum("bhst,bthd->bshd", ds, k.float())
    dk = torch.einsum("bhst,bshd->bthd", ds, q.float())
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)
