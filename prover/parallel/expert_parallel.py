"""Expert parallelism for DeepSeekMoE: the routed experts of every MoE layer are split over the ranks of an
expert-parallel (EP) group, rank r holding experts [r*E/ep, (r+1)*E/ep); the router, the shared experts and
everything else stay replicated.

A layer's forward on each rank (its own tokens, routed by its own replica of the router):

1. sort the token copies by expert (= by owning rank, experts being contiguous per rank);
2. exchange the per-expert counts (one small all-to-all), so every rank knows the variable split sizes;
3. dispatch: `all_to_all_single` the token rows to their experts' ranks;
4. run the local experts on what arrived with the model's own fast path (`moe.experts_sorted`);
5. combine: `all_to_all_single` the outputs back, un-sort, and weight by the router's scores locally (so
   the router's gradient never crosses ranks).

Dispatch and combine are one autograd Function (`all_to_all`) whose backward is the all-to-all with the
splits swapped, so an expert's gradient on its owner is the sum over every rank's tokens that reached it.
`ExpertParallelExperts` is a drop-in for `moe.RoutedExperts` (same call signature, same parameter names,
`num_experts` still the global E), so `MoE.forward`, the bias balancing and the checkpoint names are unchanged.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn

from prover.errors import ProverError
from prover.model.moe import MoE, RoutedExperts, experts_reference, experts_sorted, resolve_impl


class CommTimer:
    """Time spent inside the dispatch/combine all-to-alls (forward and backward) and the count exchange:
    CUDA events on the current stream on GPU (so it is the time compute waits for communication), wall clock
    on CPU. `seconds()` synchronizes; call it once per step, then `reset()`."""

    def __init__(self) -> None:
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._cpu_s = 0.0
        self.calls = 0

    @contextlib.contextmanager
    def span(self, device: torch.device) -> Iterator[None]:
        self.calls += 1
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._events.append((start, end))
        else:
            t0 = time.perf_counter()
            yield
            self._cpu_s += time.perf_counter() - t0

    def seconds(self) -> float:
        if self._events:
            self._events[-1][1].synchronize()
        return self._cpu_s + sum(s.elapsed_time(e) for s, e in self._events) / 1000.0

    def reset(self) -> None:
        self._events.clear()
        self._cpu_s = 0.0
        self.calls = 0


def _exchange(x: torch.Tensor, out_splits: list[int], in_splits: list[int], group: dist.ProcessGroup,
              timer: CommTimer | None) -> torch.Tensor:
    out = x.new_empty((sum(out_splits), *x.shape[1:]))
    with timer.span(x.device) if timer is not None else contextlib.nullcontext():
        dist.all_to_all_single(out, x.contiguous(), out_splits, in_splits, group=group)
    return out


class _AllToAll(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, out_splits, in_splits, group, timer):  # noqa: D102 (autograd signature)
        ctx.splits, ctx.group, ctx.timer = (out_splits, in_splits), group, timer
        return _exchange(x, out_splits, in_splits, group, timer)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        out_splits, in_splits = ctx.splits
        return _exchange(grad, in_splits, out_splits, ctx.group, ctx.timer), None, None, None, None


def all_to_all(x: torch.Tensor, out_splits: list[int], in_splits: list[int], group: dist.ProcessGroup,
               timer: CommTimer | None = None) -> torch.Tensor:
    """Differentiable `all_to_all_single` along dim 0: rows [sum(in_splits[:j]), +in_splits[j]) go to rank j
    of `group`; the result holds out_splits[i] rows from rank i, in rank order."""
    return _AllToAll.apply(x, out_splits, in_splits, group, timer)


class ExpertParallelExperts(RoutedExperts):
    """This rank's slice of a layer's routed experts; computes every rank's tokens routed to them.

    Parameters keep `RoutedExperts`' names and layout, sliced on dim 0: `gate_up_proj` [E/ep, 2I, H],
    `down_proj` [E/ep, H, I]. `first_expert` is the global index of local expert 0."""

    def __init__(self, gate_up_proj: torch.Tensor, down_proj: torch.Tensor, num_experts: int,
                 group: dist.ProcessGroup):
        nn.Module.__init__(self)  # not RoutedExperts.__init__: that would allocate all E experts
        self.group = group
        self.ep_size = dist.get_world_size(group)
        self.ep_rank = dist.get_rank(group)
        self.num_experts = num_experts
        self.num_local = num_experts // self.ep_size
        self.first_expert = self.ep_rank * self.num_local
        self.gate_up_proj = nn.Parameter(gate_up_proj)
        self.down_proj = nn.Parameter(down_proj)
        self.timer: CommTimer | None = None

    @classmethod
    def from_full(cls, experts: RoutedExperts, group: dist.ProcessGroup) -> ExpertParallelExperts:
        ep, E = dist.get_world_size(group), experts.num_experts
        if E % ep:
            raise ProverError(f"expert parallelism: {E} routed experts do not split over --ep {ep} ranks")
        n, first = E // ep, dist.get_rank(group) * (E // ep)
        take = slice(first, first + n)
        local = cls(experts.gate_up_proj.data[take].clone(), experts.down_proj.data[take].clone(), E, group)
        local.fp8 = experts.fp8
        return local

    def extra_repr(self) -> str:
        return f"experts {self.first_expert}..{self.first_expert + self.num_local - 1} of {self.num_experts}"

    def forward(self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor, counts: torch.Tensor,
                impl: str = "auto") -> torch.Tensor:
        """Same contract as `RoutedExperts.forward`: x [T, H], indices/weights [T, K] (global expert ids),
        counts [E] this rank's token copies per expert -> [T, H] weighted sum of the K expert outputs."""
        T, K = indices.shape
        ep, L = self.ep_size, self.num_local
        if torch.is_autocast_enabled(x.device.type):  # the expert GEMMs would cast to it anyway: send half the bytes
            x = x.to(torch.get_autocast_dtype(x.device.type))
        order = indices.reshape(-1).argsort(stable=True)  # copies sorted by expert, hence by owning rank
        with self.timer.span(x.device) if self.timer is not None else contextlib.nullcontext():
            recv_counts = torch.empty_like(counts)  # [ep * L]: from rank s, copies for each local expert
            dist.all_to_all_single(recv_counts, counts.contiguous(), group=self.group)
            splits = torch.cat((counts.view(ep, L).sum(1), recv_counts.view(ep, L).sum(1))).tolist()  # host sync
        send_splits, recv_splits = splits[:ep], splits[ep:]
        tokens = all_to_all(x[order // K], recv_splits, send_splits, self.group, self.timer)
        local_ids = torch.arange(L, device=x.device).repeat(ep).repeat_interleave(recv_counts, output_size=sum(recv_splits))
        out = self._local_experts(tokens, local_ids, recv_counts.view(ep, L).sum(0), impl)
        back = all_to_all(out, send_splits, recv_splits, self.group, self.timer)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(T * K, device=x.device)
        y = back[inverse].view(T, K, -1)  # (token, slot) order again
        # a sum, not bmm(...).squeeze(1): FSDP2 warns about (and cannot hook in-place ops on) returned views
        return (y * weights.to(y.dtype).unsqueeze(-1)).sum(1)

    def _local_experts(self, tokens: torch.Tensor, local_ids: torch.Tensor, local_counts: torch.Tensor,
                       impl: str) -> torch.Tensor:
        """SwiGLU of each received row through its local expert (unweighted: weights apply after combine)."""
        ids = local_ids.unsqueeze(1)
        ones = torch.ones(ids.shape, dtype=tokens.dtype, device=tokens.device)
        if impl == "reference":
            return experts_reference(tokens, ids, ones, self.gate_up_proj, self.down_proj)
        impl = resolve_impl(impl, tokens, self.fp8)
        gate_up, down = self.gate_up_proj, self.down_proj
        if gate_up.dtype != tokens.dtype:  # autocast does not cover torch._grouped_mm: cast as it would
            gate_up, down = gate_up.to(tokens.dtype), down.to(tokens.dtype)
        return experts_sorted(tokens, ids, ones, gate_up, down, local_counts, impl)


# ------------------------------------------------------------------------------------------- model level
def moe_layers(model: nn.Module) -> list[MoE]:
    return [m for m in model.modules() if isinstance(m, MoE)]


def shard_experts(model: nn.Module, group: dist.ProcessGroup) -> nn.Module:
    """Replace every MoE layer's routed experts by this rank's slice (in place; works on a meta-device model).
    All ranks of `group` must hold the same full weights (same checkpoint or same seed) beforehand."""
    for m in moe_layers(model):
        if not isinstance(m.experts, ExpertParallelExperts):
            m.experts = ExpertParallelExperts.from_full(m.experts, group)
    return model


def expert_modules(model: nn.Module) -> list[tuple[str, ExpertParallelExperts]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, ExpertParallelExperts)]


def set_comm_timer(model: nn.Module, timer: CommTimer | None) -> None:
    for _, m in expert_modules(model):
        m.timer = timer


EXPERT_PARAMS = ("gate_up_proj", "down_proj")


def gather_rows(m: ExpertParallelExperts, t: torch.Tensor, keep: bool) -> torch.Tensor | None:
    """A per-expert tensor of layer `m` ([E/ep, ...], maybe FSDP-sharded) made whole ([E, ...], CPU) where
    `keep`. Collective over `m`'s EP group (and FSDP's mesh)."""
    local = t.detach()
    if hasattr(local, "full_tensor"):  # FSDP-sharded over the orthogonal data-parallel dim
        local = local.full_tensor()
    parts = [torch.empty_like(local) for _ in range(m.ep_size)]
    dist.all_gather(parts, local.contiguous(), group=m.group)
    return torch.cat(parts).cpu() if keep else None


def gather_expert_weights(model: nn.Module, dst: int | None = 0) -> dict[str, torch.Tensor]:
    """Full [E, ...] routed-expert tensors under their state-dict names, on the CPU, gathered over each layer's
    EP group (and over FSDP's shards first). Every rank must call it; returns them on global rank `dst` (every
    rank with dst=None), else {}. Names are `model.state_dict()`'s, with wrapper prefixes removed."""
    out: dict[str, torch.Tensor] = {}
    keep = dst is None or dist.get_rank() == dst
    for name, m in expert_modules(model):
        for pname in EXPERT_PARAMS:
            full = gather_rows(m, getattr(m, pname), keep)
            if keep:
                out[clean_name(f"{name}.{pname}")] = full
    return out


_WRAPPERS = {"_orig_mod", "_checkpoint_wrapped_module", "module"}


def clean_name(name: str) -> str:
    """State-dict name as the unwrapped model has it (drops torch.compile / checkpoint / DDP wrapper parts)."""
    return ".".join(part for part in name.split(".") if part not in _WRAPPERS)
