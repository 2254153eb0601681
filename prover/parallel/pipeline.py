"""DualPipe pipeline parallelism for the DeepSeek-V3 model, on `torch.distributed.pipelining`'s
`ScheduleDualPipeV` (DeepSeek-V3's DualPipe in its V-shaped form: half the ranks, the same bubble).

The model is cut into 2 x pp stages, rank r running stages r and 2pp-1-r (the "V"), so rank 0 holds both the
first stage (embedding) and the last (final norm, head, MTP, loss): the MTP module reuses the embedding and the
head where they live, and the token ids, mask and labels travel down the pipeline beside the hidden states (no
gradient flows through them). The last stage returns the trainer's own weighted loss (the model's loss, MTP
included, times this micro-batch's share of the step's completion tokens), so the pipeline's gradient is the
one `prover.train.sft` computes in one process. A rank keeps only its stages' parameters; the rest of the model
is dropped to the meta device, and `full_state_dict` gathers the whole model on rank 0 for checkpoints.

On pp x dp processes each pipeline's stages are FSDP2-sharded over their dp replicas (experts split over ep of
them), except the embedding: it sits in two stages of one rank, which FSDP cannot share, so it stays replicated
and its gradient is averaged by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from prover.errors import ProverError

IGNORE = -100


def stage_layers(num_layers: int, num_stages: int) -> list[list[int]]:
    """Decoder layers of each stage, in order, as even as possible (earlier stages take the remainder)."""
    base, extra = divmod(num_layers, num_stages)
    out, start = [], 0
    for s in range(num_stages):
        n = base + (1 if s < extra else 0)
        out.append(list(range(start, start + n)))
        start += n
    return out


def v_stages(rank: int, pp: int) -> tuple[int, int]:
    """The two stages rank `rank` of `pp` runs in the V layout."""
    return rank, 2 * pp - 1 - rank


class Stage(nn.Module):
    """Stage `index` of `num_stages` of a DeepSeekV3: its decoder layers, plus the embedding on the first stage and
    the final norm, head and MTP modules on the last. Inputs/outputs: (hidden or, first stage, nothing), input_ids,
    attention_mask, labels; the last stage returns the weighted loss."""

    def __init__(self, model: nn.Module, index: int, num_stages: int, layers: list[int]):
        super().__init__()
        self.index, self.first, self.last = index, index == 0, index == num_stages - 1
        self.layers = nn.ModuleList(model.model.layers[i] for i in layers)
        if self.first or self.last:
            self.embed_tokens = model.model.embed_tokens  # the last stage's MTP embeds shifted tokens too
        if self.last:
            self.norm, self.lm_head, self.mtp = model.model.norm, model.lm_head, model.mtp
        self._model = [model]  # not a submodule: its other parameters belong to other stages
        self.token_scale = 1.0  # set per step: dp replicas / completion tokens of the whole step (all replicas)
        self.sums: list[tuple[torch.Tensor, torch.Tensor | None, int]] = []  # (loss, mtp loss, tokens) per mb

    def forward(self, *args: torch.Tensor) -> Any:
        model = self._model[0]
        if self.first:
            input_ids, attention_mask, labels = args
            h = self.embed_tokens(input_ids)
        else:
            h, input_ids, attention_mask, labels = args
        B, S = input_ids.shape
        # The trainer's batches are right-padded (`collate`): plain causal attention, the mask marks load only
        # (as `DeepSeekV3.forward(right_padded=True)`).
        position_ids = torch.arange(S, device=input_ids.device).unsqueeze(0).expand(B, S)
        mask = model._mask(B, S, 0, None, input_ids.device)
        from prover.model.attention import rope_cos_sin

        cos, sin = rope_cos_sin(model.inv_freq, model.rope_scale, position_ids)
        token_mask = attention_mask.bool()
        for layer in self.layers:
            h, _ = layer(h, cos, sin, mask, None, token_mask)
        if not self.last:  # fresh tensors: the pipeline cannot pass its receive buffers on as outputs
            return h, input_ids.clone(), attention_mask.clone(), labels.clone()
        from prover.model.model import causal_lm_loss

        hidden = self.norm(h)
        loss = causal_lm_loss(self.lm_head(hidden), labels)
        mtp = None
        if len(self.mtp) and model.config.mtp_loss_weight > 0:
            mtp, _ = model._mtp_loss(hidden, input_ids, labels, attention_mask, position_ids, right_padded=True)
            loss = loss + model.config.mtp_loss_weight * mtp
        n_tok = int((labels[:, 1:] != IGNORE).sum())  # the loss's tokens: the first label is never predicted
        if n_tok == 0:  # nothing to learn here (the trainer skips such micro-batches): a zero, not 0 * NaN
            return (hidden.sum() * 0.0).reshape(1).clone()
        self.sums.append((loss.detach() * n_tok, None if mtp is None else mtp.detach() * n_tok, n_tok))
        # [1]: the schedule concatenates the outputs; a copy, not a view (FSDP2 cannot hook a returned view)
        return (loss * (n_tok * self.token_scale)).reshape(1).clone()


def _schedule_class(name: str):
    from torch.distributed.pipelining import schedules

    if name == "dualpipev":
        cls = getattr(schedules, "ScheduleDualPipeV", None)
        if cls is not None:
            return cls, None
        # torch < 2.9 has no DualPipeV; ZBV is the same V layout with the zero-bubble split backward.
        return schedules.ScheduleZBVZeroBubble, "this torch has no ScheduleDualPipeV: using ScheduleZBVZeroBubble"
    if name == "zbv":
        return schedules.ScheduleZBVZeroBubble, None
    raise ProverError(f"unknown pipeline schedule {name!r} (dualpipev, zbv)")


class Pipeline:
    """The local half of a V-shaped pipeline, ready to run training steps. The world of `pp` x `dp` processes is a
    (pp, dp) mesh (rank = pp_rank * dp + dp_rank): each pipeline rank's two stages are FSDP2-sharded over its `dp`
    replicas (each replica running its own micro-batches), their routed experts split over `ep` of them.

        pipe = Pipeline(model, n_microbatches=8, microbatch=(2, 2048), pp=2)   # every rank: the same full model
        metrics = pipe.step(input_ids, attention_mask, labels, global_tokens)   # forward + backward
        optimizer over pipe.parameters(); pipe.full_state_dict() for checkpoints (rank 0 gets it)
    """

    def __init__(self, model: nn.Module, n_microbatches: int, microbatch: tuple[int, int],
                 device: torch.device | str = "cpu", pp: int | None = None, ep: int = 1,
                 schedule: str = "dualpipev"):
        from torch.distributed.pipelining import PipelineStage

        if not dist.is_initialized():
            raise ProverError("--pp needs several processes: launch with torchrun --nproc_per_node N")
        if model.config.aux_loss_alpha > 0:
            raise ProverError("--pp does not compute the sequence-wise balance loss (aux_loss_alpha > 0); the "
                              "aux-loss-free bias update works")
        self.device = torch.device(device)
        self._mesh(pp or dist.get_world_size(), ep)
        self.num_stages = 2 * self.pp
        if n_microbatches < self.num_stages:
            raise ProverError(f"--pp {self.pp} runs {self.num_stages} stages and needs at least that many "
                              f"micro-batches per step; got {n_microbatches} (raise --grad-accum)")
        self.model, self.n_microbatches = model, n_microbatches
        layout = stage_layers(model.config.num_hidden_layers, self.num_stages)
        self.stages = [Stage(model, s, self.num_stages, layout[s]) for s in v_stages(self.rank, self.pp)]
        self.local = nn.ModuleList(self.stages)
        self._drop_other_stages()
        shapes = [self._shapes(st, microbatch) for st in self.stages]
        # The embedding is in both of rank 0's stages (the first embeds, the last's MTP embeds shifted tokens): FSDP
        # cannot put one module under two roots, so it stays replicated over dp and `step` averages its gradient.
        self.replicated = ({id(p) for st in self.stages if st.first or st.last for p in st.embed_tokens.parameters()}
                           if self.dp > 1 else set())
        if self.dp > 1:
            self._shard()
        pipe_stages = [PipelineStage(st, st.index, self.num_stages, self.device, group=self.group, **shape)
                       for st, shape in zip(self.stages, shapes, strict=True)]
        cls, self.note = _schedule_class(schedule)
        # scale_grads=False: the last stage already weights each micro-batch by its share of the step's tokens.
        self.schedule = cls(pipe_stages, n_microbatches=n_microbatches, loss_fn=lambda out, _target: out.sum(),
                            scale_grads=False)
        self.schedule_name = cls.__name__

    def _mesh(self, pp: int, ep: int) -> None:
        """Process groups: `group` (this rank's pipeline: the pp ranks with its dp rank), `dp_group` (the dp
        replicas of its stages; None without data parallelism) and the device meshes FSDP2 and EP shard over."""
        world = dist.get_world_size()
        if pp < 2:
            raise ProverError(f"--pp {pp}: a pipeline needs at least 2 ranks")
        if world % pp:
            raise ProverError(f"--pp {pp} must divide the number of processes ({world}): pp x dp processes")
        self.pp, self.dp, self.ep = pp, world // pp, ep
        if ep < 1 or self.dp % ep:
            raise ProverError(f"--ep {ep} must divide the data-parallel size {self.dp} (processes / --pp): experts "
                              "split over the replicas of a stage, never over its pipeline")
        self.dp_mesh = self.expert_mesh = None
        if self.dp == 1:
            self.group, self.dp_group = dist.group.WORLD, None
        else:
            from torch.distributed.device_mesh import init_device_mesh

            mesh = init_device_mesh(self.device.type, (pp, self.dp), mesh_dim_names=("pp", "dp"))
            self.group, self.dp_mesh = mesh["pp"].get_group(), mesh["dp"]
            self.dp_group = self.dp_mesh.get_group()
            if ep > 1:
                self.expert_mesh = init_device_mesh(self.device.type, (pp, self.dp // ep, ep),
                                                    mesh_dim_names=("pp", "edp", "ep"))
        self.rank = dist.get_rank(self.group)
        self.dp_rank = dist.get_rank(self.dp_group) if self.dp_group is not None else 0

    def _shard(self) -> None:
        """FSDP2 over dp for each stage (torchtitan's per-stage `fully_shard`), experts over ep. Parameters stay
        unsharded from a stage's first forward to its REDUCE_GRAD action (reshard_after_forward=False, torchtitan's
        choice for PP): no all-gather per micro-batch, and the split backward's weight pass (W) finds the very
        parameters its input pass (I) saw."""
        from torch.distributed.pipelining.stage import _PipelineStageBase

        from prover.parallel.fsdp import shard, units

        if not hasattr(_PipelineStageBase, "perform_reduce_grad"):
            raise ProverError(f"--pp with data parallelism needs torch's FSDP-aware pipeline stages (REDUCE_GRAD, "
                              f"torch >= 2.9); this torch is {torch.__version__}")
        for st in self.stages:
            shard(st, units(st), self.dp_mesh, self.expert_mesh, reshard_after_forward=False,
                  ignored_params={p for p in st.parameters() if id(p) in self.replicated})

    def _shapes(self, stage: Stage, microbatch: tuple[int, int]) -> dict[str, tuple[torch.Tensor, ...]]:
        """Static stage metadata (every step has the same micro-batch shape): no inference forward on the
        uninitialized buffers of a same-rank stage, whose token ids would index out of range."""
        rows, seq = microbatch
        ids = torch.empty(rows, seq, dtype=torch.long, device="meta")
        h = torch.empty(rows, seq, self.model.config.hidden_size, dtype=next(self.local.parameters()).dtype,
                        device="meta", requires_grad=True)  # the metadata says which tensors carry gradients
        carried = (h, ids, ids, ids)
        loss = torch.empty(1, dtype=torch.float32, device="meta", requires_grad=True)
        return {"input_args": (ids, ids, ids) if stage.first else carried,
                "output_args": loss if stage.last else carried}

    def _drop_other_stages(self) -> None:
        """Free what other ranks train: their decoder layers (and, off rank 0, embedding, norm, head, MTP)."""
        mine = {id(p) for p in self.local.parameters()}
        for mod in self.model.modules():
            direct = list(mod.parameters(recurse=False))
            if direct and not any(id(p) in mine for p in direct):
                mod.to("meta")

    @property
    def module(self) -> nn.Module:
        """The model (what `prover.train.common.unwrap` returns): its config and class for checkpoints."""
        return self.model

    def parameters(self) -> Iterator[nn.Parameter]:
        return self.local.parameters()

    def _names(self) -> dict[int, str]:
        mine = {id(p) for p in self.parameters()}
        return {id(p): n for n, p in self.model.named_parameters() if id(p) in mine}

    def _experts(self) -> dict[int, Any]:
        """id of each routed-expert parameter split over ep -> its `ExpertParallelExperts` module."""
        from prover.parallel.expert_parallel import EXPERT_PARAMS, expert_modules

        return {id(getattr(m, n)): m for _, m in expert_modules(self.local) for n in EXPERT_PARAMS}

    def _whole(self, t: torch.Tensor, experts: Any = None) -> torch.Tensor:
        """`t` (a parameter, buffer or optimizer moment of this rank's stages) whole on the CPU: gathered over dp
        (FSDP) and, for `experts`' tensors, over ep. Collective over this rank's dp group."""
        from prover.parallel.expert_parallel import gather_rows

        if experts is not None:
            return gather_rows(experts, t, keep=True)
        t = t.detach()
        return (t.full_tensor() if hasattr(t, "full_tensor") else t).cpu()

    def _gather(self, local: dict[str, Any]) -> list[dict[str, Any]] | None:
        """Every pipeline's dp-rank-0 share (others send nothing: they hold the same) on global rank 0."""
        gathered: list[dict[str, Any] | None] = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
        dist.gather_object(local if self.dp_rank == 0 else {}, gathered, dst=0)
        return gathered

    def full_optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
        """The optimizer's state of every rank, keyed by parameter name (`torch.distributed.checkpoint`'s full
        layout) on rank 0; None elsewhere. Every rank calls it."""
        names, experts = self._names(), self._experts()
        local = {}
        for p in (p for g in optimizer.param_groups for p in g["params"]):  # one order on every dp replica
            st = optimizer.state.get(p, {})
            local[names[id(p)]] = {k: self._whole(v, experts.get(id(p))) if torch.is_tensor(v) and v.dim() > 0
                                   else (v.detach().cpu() if torch.is_tensor(v) else v) for k, v in sorted(st.items())}
        gathered = self._gather(local)
        if dist.get_rank() != 0:
            return None
        state = {k: v for part in gathered for k, v in part.items() if v}
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": sorted(state)}
                  for g in optimizer.param_groups]
        return {"state": state, "param_groups": groups}

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, full: dict[str, Any]) -> None:
        """This rank's share of a `full_optimizer_state` (as saved) into `optimizer`: its stages, its experts'
        rows, its FSDP shard."""
        names, experts = self._names(), self._experts()
        params = [p for g in optimizer.param_groups for p in g["params"]]

        def local(p: torch.Tensor, v: Any) -> Any:
            if not torch.is_tensor(v) or v.dim() == 0:
                return v
            if (m := experts.get(id(p))) is not None:
                v = v[m.first_expert:m.first_expert + m.num_local]
            if hasattr(p, "device_mesh"):
                from torch.distributed.tensor import distribute_tensor

                return distribute_tensor(v.to(self.device), p.device_mesh, p.placements, src_data_rank=None)
            return v

        state = {i: {k: local(p, v) for k, v in full["state"][names[id(p)]].items()}
                 for i, p in enumerate(params) if names[id(p)] in full["state"]}
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": list(range(len(params)))}
                  for g in full["param_groups"][:1]]
        optimizer.load_state_dict({"state": state, "param_groups": groups})

    def step(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
             global_tokens: float) -> dict[str, float]:
        """One forward + backward over `n_microbatches` equal chunks of this replica's batch (all ranks call it;
        only pp rank 0 needs real tensors, the others may pass the same). `global_tokens`: completion tokens of the
        step over all dp replicas. Returns, on pp rank 0, this replica's loss sums."""
        last = next((s for s in self.stages if s.last), None)
        for st in self.stages:
            st.token_scale = self.dp / global_tokens  # FSDP averages over the dp replicas
            st.sums = []
        inputs = (input_ids.to(self.device), attention_mask.to(self.device), labels.to(self.device))
        if any(s.first for s in self.stages):
            self.schedule.step(*inputs, target=labels.to(self.device), losses=[])
        else:
            self.schedule.step(target=labels.to(self.device), losses=[])
        replicated = [p.grad for p in self.parameters() if id(p) in self.replicated and p.grad is not None]
        for g in replicated:  # the dp mean FSDP takes of every other gradient
            dist.all_reduce(g, group=self.dp_group)
            g.div_(self.dp)
        if last is None:
            return {}
        out = {"loss_sum": float(sum(float(s[0]) for s in last.sums))}
        if last.sums and last.sums[0][1] is not None:
            out["mtp_sum"] = float(sum(float(s[1]) for s in last.sums))
        return out

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Scale every stage's gradients so that the global norm (over all pp x dp x ep ranks' disjoint shards; the
        replicated embedding counted once) is at most `max_norm`; returns the norm before clipping, on every rank."""
        from prover.parallel.fsdp import grad_sq_sum, scale_grads_

        params = [p for p in self.parameters() if p.grad is not None]
        sq = grad_sq_sum([p.grad for p in params if id(p) not in self.replicated]).to(self.device)
        if self.dp_rank == 0:
            sq = sq + grad_sq_sum([p.grad for p in params if id(p) in self.replicated]).to(self.device)
        dist.all_reduce(sq)
        return scale_grads_([p.grad for p in params], sq.sqrt(), max_norm)

    def bubble(self) -> dict[str, float]:
        """The schedule's bubble: `schedule_bubble` of its own action lists, beside 1F1B's for the same sizes."""
        out = schedule_bubble(self.schedule.pipeline_order, self.num_stages)
        p, m = self.pp, self.n_microbatches
        out["bubble_1f1b_same_ranks"] = (p - 1) / (m + p - 1)  # 1F1B on pp ranks (one stage each), F = 1, B = 2
        return out

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The whole model's state dict (HF-layout names of `DeepSeekV3.state_dict`) on rank 0's CPU; {} elsewhere.
        Every rank calls it."""
        mine = {id(t) for t in [*self.local.parameters(), *self.local.buffers()]}
        experts = self._experts()
        local = {k: self._whole(v, experts.get(id(v))) for k, v in self.model.state_dict(keep_vars=True).items()
                 if id(v) in mine}
        return self._merge(self._gather(local))

    def full_grads(self) -> dict[str, torch.Tensor]:
        """Every parameter's gradient, whole, by name, on rank 0 ({} elsewhere); for checks. Every rank calls it."""
        names, experts = self._names(), self._experts()
        local = {names[id(p)]: self._whole(p.grad, experts.get(id(p))) for p in self.parameters()
                 if p.grad is not None}
        return self._merge(self._gather(local))

    @staticmethod
    def _merge(gathered: list[dict[str, Any]] | None) -> dict[str, Any]:
        full: dict[str, Any] = {}
        for part in gathered or []:
            full.update(part)
        return full


