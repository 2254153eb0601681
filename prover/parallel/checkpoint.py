"""Gather-on-save: a model trained with expert parallelism (and FSDP2) is written in the same single HF layout
`DeepSeekV3.save_pretrained` writes (one tensor per expert and projection), so `transformers`, vLLM and
`DeepSeekV3.from_pretrained` load it unchanged. Loading needs no counterpart: every rank loads the full
checkpoint and `parallelize` keeps its own slice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from prover.parallel.expert_parallel import expert_modules, gather_expert_weights


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict on the CPU on rank 0 (routed experts [E, ...]), {} on other ranks. Every
    rank must call it (it runs collectives)."""
    sharded = any(hasattr(p, "full_tensor") for p in model.parameters())
    if sharded:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    else:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if expert_modules(model):
        state.update(gather_expert_weights(model, dst=0))
    return state if not dist.is_initialized() or dist.get_rank() == 0 else {}


def save_pretrained(model: nn.Module, directory: str | Path, tokenizer: Any = None,
                    dtype: torch.dtype | None = None) -> Path:
    """Gather the model to rank 0 and write it there as `DeepSeekV3.save_pretrained` would. Every rank calls."""
    from prover.model import DeepSeekV3

    state = full_state_dict(model)
    if not dist.is_initialized() or dist.get_rank() == 0:
        with torch.device("meta"):
            full = DeepSeekV3(model.config)
        full.load_state_dict(state, strict=True, assign=True)
        full.save_pretrained(directory, tokenizer=tokenizer, dtype=dtype)
    if dist.is_initialized():
        dist.barrier()
    return Path(directory)
