"""Auxiliary-loss-free load balancing (DeepSeek-V3 section 2.1.2) and per-expert load statistics.

Every MoE layer counts, in training mode, the token copies routed to each expert (`MoE.tokens_per_expert`,
int64). After an optimizer step, `update_bias(model, gamma)` moves each expert's selection bias by
`gamma * sign(mean load - load)` (under-loaded experts up, over-loaded down) and resets the counts. Under
expert or data parallelism the counts are summed over `process_group` first, in one all-reduce, so every rank
applies the same update; `expert_counts(model)` / `reset_counts(model)` expose the [layers, experts] tensor for
engines that want to reduce it themselves. The optional sequence-wise balance loss is `ModelConfig.aux_loss_alpha`
(computed in `moe.sequence_balance_loss`, added to the model's loss).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prover.model.moe import MoE


def moe_layers(model: nn.Module) -> list[tuple[str, MoE]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, MoE)]


def expert_counts(model: nn.Module) -> torch.Tensor:
    """Token copies per expert since the last update, stacked [n_moe_layers, n_experts] (int64)."""
    layers = moe_layers(model)
    if not layers:
        return torch.zeros(0, 0, dtype=torch.int64)
    return torch.stack([m.tokens_per_expert for _, m in layers])


def reset_counts(model: nn.Module) -> None:
    for _, m in moe_layers(model):
        m.tokens_per_expert.zero_()


@torch.no_grad()
def update_bias(model: nn.Module, gamma: float, process_group: Any = None,
                counts: torch.Tensor | None = None) -> torch.Tensor:
    """b_i += gamma * sign(mean_j(c_j) - c_i) in every MoE layer, from the counts accumulated since the last
    call (all-reduced over `process_group` when given, or the `counts` passed in); then reset the counts.
    Layers that routed nothing are left alone. Returns the [layers, experts] counts used (for logging with
    `load_summary`); nothing here waits for the GPU."""
    layers = moe_layers(model)
    if not layers:
        return torch.zeros(0, 0, dtype=torch.int64)
    if counts is None:
        counts = expert_counts(model)
        if process_group is not None:
            import torch.distributed as dist

            dist.all_reduce(counts, op=dist.ReduceOp.SUM, group=process_group)
    c = counts.float()
    step = gamma * torch.sign(c.mean(dim=1, keepdim=True) - c)  # > 0 for under-loaded experts
    step = step * (c.sum(dim=1, keepdim=True) > 0)  # a layer that routed nothing keeps its bias
    for i, (_, m) in enumerate(layers):
        bias = m.gate.e_score_correction_bias
        bias += step[i].to(bias.device, bias.dtype)
    reset_counts(model)
    return counts


def load_stats(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """`load_summary` as 0-dim tensors on the counts' device: nothing waits for the GPU until they are read."""
    c = counts.float()
    mean = c.mean(dim=1).clamp(min=1e-9)
    violation = c.max(dim=1).values / mean - 1
    frac = c / c.sum(dim=1, keepdim=True).clamp(min=1)
    return {"max_violation_mean": violation.mean(), "max_violation_worst": violation.max(), "min_load_frac": frac.min(),
            "max_load_frac": frac.max(), "tokens": c.sum(dim=1).max()}


def load_summary(counts: torch.Tensor) -> dict[str, float]:
    """Max violation (max load / mean load - 1), averaged and worst over layers, plus min/max load fractions."""
    stats = load_stats(counts)
    return dict(zip(stats, torch.stack(list(stats.values())).tolist(), strict=True))  # one read


def expert_load(model: nn.Module) -> dict[str, Any]:
    """For logging: per MoE layer its counts, load fractions, max violation and bias range, plus a summary."""
    layers = moe_layers(model)
    out: dict[str, Any] = {"layers": {}}
    if not layers:
        return out
    counts = expert_counts(model)
    for (name, m), c in zip(layers, counts, strict=True):
        total = int(c.sum())
        bias = m.gate.e_score_correction_bias
        out["layers"][name] = {
            "counts": c.tolist(),
            "fraction": (c.float() / max(total, 1)).tolist(),
            "max_violation": float(c.max().float() / c.float().mean().clamp(min=1e-9) - 1) if total else 0.0,
            "bias_min": float(bias.min()),
            "bias_max": float(bias.max()),
        }
    out["summary"] = load_summary(counts)
    return out