COST = {"F": 1.0, "I": 1.0, "W": 1.0, "B": 2.0}  # unit forward; a full backward is input + weight gradients


def schedule_bubble(order: dict[int, list[Any]], num_stages: int) -> dict[str, float]:
    """Replay each rank's action list with unit costs (F = I = W = 1, B = 2; an overlapped F&B costs the sum of its
    parts, as torch runs them one after the other) and the pipeline's dependencies (F after the previous stage's F;
    I/B after the same stage's F and the next stage's I/B; W after its I). Returns the makespan, each rank's idle
    share and their mean: the bubble the schedule leaves, not a timing."""
    done: dict[tuple[str, int, int], float] = {}
    clock = {r: 0.0 for r in order}
    busy = {r: 0.0 for r in order}
    queues = {r: [a for a in acts if a is not None] for r, acts in order.items()}

    def parts(action) -> list[Any]:
        return list(getattr(action, "sub_actions", None) or [action])

    def deps(a) -> list[tuple[str, int, int]]:
        kind, s, m = a.computation_type.value, a.stage_index, a.microbatch_index
        if kind == "F":
            return [("F", s - 1, m)] if s > 0 else []
        if kind in ("I", "B"):
            return [("F", s, m)] + ([("IB", s + 1, m)] if s < num_stages - 1 else [])
        if kind == "W":
            return [("IB", s, m)]
        return []

    while any(queues.values()):
        progressed = False
        for r, q in queues.items():
            while q:
                subs = [a for a in parts(q[0]) if a.computation_type.value in COST]
                need = [d for a in subs for d in deps(a)]
                if any(d not in done for d in need):
                    break
                start = max([clock[r], *(done[d] for d in need)])
                cost = sum(COST[a.computation_type.value] for a in subs)
                clock[r], busy[r] = start + cost, busy[r] + cost
                for a in subs:
                    kind = a.computation_type.value
                    done[("IB" if kind in ("I", "B") else kind, a.stage_index, a.microbatch_index)] = start + cost
                q.pop(0)
                progressed = True
        if not progressed:
            raise RuntimeError("pipeline schedule replay is stuck: an action waits on one that never runs")
    span = max(clock.values())
    idle = {r: 1 - busy[r] / span for r in order}
    return {"bubble_fraction": sum(idle.values()) / len(idle), "makespan_units": span,
            **{f"bubble_rank{r}": v for r, v in idle.items()}}
