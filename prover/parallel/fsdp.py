"""Expert parallelism composed with FSDP2, and the gradient-norm clipping that matches it.

The world of W ranks is a (W/ep) x ep mesh, dims `edp` and `ep`; an EP group is `ep` consecutive ranks (on
one host they share NVLink). Every rank trains on its own data, as in plain data parallelism.

- routed experts: split over `ep` (`expert_parallel.shard_experts`), then FSDP-sharded over `edp`, the
  ranks that hold the same experts. Their gradient divide factor is set to W, not W/ep: an expert's local
  gradient already sums the tokens of all `ep` ranks of its group (all-to-all backward), so dividing by W
  gives the same mean over all ranks' tokens that FSDP gives every dense parameter.
- everything else (attention, router, shared experts, dense MLPs, embeddings, head): FSDP2 over all W ranks,
  one unit per block (experts excluded: they are already their own unit), then the root.

Every parameter is then a DTensor whose local shards are disjoint across the W ranks, so the global gradient
norm is one all-reduce of the local sums of squares (`clip_grad_norm_`); torch's own clip cannot mix the two
meshes.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

from prover.errors import ProverError
from prover.parallel.expert_parallel import moe_layers, shard_experts


def units(model: nn.Module) -> list[nn.Module]:
    """FSDP units of a DeepSeekV3 (or of a pipeline stage: the same `layers` / `mtp` attributes): the decoder
    blocks, and of each MTP block the attention and the MoE. Not the whole MTP block: `DeepSeekV3._mtp_loss` calls
    its `enorm`/`hnorm`/`eh_proj`/`shared_head` directly, outside the block's forward, so FSDP would never
    all-gather them; they stay in the root unit."""
    out: list[nn.Module] = list(model.model.layers if hasattr(model, "model") else model.layers)
    for block in getattr(model, "mtp", []):
        out += [block.self_attn, block.mlp]
    return out


def parallelize(model: nn.Module, ep: int = 1, device: torch.device | str = "cpu",
                reshard_after_forward: bool = True) -> nn.Module:
    """Shard `model` (the same full weights on every rank, already on `device`) in place: experts over groups
    of `ep` ranks, FSDP2 for the rest. `ep=1` is plain FSDP2. Needs an initialized default process group."""
    from torch.distributed.device_mesh import init_device_mesh

    if not dist.is_initialized():
        raise ProverError(f"--ep {ep} needs several processes: launch with torchrun --nproc_per_node N (N a multiple"
                          f" of {ep})")
    world = dist.get_world_size()
    if ep < 1 or world % ep:
        raise ProverError(f"--ep {ep} must divide the number of processes ({world})")
    device_type = torch.device(device).type
    dense_mesh = init_device_mesh(device_type, (world,), mesh_dim_names=("dp",))
    expert_mesh = (init_device_mesh(device_type, (world // ep, ep), mesh_dim_names=("edp", "ep")) if ep > 1
                   else None)
    return shard(model, units(model), dense_mesh, expert_mesh, reshard_after_forward)


def shard(root: nn.Module, fsdp_units: list[nn.Module], dense_mesh, expert_mesh=None,
          reshard_after_forward: bool = True, ignored_params: set[nn.Parameter] | None = None) -> nn.Module:
    """FSDP2 over the 1-D `dense_mesh` (D ranks): each of `fsdp_units`, then `root`; with `expert_mesh` (dims
    `edp` x `ep`, the same D ranks) the routed experts under `root` first split over `ep` and FSDP-sharded over
    `edp`. `ignored_params` stay plain, replicated tensors whose gradients the caller reduces."""
    from torch.distributed.fsdp import fully_shard

    # MoE.forward returns a view (y.view(B, S, H)); Block.forward only uses it out of place (x + y), which is
    # what this FSDP2 warning asks for.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(FSDPMoE\) returned a view tensor")
    dp = dense_mesh.size()
    if expert_mesh is not None:
        shard_experts(root, expert_mesh["ep"].get_group())
        for moe in moe_layers(root):
            fully_shard(moe.experts, mesh=expert_mesh["edp"], reshard_after_forward=reshard_after_forward)
            moe.experts.set_gradient_divide_factor(float(dp))
            if expert_mesh["edp"].size() > 1:  # SUM then divide (gloo has no PREMUL_SUM); with one edp rank torch
                moe.experts.set_force_sum_reduction_for_comms(True)  # 2.13 would divide twice, so not there
    for unit in fsdp_units:
        fully_shard(unit, mesh=dense_mesh, reshard_after_forward=reshard_after_forward)
    kw = {"ignored_params": ignored_params} if ignored_params else {}
    fully_shard(root, mesh=dense_mesh, reshard_after_forward=reshard_after_forward, **kw)
    return root


@torch.no_grad()
def clip_grad_norm_(parameters: nn.Module | Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """torch's `clip_grad_norm_` (2-norm) for the models `parallelize` makes: scale all gradients so that their
    global norm is at most `max_norm`; returns the norm before clipping, a plain tensor equal on every rank.
    Takes a module or its parameters. Correct wherever each rank's local shards are disjoint (FSDP2 with or
    without EP) or nothing is sharded (one process); not for replicated DTensors (DDP-style meshes)."""
    norm, coef, groups = _norm_and_coef(parameters, max_norm)
    _scale(groups, coef)
    return norm


@torch.no_grad()
def clip_coefficient(parameters: nn.Module | Iterable[torch.Tensor], max_norm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`clip_grad_norm_` without the scaling: (norm, coefficient) for an optimizer that scales the gradients
    inside its own update (`MasterWeightAdamW.step(grad_scale=...)`), saving a pass over every gradient."""
    norm, coef, _ = _norm_and_coef(parameters, max_norm)
    return norm, coef


