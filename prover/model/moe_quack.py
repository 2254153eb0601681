"""Routed experts on QuACK's grouped GEMMs (Dao-AILab's CuTe-DSL kernels, `pip install 'subgoal[quack]'`), arranged
as SonicMoE arranges them: the gather of each expert's token rows runs in the first GEMM's prologue (`A_idx`),
SwiGLU in its epilogue, and in the backward one GEMM's epilogue produces SwiGLU's gradient with the routing weight
folded in, the weighted activation the down projection's weight gradient needs, and the routing weights' own
gradient (`gemm_dgated`). The weight gradients gather their rows the same way (`cu_seqlens_k` + `A_idx`).

Against `moe.experts_sorted` (torch's `_grouped_mm`, which takes contiguous rows) this drops, per layer, the
gathered copy of the tokens [T*K, H] (written, read and saved for backward), the SwiGLU passes forward and backward
and the gather of the incoming gradient: memory-bound kernels that are a third of the MoE's GPU time at `small`.
`concat_layout` lets the kernels read and write our [gate; up] weight layout as the interleaved pairs their
epilogues use, so checkpoints keep their layout. CUDA sm90+ only; quack is imported on first use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prover.model.hopper import QUACK, import_kernels, require_hopper
from prover.model.moe import sort_copies, sum_copies

_quack = None  # quack.gemm_interface once loaded: a plain global, which torch.compile reads without a warning


def kernels():
    """quack.gemm_interface (gemm, gemm_gated, gemm_dgated), or a clear error where it is not installed."""
    global _quack
    if _quack is None:
        _quack = import_kernels("quack.gemm_interface", "moe_impl 'quack'", QUACK)
    return _quack


def check_quack(device: torch.device) -> None:
    """One clear error where moe_impl "quack" cannot run: no CUDA sm90+ device, or quack-kernels missing."""
    require_hopper(device, "moe_impl 'quack'", "Use the default experts (drop --moe-impl quack)")
    kernels()


def experts_quack(x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor, gate_up: torch.Tensor,
                  down: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Same contract as `moe.experts_sorted`: x [T, H], indices / weights [T, K], gate_up [E, 2I, H],
    down [E, H, I], counts [E] -> [T, H]."""
    K = indices.shape[1]
    order, inverse = sort_copies(indices)
    token_of_row = (order // K).to(torch.int32)
    cu_seqlens = F.pad(counts.cumsum(0), (1, 0)).to(torch.int32)  # [E + 1], from 0: each expert's rows
    weight_of_row = weights.reshape(-1)[order].float()
    y1, z = _UpProjection.apply(x.contiguous(), gate_up, cu_seqlens, token_of_row, inverse, K)
    return _DownProjection.apply(y1, z, down, weight_of_row, cu_seqlens, token_of_row, inverse, K)


class _UpProjection(torch.autograd.Function):
    """x [T, H] -> (y1 = SwiGLU(z) [T*K, I], z = x[token_of_row] @ gate_up[e].T [T*K, 2I], gate/up interleaved)."""

    @staticmethod
    def forward(ctx, x, gate_up, cu_seqlens, token_of_row, inverse, k):
        z, y1 = kernels().gemm_gated(x, gate_up.transpose(1, 2), activation="swiglu", cu_seqlens_m=cu_seqlens,
                                     A_idx=token_of_row, concat_layout=("B",))
        ctx.save_for_backward(x, gate_up, cu_seqlens, token_of_row, inverse)
        ctx.k = k
        ctx.mark_non_differentiable(y1)  # its gradient reaches z through _DownProjection's fused backward
        ctx.set_materialize_grads(False)
        return y1, z

    @staticmethod
    def backward(ctx, _, dz):
        x, gate_up, cu_seqlens, token_of_row, inverse = ctx.saved_tensors
        q = kernels()
        # Not zeroed first: QuACK's cu_seqlens_k GEMM writes every expert's tile, zeros where it has no rows
        # (gemm_sm90.py fills the accumulator with 0 when an expert has no K tiles).
        d_gate_up = torch.empty_like(gate_up)
        q.gemm(x.T, dz, out=d_gate_up.transpose(1, 2), cu_seqlens_k=cu_seqlens, A_idx=token_of_row,
               concat_layout=("out",))
        dx_rows = q.gemm(dz, gate_up, cu_seqlens_m=cu_seqlens, concat_layout=("B",))
        return sum_copies(dx_rows, inverse, ctx.k), d_gate_up, None, None, None, None


class _DownProjection(torch.autograd.Function):
    """(y1, z) -> out [T, H] = sum over each token's copies of weight * (y1 @ down[e].T). z is taken so that the
    backward can return SwiGLU's gradient straight to it."""

    @staticmethod
    def forward(ctx, y1, z, down, weight_of_row, cu_seqlens, token_of_row, inverse, k):
        y2 = kernels().gemm(y1, down.transpose(1, 2), cu_seqlens_m=cu_seqlens)
        out = sum_copies(y2.float() * weight_of_row.unsqueeze(-1), inverse, k).to(y1.dtype)
        ctx.save_for_backward(z, down, weight_of_row, cu_seqlens, token_of_row)
        return out

    @staticmethod
    def backward(ctx, dout):
        z, down, weight_of_row, cu_seqlens, token_of_row = ctx.saved_tensors
        q = kernels()
        dout = dout.contiguous()
        dz = torch.empty_like(z)
        # acc = dout[token] @ down[e]; dz = dSwiGLU(z, weight * acc); y1w = weight * SwiGLU(z); dw = <SwiGLU(z), acc>
        _, y1w, d_weight = q.gemm_dgated(dout, down, PreAct=z, activation="swiglu", dx_out=dz,
                                         colvec_scale=weight_of_row, colvec_reduce=True, cu_seqlens_m=cu_seqlens,
                                         A_idx=token_of_row)
        d_down = torch.empty_like(down)
        q.gemm(dout.T, y1w, out=d_down, cu_seqlens_k=cu_seqlens, A_idx=token_of_row)
        return None, dz, d_down, d_weight, None, None, None, None
