"""FAKE of QuACK's three GEMM entry points (`quack.gemm_interface.gemm`, `gemm_gated`, `gemm_dgated`) and of its
linear cross-entropy (`quack.linear_cross_entropy.chunked_linear_cross_entropy`), in plain torch: the real ones are
CuTe-DSL kernels that need a CUDA sm90+ GPU. Written from quack-kernels 0.6.5's own reference functions
(`gemm_ref`, `gemm_act_ref`, `linear_cross_entropy_func_ref`) and its epilogue definitions (`epilogue/library.py`,
`dgated_mod`), for the arguments `prover.model.moe_quack` and `prover.model.loss_quack` pass. It lets the CPU tests
check how those modules wire the kernels together; `bench/model_gpu.py --rows moe,loss` checks the real kernels.
`calls` counts the loss's, so a test can tell that the fused path ran."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _concat_dim(t: torch.Tensor) -> int:
    """The dimension `concat_layout` acts on: the non-contiguous one of the last two (as QuACK picks it)."""
    return t.ndim - 2 if t.stride(-1) == 1 else t.ndim - 1


def _interleave(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[gate; up] halves along `dim` -> pairs (g0, u0, g1, u1, ...)."""
    return t.unflatten(dim, (2, t.shape[dim] // 2)).transpose(dim, dim + 1).flatten(dim, dim + 1)


def _deinterleave(t: torch.Tensor, dim: int) -> torch.Tensor:
    return t.unflatten(dim, (t.shape[dim] // 2, 2)).transpose(dim, dim + 1).flatten(dim, dim + 1)


def _product(A, B, cu_seqlens_m=None, cu_seqlens_k=None, A_idx=None, concat_layout=()):
    if "B" in (concat_layout or ()):
        B = _interleave(B, _concat_dim(B))
    bounds = (cu_seqlens_m if cu_seqlens_m is not None else cu_seqlens_k).tolist()
    if cu_seqlens_m is not None:  # A's rows (gathered by A_idx) in groups; B [L, K, N]
        rows = A[A_idx.long()] if A_idx is not None else A
        return torch.cat([rows[s:e] @ B[i] for i, (s, e) in enumerate(zip(bounds, bounds[1:], strict=False))])
    cols = A[:, A_idx.long()] if A_idx is not None else A  # varlen_k: A's columns and B's rows in groups
    return torch.stack([cols[:, s:e] @ B[s:e] for s, e in zip(bounds, bounds[1:], strict=False)])


def gemm(A, B, out=None, cu_seqlens_m=None, cu_seqlens_k=None, A_idx=None, concat_layout=None, **_):
    result = _product(A, B, cu_seqlens_m, cu_seqlens_k, A_idx, concat_layout)
    if out is None:
        return result.to(A.dtype)
    if "out" in (concat_layout or ()):  # the kernel's interleaved columns land in out's [gate; up] halves
        result = _deinterleave(result, _concat_dim(out))
    return out.copy_(result)


def gemm_gated(A, B, activation="swiglu", cu_seqlens_m=None, A_idx=None, concat_layout=None, **_):
    assert activation == "swiglu"
    preact = _product(A, B, cu_seqlens_m, None, A_idx, concat_layout)
    return preact.to(A.dtype), (F.silu(preact[:, ::2]) * preact[:, 1::2]).to(A.dtype)


def gemm_dgated(A, B, PreAct, activation="swiglu", dx_out=None, colvec_scale=None, colvec_reduce=False,
                cu_seqlens_m=None, A_idx=None, **_):
    """acc = A[A_idx] @ B; D = dSwiGLU(PreAct, acc * scale) in PreAct's pairs; postact = SwiGLU(PreAct) * scale;
    reduce = sum over columns of SwiGLU(PreAct) * acc (unscaled)."""
    assert activation == "swiglu"
    acc = _product(A, B, cu_seqlens_m, None, A_idx).float()
    g, u = PreAct[:, ::2].float(), PreAct[:, 1::2].float()
    scale = colvec_scale.float().unsqueeze(-1) if colvec_scale is not None else 1.0
    dout = acc * scale
    sig = torch.sigmoid(g)
    act = g * sig * u
    dx = torch.stack((dout * u * sig * (1 + g * (1 - sig)), dout * g * sig), dim=-1).flatten(-2)
    dx_out = dx_out.copy_(dx) if dx_out is not None else dx.to(A.dtype)
    results = [dx_out, (act * scale).to(PreAct.dtype)]
    if colvec_reduce:
        results.append((act * acc).sum(-1))
    return tuple(results)


calls = {"linear_cross_entropy": 0}


def chunked_linear_cross_entropy(x, weight, target, chunk_size=4096, ignore_index=-100, reduction="mean", **_):
    """x [N, d], weight [V, d], target [N] -> the mean cross-entropy of x @ weight.T over targets != ignore_index."""
    assert x.ndim == 2 and target.shape == x.shape[:1]
    calls["linear_cross_entropy"] += 1
    return F.cross_entropy(F.linear(x, weight).float(), target, ignore_index=ignore_index, reduction=reduction)
