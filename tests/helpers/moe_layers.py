"""One MoE layer for the routed-experts tests: built with random weights, and run forward and backward on a path."""

from __future__ import annotations

import torch

from prover.model import ModelConfig
from prover.model.moe import MoE


def moe_layer(seed: int, dtype=torch.float32, device="cpu", **overrides) -> MoE:
    """The `tiny` preset's MoE layer (`overrides` on its config), weights and selection bias random."""
    torch.manual_seed(seed)
    layer = MoE(ModelConfig.preset("tiny", **overrides)).to(device=device, dtype=dtype)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.2)
        layer.gate.e_score_correction_bias.normal_(0, 0.1)
    return layer


def forward_backward(layer: MoE, impl: str, x: torch.Tensor):
    """(output, the input's gradient, each parameter's gradient) of `layer` on path `impl`, for a loss that weighs
    every output column differently."""
    layer.impl = impl
    xi = x.clone().requires_grad_(True)
    y, _ = layer(xi)
    (y * torch.linspace(-1, 1, y.shape[-1], device=y.device)).sum().backward()
    grads = {n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None}
    layer.zero_grad(set_to_none=True)
    return y.detach(), xi.grad.clone(), grads
