"""Gather-on-save: a model trained with expert parallelism (and FSDP2) is written in the same single HF layout
`DeepSeekV3.save_pretrained` writes (one tensor per expert and projection), so `transformers`, vLLM and
`DeepSeekV3.from_pretrained` load it unchanged. Loading weights needs no counterpart: every rank loads the full
checkpoint and `parallelize` keeps its own slice. The optimizer state of the experts is gathered the same way
(`gather_expert_state`) and cut back to each rank's experts on resume (`local_expert_state`), so a resumed EP
run continues exactly (and an EP run's trainer state also resumes without EP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from prover.parallel.expert_parallel import (
    EXPERT_PARAMS,
    clean_name,
    expert_modules,
    gather_expert_weights,
    gather_rows,
)


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


def gather_expert_state(model: nn.Module, optimizer: torch.optim.Optimizer | None, model_sd: dict[str, Any],
                        optim_sd: dict[str, Any] | None) -> None:
    """Complete full (rank-0) state dicts from `get_model_state_dict` / `get_optimizer_state_dict` in place:
    routed experts and their optimizer moments [E/ep, ...] -> [E, ...]. A no-op without expert parallelism.
    Every rank must call it (rank 0's dicts are the ones completed)."""
    if not expert_modules(model):
        return
    keep = dist.get_rank() == 0
    weights = gather_expert_weights(model, dst=0)
    if keep:
        model_sd.update(weights)
    if optimizer is None:
        return
    for name, m in expert_modules(model):
        for pname in EXPERT_PARAMS:
            param = getattr(m, pname)
            entry: dict[str, Any] = {}
            for key, value in sorted(optimizer.state.get(param, {}).items()):  # same keys, same order on all ranks
                if torch.is_tensor(value) and value.dim() > 0:
                    entry[key] = gather_rows(m, value, keep)
                else:
                    entry[key] = value.detach().cpu().clone() if torch.is_tensor(value) else value
            if keep and entry and optim_sd is not None:
                optim_sd["state"][clean_name(f"{name}.{pname}")] = entry


def local_expert_state(model: nn.Module, optim_sd: dict[str, Any]) -> dict[str, Any]:
    """A full optimizer state dict (as saved) with the routed experts' moments cut to this rank's experts, ready
    for `set_optimizer_state_dict(..., full_state_dict=True)`. Unchanged without expert parallelism."""
    mods = expert_modules(model)
    if not mods or not optim_sd:
        return optim_sd
    state = dict(optim_sd["state"])
    for name, m in mods:
        rows = slice(m.first_expert, m.first_expert + m.num_local)
        for pname in EXPERT_PARAMS:
            fqn = clean_name(f"{name}.{pname}")
            if fqn in state:
                state[fqn] = {k: v[rows] if torch.is_tensor(v) and v.dim() > 0 else v for k, v in state[fqn].items()}
    return {**optim_sd, "state": state}