def _norm_and_coef(parameters, max_norm: float):
    params = parameters.parameters() if isinstance(parameters, nn.Module) else parameters
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(()), torch.ones(()), {}
    groups = _local_groups(grads)
    sq = _sq_sum(groups)
    if dist.is_initialized() and any(hasattr(g, "to_local") for g in grads):
        dist.all_reduce(sq)
    norm = sq.sqrt()
    return norm, _coefficient(norm, max_norm), groups


def _coefficient(norm: torch.Tensor, max_norm: float) -> torch.Tensor:
    return (max_norm / (norm + 1e-6)).clamp(max=1.0)


def _scale(groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]], coef: torch.Tensor) -> None:
    for (dev, _), gs in groups.items():
        torch._foreach_mul_(gs, coef.to(dev))


def _local_groups(grads: list[torch.Tensor]) -> dict[tuple[torch.device, torch.dtype], list[torch.Tensor]]:
    """The local shards of `grads` by (device, dtype): a foreach list mixing dtypes falls back to one launch per
    tensor."""
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for g in grads:
        g = g.to_local() if hasattr(g, "to_local") else g
        groups.setdefault((g.device, g.dtype), []).append(g.detach())
    return groups


def _sq_sum(groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]]) -> torch.Tensor:
    if not groups:
        return torch.zeros(())
    device = next(iter(groups))[0]
    return torch.stack([torch.stack(torch._foreach_norm(gs, 2.0, dtype=torch.float32)).pow(2).sum().to(device)
                        for gs in groups.values()]).sum()


def grad_sq_sum(grads: list[torch.Tensor]) -> torch.Tensor:
    """Sum of squares of this rank's (local shards of) `grads`, fp32; zero for none. No communication."""
    return _sq_sum(_local_groups(grads))


def scale_grads_(grads: list[torch.Tensor], norm: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Scale `grads` (their local shards) so that a global norm `norm` becomes at most `max_norm`; returns `norm`."""
    _scale(_local_groups(grads), _coefficient(norm, max_norm))
    return norm
