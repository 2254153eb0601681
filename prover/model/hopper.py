"""What the CuTe-DSL kernel paths (QuACK's experts and loss, FlashAttention-4) share: the check for a CUDA device of
compute capability >= 9.0 and the import of their package, each failing with one clear error saying what to do."""

from __future__ import annotations

import importlib
from types import ModuleType

import torch

from prover.errors import ProverError


def require_hopper(device: torch.device, what: str, instead: str) -> None:
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (9, 0):
        where = "no CUDA device" if device.type != "cuda" else torch.cuda.get_device_name(device)
        raise ProverError(f"{what} needs a CUDA GPU of compute capability >= 9.0 (Hopper or newer); here: {where}. "
                          f"{instead}")


# What each kernel package needs, for the error where it is missing (the pins are pyproject's extras).
QUACK = ("quack-kernels on a CUDA sm90+ GPU (pip install 'subgoal[quack]': quack-kernels 0.6.5 with "
         "nvidia-cutlass-dsl 4.8.1)")
FA4 = ("flash-attn-4 on a CUDA sm90+ GPU (pip install 'subgoal[fa4]': flash-attn-4 4.0.0b40 with "
       "nvidia-cutlass-dsl 4.8.1)")


def import_kernels(module: str, what: str, install: str) -> ModuleType:
    """`module` imported, or a ProverError naming what needs it and how to install it. The callers keep the module
    in a plain global of their own, which torch.compile reads without a graph break once it is set; the import
    itself must not happen under tracing (a graph break the compiled code keeps: `DeepSeekV3.compile_blocks`
    loads QuACK's experts first)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ProverError(f"{what} needs {install}: {e}") from e
