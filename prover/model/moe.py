"""DeepSeekMoE: sigmoid router with group-limited top-k and a selection-only bias, shared experts, and the
routed experts computed two ways:

- `reference`: a plain loop over experts (what the tests compare against);
- fast: token copies sorted by expert, then one grouped GEMM per projection. `grouped` uses
  `torch._grouped_mm` (bf16 on sm90+; CPU kernels in recent torch); `batched` pads each expert's tokens
  to the largest count and runs `torch.bmm` (works anywhere, any dtype);
- `quack`: QuACK's grouped GEMMs with the gathers and SwiGLU fused into them (`moe_quack.py`; CUDA sm90+).

Routed expert weights are stacked (`gate_up_proj` [E, 2I, H], `down_proj` [E, H, I], nn.Linear layout) so that
the fast path needs no per-expert Python; checkpoints split them per expert (`checkpoint.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from prover.model.config import ModelConfig


class MLP(nn.Module):
    """SwiGLU feed-forward: the dense layers' MLP and the shared experts."""

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)
        # One GEMM for gate and up (weights concatenated on the fly: checkpoint names unchanged); off until the
        # GPU bench says it pays (`DeepSeekV3.set_fusions`). Not for FP8-converted linears.
        self.fuse_gate_up = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_proj, self.up_proj
        if self.fuse_gate_up and type(gate) is nn.Linear and type(up) is nn.Linear:
            g, u = F.linear(x, torch.cat((gate.weight, up.weight))).chunk(2, dim=-1)
            return self.down_proj(F.silu(g) * u)
        return self.down_proj(F.silu(gate(x)) * up(x))


