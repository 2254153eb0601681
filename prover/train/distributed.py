"""Multi-process training: process-group setup from torchrun's environment, and the one function that wraps a
model for distribution (FSDP2 today; the seam where expert parallelism plugs in).

Under `torchrun --nproc_per_node N`, WORLD_SIZE/RANK/LOCAL_RANK are set: NCCL on GPUs, gloo on CPU.
Without them everything runs in one process and these helpers are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from prover.errors import ProverError


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def group(self):
        """The data-parallel process group (None in a single process)."""
        return dist.group.WORLD if self.distributed else None


def init_distributed(device: str = "auto") -> DistEnv:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    use_cuda = dev.type == "cuda"
    if use_cuda:
        dev = torch.device("cuda", local_rank if world > 1 else (dev.index or 0))
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None)
    return DistEnv(rank, world, local_rank, dev)


def shutdown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def _blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated transformer blocks of an HF model (`model.layers`, GPT-2's `transformer.h`, ...): its FSDP
    units. Our DeepSeek-V3 takes `prover.parallel.parallelize` instead (its MTP blocks need finer units)."""
    for name in ("model.layers", "layers", "transformer.h", "model.decoder.layers"):
        mod = model
        for part in name.split("."):
            mod = getattr(mod, part, None)
            if mod is None:
                break
        if isinstance(mod, torch.nn.ModuleList):
            return list(mod)
    return []


def wrap_model(model: torch.nn.Module, env: DistEnv, ep: int = 1) -> torch.nn.Module:
    """Prepare `model` (already on `env.device`) for data-parallel training across the process group.

    FSDP2: each transformer block is its own shard unit, then the root. Parameters stay fp32 (autocast does
    bf16 compute), gradients are reduced in fp32. Our MoE goes through `prover.parallel.parallelize`, which
    shards routed experts over groups of `ep` ranks (expert parallelism) and FSDP2-shards the rest.
    """
    if not env.distributed:
        if ep != 1:
            raise ProverError(f"--ep {ep} needs a distributed launch: torchrun --nproc_per_node N $(which subgoal) ...")
        return model
    from prover.train.common import is_moe

    if ep != 1 or is_moe(model):  # our MoE: experts over groups of `ep` ranks, FSDP2 for the rest
        from prover.parallel import parallelize

        return parallelize(model, ep=ep, device=env.device)
    from torch.distributed.fsdp import fully_shard

    for block in _blocks(model):
        fully_shard(block)
    fully_shard(model)
    return model


def all_reduce_sum(value: float | torch.Tensor, env: DistEnv) -> torch.Tensor:
    """The sum over ranks, as a tensor on the device; nothing here waits for the GPU (a float becomes a fill, not
    a host-to-device copy)."""
    t = value if torch.is_tensor(value) else torch.full((), value, dtype=torch.float64, device=env.device)
    if env.distributed:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()
