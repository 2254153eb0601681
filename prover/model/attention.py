"""Multi-head Latent Attention (DeepSeek-V2/V3), decoupled RoPE with YaRN, and the latent KV cache.

Per token the cache keeps only the normed kv latent c (kv_lora_rank) and the shared rotary key k_pe
(qk_rope_head_dim), not per-head keys and values. Prefill and training expand c through `kv_b_proj` and run
SDPA; decoding steps keep everything in latent space by absorbing `kv_b_proj` into the query and the output
(DeepSeek-V3 `inference/model.py`, attn_impl="absorb").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from prover.model.attention_fa4 import causal_attention
from prover.model.config import ModelConfig, yarn_mscale

try:  # FlexAttention (torch >= 2.5): an optional attention path for training and prefill
    from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention
except ImportError:  # pragma: no cover - older torch
    BlockMask = create_block_mask = flex_attention = None


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


# ------------------------------------------------------------------------------------------------ RoPE
def rope_frequencies(cfg: ModelConfig) -> tuple[torch.Tensor, float]:
    """Inverse frequencies of the rotary dims, and the cos/sin scale (YaRN's attention_factor; 1 without)."""
    dim, base = cfg.qk_rope_head_dim, float(cfg.rope_theta)
    pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    rs = cfg.rope_scaling
    if not rs or rs.get("type", rs.get("rope_type")) != "yarn":
        return 1.0 / pos_freqs, 1.0
    factor = float(rs["factor"])
    original = float(rs["original_max_position_embeddings"])
    beta_fast, beta_slow = float(rs.get("beta_fast") or 32), float(rs.get("beta_slow") or 1)
    mscale, mscale_all = rs.get("mscale"), rs.get("mscale_all_dim")
    if rs.get("attention_factor") is not None:
        attention_factor = float(rs["attention_factor"])
    elif mscale and mscale_all:
        attention_factor = yarn_mscale(factor, float(mscale)) / yarn_mscale(factor, float(mscale_all))
    else:
        attention_factor = yarn_mscale(factor)

    def correction_dim(rotations: float) -> float:
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(correction_dim(beta_fast)), 0)
    high = min(math.ceil(correction_dim(beta_slow)), dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    extrapolate = 1 - ramp  # 1: keep the original frequency (high-frequency dims), 0: interpolate by `factor`
    inv_freq = (1.0 / (factor * pos_freqs)) * ramp + (1.0 / pos_freqs) * extrapolate
    return inv_freq, attention_factor


def rope_cos_sin(inv_freq: torch.Tensor, scale: float, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """positions [B, S] -> cos, sin [B, S, 1, rope_dim / 2] (float32)."""
    angles = positions.float().unsqueeze(-1) * inv_freq.to(positions.device)
    return (angles.cos() * scale).unsqueeze(2), (angles.sin() * scale).unsqueeze(2)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x0, x1), (x2, x3), ... as DeepSeek-V3's weights expect. The result lists the
    rotated even members first, then the odd ones: a fixed permutation applied to q and k alike, so q.k is
    unchanged (transformers does the same)."""
    x1, x2 = x[..., 0::2].float(), x[..., 1::2].float()
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)


# ------------------------------------------------------------------------------------------------ cache
class LatentCache:
    """Preallocated per-layer latent cache: `kv` [L, B, max_len, kv_lora_rank], `pe` [L, B, max_len, rope_dim].
    A forward writes its tokens at [length, length + S) in every layer, then `advance(S)`."""

    def __init__(self, cfg: ModelConfig, batch_size: int, max_len: int, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32):
        L = cfg.num_hidden_layers
        self.kv = torch.zeros(L, batch_size, max_len, cfg.kv_lora_rank, device=device, dtype=dtype)
        self.pe = torch.zeros(L, batch_size, max_len, cfg.qk_rope_head_dim, device=device, dtype=dtype)
        self.length = 0
        self.max_len = max_len

    def update(self, layer: int, kv: torch.Tensor, pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        S = kv.shape[1]
        end = self.length + S
        if end > self.max_len:
            raise ValueError(f"LatentCache full: {end} tokens > max_len {self.max_len}")
        self.kv[layer, :, self.length:end] = kv
        self.pe[layer, :, self.length:end] = pe
        return self.kv[layer, :, :end], self.pe[layer, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def nbytes_per_token(self) -> int:
        L, B = self.kv.shape[:2]
        return (self.kv.numel() + self.pe.numel()) * self.kv.element_size() // (B * self.max_len)


# ------------------------------------------------------------------------------------------------ MLA
class MLA(nn.Module):
    """Checkpoint names under `self_attn.`: q_a_proj, q_a_layernorm, q_b_proj (or q_proj), kv_a_proj_with_mqa,
    kv_a_layernorm, kv_b_proj, o_proj."""

    # Decode steps of at most this many new tokens run in latent space (weights absorbed).
    ABSORB_MAX_NEW = 8

    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads = cfg.num_attention_heads
        self.q_lora_rank, self.kv_lora_rank = cfg.q_lora_rank, cfg.kv_lora_rank
        self.nope, self.rope, self.v_dim = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
        self.qk_dim = self.nope + self.rope
        self.scale = cfg.softmax_scale
        H, bias = cfg.hidden_size, cfg.attention_bias
        if self.q_lora_rank:
            self.q_a_proj = nn.Linear(H, self.q_lora_rank, bias=bias)
            self.q_a_layernorm = RMSNorm(self.q_lora_rank, cfg.rms_norm_eps)
            self.q_b_proj = nn.Linear(self.q_lora_rank, self.n_heads * self.qk_dim, bias=False)
        else:
            self.q_proj = nn.Linear(H, self.n_heads * self.qk_dim, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(H, self.kv_lora_rank + self.rope, bias=bias)
        self.kv_a_layernorm = RMSNorm(self.kv_lora_rank, cfg.rms_norm_eps)
        self.kv_b_proj = nn.Linear(self.kv_lora_rank, self.n_heads * (self.nope + self.v_dim), bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.v_dim, H, bias=bias)
        # Pad v to the qk head dim on GPU (for kernels that need equal dims)? Measured on H100 with cuDNN SDPA
        # (docs/BENCHMARKS.md): unpadded is slightly faster, so off by default.
        self.pad_v = False
        # One GEMM for q_a_proj and kv_a_proj_with_mqa (both read x): their weights concatenated on the fly, so
        # checkpoints keep both names. Off until the GPU bench says it pays (`DeepSeekV3.set_fusions`).
        self.fuse_a_proj = False
        # Plain causal attention (training, prefill without padding) on FlashAttention-4's kernels; masked calls
        # stay on SDPA (`DeepSeekV3.set_attention("fa4")`).
        self.fa4 = False

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                cache: LatentCache | None = None) -> torch.Tensor:
        """x [B, S, H]; mask: None (plain causal, no cache) or bool [B, 1, S, T] (True = may attend)."""
        B, S, _ = x.shape
        q_a, kv_a = self._a_proj(x)
        q = self.q_b_proj(self.q_a_layernorm(q_a)) if self.q_lora_rank else self.q_proj(x)
        q = q.view(B, S, self.n_heads, self.qk_dim)
        q_nope, q_pe = q.split([self.nope, self.rope], dim=-1)
        q_pe = apply_rope(q_pe, cos, sin)
        kv, k_pe = kv_a.split([self.kv_lora_rank, self.rope], dim=-1)
        kv = self.kv_a_layernorm(kv)
        k_pe = apply_rope(k_pe.unsqueeze(2), cos, sin).squeeze(2)  # [B, S, rope], one key shared by all heads
        if cache is not None:
            kv, k_pe = cache.update(self.layer_idx, kv, k_pe)
            if S <= self.ABSORB_MAX_NEW:
                return self.o_proj(self._absorbed(q_nope, q_pe, kv, k_pe, mask).reshape(B, S, -1))
        return self.o_proj(self._expanded(q_nope, q_pe, kv, k_pe, mask).reshape(B, S, -1))

    def _a_proj(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(q_a_proj(x) or None without a q latent, kv_a_proj_with_mqa(x)), fused into one GEMM when asked and
        both are plain bias-free linears (not FP8-converted modules, whose GEMMs are their own)."""
        if not self.q_lora_rank:
            return None, self.kv_a_proj_with_mqa(x)
        q_a, kv_a = self.q_a_proj, self.kv_a_proj_with_mqa
        if self.fuse_a_proj and type(q_a) is nn.Linear and type(kv_a) is nn.Linear and q_a.bias is None \
                and kv_a.bias is None:
            return F.linear(x, torch.cat((q_a.weight, kv_a.weight))).split(
                [q_a.out_features, kv_a.out_features], dim=-1)
        return q_a(x), kv_a(x)

    def _expanded(self, q_nope, q_pe, kv, k_pe, mask) -> torch.Tensor:
        """Expand the latent to per-head k/v and use SDPA (flash/cuDNN kernels on GPU)."""
        B, T = q_nope.shape[0], kv.shape[1]
        k_nope, v = self.kv_b_proj(kv).view(B, T, self.n_heads, self.nope + self.v_dim).split(
            [self.nope, self.v_dim], dim=-1)
        q = torch.cat((q_nope, q_pe), dim=-1)
        k = torch.cat((k_nope, k_pe.unsqueeze(2).expand(B, T, self.n_heads, self.rope)), dim=-1)
        if self.fa4 and mask is None:  # plain causal on FlashAttention-4 (`DeepSeekV3.set_attention("fa4")`)
            return causal_attention(q, k, v, self.scale)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        pad = self.qk_dim - self.v_dim if (self.pad_v and q.is_cuda and self.v_dim < self.qk_dim) else 0
        if pad:  # flash attention wants equal head dims: pad v with zeros, slice the output
            v = F.pad(v, (0, pad))
        if isinstance(mask, BlockMask):  # FlexAttention (`DeepSeekV3.set_attention("flex")`)
            out = flex_attention(q, k, v, block_mask=mask, scale=self.scale)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, scale=self.scale)
        if pad:
            out = out[..., : self.v_dim]
        return out.transpose(1, 2)

    def _absorbed(self, q_nope, q_pe, kv, k_pe, mask) -> torch.Tensor:
        """Attention in latent space: fold kv_b_proj's key half into q and its value half into the output."""
        w = self.kv_b_proj.weight.view(self.n_heads, self.nope + self.v_dim, self.kv_lora_rank)
        w_k, w_v = w[:, : self.nope], w[:, self.nope:]
        q_lat = torch.einsum("bshd,hdc->bshc", q_nope, w_k)
        scores = torch.einsum("bshc,btc->bhst", q_lat, kv) + torch.einsum("bshr,btr->bhst", q_pe, k_pe)
        scores = scores.float() * self.scale
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        probs = scores.softmax(-1).to(kv.dtype)
        out_lat = torch.einsum("bhst,btc->bshc", probs, kv)
        return torch.einsum("bshc,hdc->bshd", out_lat, w_v)


def flex_block_mask(B: int, S: int, attention_mask: torch.Tensor | None, device: torch.device):
    """The model's training/prefill mask as a FlexAttention BlockMask: causal, keys restricted to real tokens
    (`attention_mask` [B, S], 1 = real) and every query sees itself (left pads; the rule of `DeepSeekV3._mask`)."""
    if attention_mask is None:
        return create_block_mask(lambda b, h, q, kv: kv <= q, None, None, S, S, device=device)
    real = attention_mask.bool()

    def mask_mod(b, h, q, kv):
        return ((kv <= q) & real[b, kv]) | (q == kv)

    return create_block_mask(mask_mod, B, None, S, S, device=device)