class Router(nn.Module):
    """Checkpoint names: `mlp.gate.weight`, `mlp.gate.e_score_correction_bias`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.top_k = cfg.num_experts_per_tok
        self.n_group, self.topk_group = cfg.n_group, cfg.topk_group
        self.norm_topk_prob = cfg.norm_topk_prob
        self.scaling = cfg.routed_scaling_factor
        self.weight = nn.Parameter(torch.empty(cfg.n_routed_experts, cfg.hidden_size))
        # Used to choose experts only, never to weight them; moved by `balance.update_bias`, not by gradients.
        self.register_buffer("e_score_correction_bias", torch.zeros(cfg.n_routed_experts, dtype=torch.float32))

    def _apply(self, fn, recurse=True):
        # model.to(bfloat16) must not round the bias: its updates (gamma ~ 1e-3) would vanish in bf16.
        bias = self.e_score_correction_bias
        super()._apply(fn, recurse)
        moved = self.e_score_correction_bias
        # From the meta device (`to_empty`) there is nothing to keep: take the new, uninitialized storage.
        self.e_score_correction_bias = (moved if bias.is_meta else bias).to(device=moved.device, dtype=torch.float32)
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [T, H] -> (weights [T, K] float32, indices [T, K], scores [T, E] float32)."""
        with torch.autocast(x.device.type, enabled=False):  # routing in fp32 (as DeepSeek-V3), even under autocast
            scores = F.linear(x.float(), self.weight.float()).sigmoid()
        with torch.no_grad():
            biased = scores + self.e_score_correction_bias
            T, E = biased.shape
            grouped = biased.view(T, self.n_group, E // self.n_group)
            # A group's score is the sum of its two best experts; the `topk_group` best groups stay open.
            # Written with max / comparisons instead of two small topk calls so torch.compile fuses it.
            best, arg = grouped.max(-1)
            second = grouped.scatter(-1, arg.unsqueeze(-1), float("-inf")).max(-1).values
            group_scores = best + second
            g = torch.arange(self.n_group, device=x.device)
            beats = (group_scores.unsqueeze(1) > group_scores.unsqueeze(2)) | (
                (group_scores.unsqueeze(1) == group_scores.unsqueeze(2)) & (g.view(1, 1, -1) < g.view(1, -1, 1)))
            keep = beats.sum(-1) < self.topk_group  # [T, G]: fewer than topk_group groups rank above
            biased = biased.masked_fill(~keep.unsqueeze(-1).expand_as(grouped).reshape(T, E), float("-inf"))
            indices = biased.topk(self.top_k, dim=-1, sorted=False).indices
        weights = scores.gather(1, indices)
        if self.norm_topk_prob:
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        return weights * self.scaling, indices, scores


class RoutedExperts(nn.Module):
    fp8 = False  # grouped GEMMs in FP8 (set by `fp8.convert_to_fp8`; the weights stay bf16 parameters)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        E, H, inter = cfg.n_routed_experts, cfg.hidden_size, cfg.moe_intermediate_size
        self.num_experts = E
        self.gate_up_proj = nn.Parameter(torch.empty(E, 2 * inter, H))  # rows [0, inter): gate_proj, then up_proj
        self.down_proj = nn.Parameter(torch.empty(E, H, inter))

    def forward(self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor, counts: torch.Tensor,
                impl: str = "auto") -> torch.Tensor:
        gate_up, down = self.gate_up_proj, self.down_proj
        if torch.is_autocast_enabled(x.device.type):
            # Autocast does not cover the grouped GEMM: cast like it casts nn.Linear, or fp32 master weights
            # under bf16 autocast would fall back to the slow padded path in fp32.
            dtype = torch.get_autocast_dtype(x.device.type)
            x, gate_up, down = x.to(dtype), gate_up.to(dtype), down.to(dtype)
        if impl == "reference":
            return experts_reference(x, indices, weights, gate_up, down)
        if impl == "quack":
            from prover.model.moe_quack import experts_quack

            return experts_quack(x, indices, weights, gate_up, down, counts)
        return experts_sorted(x, indices, weights, gate_up, down, counts, resolve_impl(impl, x, self.fp8))


class MoE(nn.Module):
    """Shared experts + routed experts. Checkpoint names under `mlp.`: `gate`, `experts.{j}`, `shared_experts`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.gate = Router(cfg)
        self.experts = RoutedExperts(cfg)
        self.shared_experts = MLP(cfg.hidden_size, cfg.moe_intermediate_size * cfg.n_shared_experts)
        # Routed token copies per expert since the last bias update (training only); see balance.py.
        self.register_buffer("tokens_per_expert", torch.zeros(cfg.n_routed_experts, dtype=torch.int64),
                             persistent=False)  # int64: survives model.to(bfloat16) exactly
        self.impl = cfg.moe_impl

    def forward(self, x: torch.Tensor, token_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [B, S, H] -> (y [B, S, H], sequence-wise balance loss or None). `token_mask` [B, S] (True = real
        token): padding is computed like any token but is not load, so it stays out of the balancing statistics."""
        B, S, H = x.shape
        flat = x.reshape(-1, H)
        weights, indices, scores = self.gate(flat)
        counts = expert_counts(indices, self.experts.num_experts)
        if self.training:
            self.tokens_per_expert += counts if token_mask is None else expert_counts(
                indices, self.experts.num_experts, token_mask.reshape(-1))
        y = self.experts(flat, indices, weights.to(x.dtype), counts, self.impl)
        y = y + self.shared_experts(flat)
        aux = None
        if self.training and self.cfg.aux_loss_alpha > 0:
            aux = sequence_balance_loss(scores.view(B, S, -1), indices.view(B, S, -1), self.cfg.aux_loss_alpha,
                                        token_mask)
        return y.view(B, S, H), aux


def expert_counts(indices: torch.Tensor, num_experts: int, token_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Routed token copies per expert (int64 [E]), of the tokens `token_mask` [T] keeps (all by default);
    scatter_add keeps the shape static for torch.compile."""
    flat = indices.reshape(-1)
    ones = torch.ones_like(flat) if token_mask is None else token_mask.long().repeat_interleave(indices.shape[-1])
    return torch.zeros(num_experts, dtype=torch.int64, device=flat.device).scatter_add_(0, flat, ones)


def sequence_balance_loss(scores: torch.Tensor, indices: torch.Tensor, alpha: float,
                          token_mask: torch.Tensor | None = None) -> torch.Tensor:
    """DeepSeek-V3's complementary sequence-wise loss: alpha * sum_i f_i * P_i per sequence, batch mean.
    f_i = E/(K*S) * (tokens of the sequence routed to i); P_i = mean over tokens of normalized affinities;
    S counts the real tokens of the sequence (`token_mask` [B, S]; all by default)."""
    B, S, E = scores.shape
    K = indices.shape[-1]
    m = scores.new_ones(B, S) if token_mask is None else token_mask.to(scores.dtype)
    n = m.sum(1, keepdim=True).clamp(min=1)
    with torch.no_grad():
        hits = torch.zeros(B, E, device=scores.device, dtype=scores.dtype)
        hits.scatter_add_(1, indices.reshape(B, -1), m.repeat_interleave(K, dim=1))
        f = hits * E / (K * n)
    p = ((scores / scores.sum(-1, keepdim=True)) * m.unsqueeze(-1)).sum(1) / n
    return alpha * (f * p).sum(-1).mean()


# ------------------------------------------------------------------------------------------- reference path
def experts_reference(x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor, gate_up: torch.Tensor,
                      down: torch.Tensor) -> torch.Tensor:
    """Loop over experts, gather their tokens, SwiGLU, scatter back weighted. Plain on purpose."""
    out = torch.zeros_like(x)
    for e in range(gate_up.shape[0]):
        token, slot = torch.where(indices == e)
        if token.numel() == 0:
            continue
        gate, up = F.linear(x[token], gate_up[e]).chunk(2, dim=-1)
        y = F.linear(F.silu(gate) * up, down[e]) * weights[token, slot, None]
        out.index_add_(0, token, y.to(out.dtype))
    return out


# ------------------------------------------------------------------------------------------- fast path
@dataclass
class Segments:
    """Rows of the expert-sorted token copies: expert e owns rows [offs[e] - counts[e], offs[e])."""

    counts: torch.Tensor  # [E] int64
    offs: torch.Tensor  # [E] int32, inclusive cumulative counts (what torch._grouped_mm takes)
    expert: torch.Tensor  # [T*K] expert of each sorted row
    row_in_expert: torch.Tensor  # [T*K] position of each sorted row within its expert


def experts_sorted(x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor, gate_up: torch.Tensor,
                   down: torch.Tensor, counts: torch.Tensor, impl: str) -> torch.Tensor:
    """Sort token copies by expert, two grouped GEMMs, then sum each token's K weighted copies."""
    T, K = indices.shape
    flat = indices.reshape(-1)
    order, inverse = sort_copies(indices)
    offs = counts.cumsum(0)
    expert = flat[order]
    seg = Segments(counts, offs.to(torch.int32), expert, torch.arange(T * K, device=x.device) - (offs - counts)[expert])
    gemm = {"grouped": grouped_gemm, "grouped_fp8": grouped_gemm_fp8, "batched": batched_gemm}[impl]
    xs = _Dispatch.apply(x, order // K, inverse, K)
    gate, up = gemm(xs, gate_up, seg).chunk(2, dim=-1)
    # Weighting before down_proj (it is linear) leaves the combine a plain sum: no batched K-by-1 matmul.
    h = F.silu(gate) * up * weights.reshape(-1)[order].to(x.dtype).unsqueeze(-1)
    return _Combine.apply(gemm(h, down, seg), order // K, inverse, K)


def sort_copies(indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each token's K copies [T, K] in expert order: (order, inverse), sorted row r holding copy order[r] =
    token * K + slot, and copy c at sorted row inverse[c]."""
    order = indices.reshape(-1).argsort(stable=True)
    inverse = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=order.device))
    return order, inverse


def sum_copies(rows: torch.Tensor, inverse: torch.Tensor, k: int) -> torch.Tensor:
    """Expert-ordered rows [T*K, H] -> each token's K copies summed [T, H] (a gather: no atomics)."""
    return rows.index_select(0, inverse).view(-1, k, rows.shape[-1]).sum(1)


class _Dispatch(torch.autograd.Function):
    """x [T, H] -> its K copies in expert order [T*K, H]. Backward sums the copies through the inverse
    permutation (gathers only: no atomics, no index_put sort)."""

    @staticmethod
    def forward(ctx, x, token_of_row, inverse, k):
        ctx.save_for_backward(inverse)
        ctx.k = k
        return x.index_select(0, token_of_row)

    @staticmethod
    def backward(ctx, grad):
        (inverse,) = ctx.saved_tensors
        return sum_copies(grad, inverse, ctx.k), None, None, None


class _Combine(torch.autograd.Function):
    """Expert-ordered rows [T*K, H] -> per-token sums [T, H]: the adjoint of `_Dispatch`."""

    @staticmethod
    def forward(ctx, rows, token_of_row, inverse, k):
        ctx.save_for_backward(token_of_row)
        return sum_copies(rows, inverse, k)

    @staticmethod
    def backward(ctx, grad):
        (token_of_row,) = ctx.saved_tensors
        return grad.index_select(0, token_of_row), None, None, None


def grouped_gemm(x: torch.Tensor, w: torch.Tensor, seg: Segments) -> torch.Tensor:
    """x [N, in] (rows sorted by expert) @ w[e].T per segment -> [N, out]."""
    return torch._grouped_mm(x, w.transpose(-2, -1), offs=seg.offs)


def grouped_gemm_fp8(x: torch.Tensor, w: torch.Tensor, seg: Segments) -> torch.Tensor:
    """`grouped_gemm` with FP8 operands (torchao, rowwise scales), bf16 out. torchao's FP8 grouped GEMM takes
    groups of a multiple of 16 rows only, so the rows go through a zero-padded copy (`pad_groups`)."""
    from prover.model.fp8 import fp8_grouped_mm

    return padded_grouped(fp8_grouped_mm, x, w, seg)


def pad_groups(seg: Segments, num_rows: int, multiple: int = 16) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Where each sorted row goes when every expert's group is padded to a multiple of `multiple` rows:
    (destination row of each row, inclusive int32 group ends, buffer rows). The buffer's size is a static bound
    (no host sync, compile-friendly); rows past the last group end are never read."""
    padded = (seg.counts + multiple - 1) // multiple * multiple
    ends = padded.cumsum(0)
    dest = (ends - padded)[seg.expert] + seg.row_in_expert
    rows = -(-(num_rows + (multiple - 1) * seg.counts.numel()) // multiple) * multiple
    return dest, ends.to(torch.int32), rows


def padded_grouped(gemm: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                   w: torch.Tensor, seg: Segments, multiple: int = 16) -> torch.Tensor:
    """`gemm(x, w.T, offs)` on groups padded to `multiple` rows (zero rows in, their outputs dropped).

    The rows move by gathers only, both ways: a scatter of whole rows (`index_copy`, or `index_select`'s backward)
    is an aten kernel inductor does not fuse, and it took 0.84 ms a call, 13.5-20 ms of an FP8 step, on the H200."""
    dest, ends, rows = pad_groups(seg, x.shape[0], multiple)
    n = x.shape[0]
    # The inverse of `dest` per padded slot, from a scatter of row numbers only (not of rows).
    src = torch.zeros(rows, dtype=torch.long, device=x.device).index_copy(0, dest, torch.arange(n, device=x.device))
    filled = torch.zeros(rows, dtype=torch.bool, device=x.device).index_fill(0, dest, True)
    return _FromPadded.apply(gemm(_ToPadded.apply(x, src, filled, dest), w.transpose(-2, -1), ends), dest, src, filled)


class _ToPadded(torch.autograd.Function):
    """Rows [N, H] -> their padded-group slots [rows, H], zeros where no row goes; backward gathers back by `dest`."""

    @staticmethod
    def forward(ctx, x, src, filled, dest):
        ctx.save_for_backward(dest)
        if x.shape[0] == 0:  # no rows (an expert-parallel rank can receive none): nothing to gather from
            return x.new_zeros(src.shape[0], x.shape[1])
        return torch.where(filled.unsqueeze(-1), x.index_select(0, src), 0)

    @staticmethod
    def backward(ctx, grad):
        (dest,) = ctx.saved_tensors
        return grad.index_select(0, dest), None, None, None


class _FromPadded(torch.autograd.Function):
    """Padded-group slots [rows, H] -> the rows' outputs [N, H]: the adjoint of `_ToPadded`."""

    @staticmethod
    def forward(ctx, padded, dest, src, filled):
        ctx.save_for_backward(src, filled)
        return padded.index_select(0, dest)

    @staticmethod
    def backward(ctx, grad):
        src, filled = ctx.saved_tensors
        if grad.shape[0] == 0:
            return grad.new_zeros(src.shape[0], grad.shape[1]), None, None, None
        return torch.where(filled.unsqueeze(-1), grad.index_select(0, src), 0), None, None, None


def resolve_impl(impl: str, x: torch.Tensor, fp8: bool = False) -> str:
    """"auto" -> the grouped GEMM where the device has it (in FP8 for converted experts), else padded bmm."""
    if impl == "auto":
        impl = "grouped" if grouped_mm_supported(x) else "batched"
    return "grouped_fp8" if fp8 and impl == "grouped" else impl


@torch.compiler.disable  # data-dependent shape (the largest count): keep it out of compiled graphs
def batched_gemm(x: torch.Tensor, w: torch.Tensor, seg: Segments) -> torch.Tensor:
    """Fallback without a grouped-GEMM kernel: pad every expert to the largest count, one bmm."""
    E = w.shape[0]
    cap = int(seg.counts.max())  # host sync; acceptable off the fast GPU path
    buf = x.new_zeros(E, max(cap, 1), x.shape[-1])
    buf = buf.index_put((seg.expert, seg.row_in_expert), x)
    out = torch.bmm(buf, w.transpose(-2, -1))
    return out[seg.expert, seg.row_in_expert]


@torch.compiler.assume_constant_result  # a fact about the machine: no graph break, no guard
def _cuda_has_grouped_mm() -> bool:
    return hasattr(torch, "_grouped_mm") and torch.cuda.is_available() and torch.cuda.get_device_capability() >= (9, 0)


def grouped_mm_supported(x: torch.Tensor) -> bool:
    """`torch._grouped_mm` takes bf16 CUDA tensors on sm90+ (the device's type and dtype are static under compile)."""
    return x.is_cuda and x.dtype == torch.bfloat16 and _cuda_has_grouped_mm()
