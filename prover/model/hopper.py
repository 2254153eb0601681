"""The check that the CuTe-DSL kernel paths (QuACK's experts, FlashAttention-4) share: a CUDA device of compute
capability >= 9.0, or one clear error saying what to use instead."""

from __future__ import annotations

import torch

from prover.errors import ProverError


def require_hopper(device: torch.device, what: str, instead: str) -> None:
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (9, 0):
        where = "no CUDA device" if device.type != "cuda" else torch.cuda.get_device_name(device)
        raise ProverError(f"{what} needs a CUDA GPU of compute capability >= 9.0 (Hopper or newer); here: {where}. "
                          f"{instead}")
