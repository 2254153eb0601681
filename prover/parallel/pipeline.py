"""DualPipe pipeline parallelism for the DeepSeek-V3 model, on `torch.distributed.pipelining`'s
`ScheduleDualPipeV` (DeepSeek-V3's DualPipe in its V-shaped form: half the ranks, the same bubble).

The model is cut into 2 x pp stages, rank r running stages r and 2pp-1-r (the "V"), so rank 0 holds both the
first stage (embedding) and the last (final norm, head, MTP, loss): the MTP module reuses the embedding and the
head where they live, and the token ids, mask and labels travel down the pipeline beside the hidden states (no
gradient flows through them). The last stage returns the trainer's own weighted loss (the model's loss, MTP
included, times this micro-batch's share of the step's completion tokens), so the pipeline's gradient is the
one `prover.train.sft` computes in one process. A rank keeps only its stages' parameters; the rest of the model
is dropped to the meta device, and `full_state_dict` gathers the whole model on rank 0 for checkpoints.
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
        self.token_scale = 1.0  # set per step: world size / completion tokens of the whole step
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
        n_tok = int((labels != IGNORE).sum())
        if n_tok == 0:  # nothing to learn here (the trainer skips such micro-batches): a zero, not 0 * NaN
            return (hidden.sum() * 0.0).reshape(1)
        self.sums.append((loss.detach() * n_tok, None if mtp is None else mtp.detach() * n_tok, n_tok))
        return (loss * (n_tok * self.token_scale)).reshape(1)  # [1]: the schedule concatenates the outputs


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
    """The local half of a V-shaped pipeline over `group` (default: the world), ready to run training steps.

        pipe = Pipeline(model, n_microbatches=8, microbatch=(2, 2048))   # every rank: the same full model
        metrics = pipe.step(input_ids, attention_mask, labels, global_tokens)   # forward + backward
        optimizer over pipe.parameters(); pipe.full_state_dict() for checkpoints (rank 0 gets it)
    """

    def __init__(self, model: nn.Module, n_microbatches: int, microbatch: tuple[int, int],
                 device: torch.device | str = "cpu", group: dist.ProcessGroup | None = None,
                 schedule: str = "dualpipev"):
        from torch.distributed.pipelining import PipelineStage

        if not dist.is_initialized():
            raise ProverError("--pp needs several processes: launch with torchrun --nproc_per_node N")
        if model.config.aux_loss_alpha > 0:
            raise ProverError("--pp does not compute the sequence-wise balance loss (aux_loss_alpha > 0); the "
                              "aux-loss-free bias update works")
        self.group = group or dist.group.WORLD
        self.pp = dist.get_world_size(self.group)
        self.rank = dist.get_rank(self.group)
        self.num_stages = 2 * self.pp
        if n_microbatches < self.num_stages:
            raise ProverError(f"--pp {self.pp} runs {self.num_stages} stages and needs at least that many "
                              f"micro-batches per step; got {n_microbatches} (raise --grad-accum)")
        self.model, self.device, self.n_microbatches = model, torch.device(device), n_microbatches
        layout = stage_layers(model.config.num_hidden_layers, self.num_stages)
        self.stages = [Stage(model, s, self.num_stages, layout[s]) for s in v_stages(self.rank, self.pp)]
        self.local = nn.ModuleList(self.stages)
        self._drop_other_stages()
        pipe_stages = [PipelineStage(st, st.index, self.num_stages, self.device, group=self.group,
                                     **self._shapes(st, microbatch)) for st in self.stages]
        cls, self.note = _schedule_class(schedule)
        # scale_grads=False: the last stage already weights each micro-batch by its share of the step's tokens.
        self.schedule = cls(pipe_stages, n_microbatches=n_microbatches, loss_fn=lambda out, _target: out.sum(),
                            scale_grads=False)
        self.schedule_name = cls.__name__

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

    def full_optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
        """The optimizer's state of every rank, keyed by parameter name (`torch.distributed.checkpoint`'s full
        layout) on rank 0; None elsewhere. Every rank calls it."""
        names = self._names()
        local = {names[id(p)]: {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in st.items()}
                 for p, st in optimizer.state.items()}
        gathered: list[dict[str, Any] | None] = [None] * self.pp if self.rank == 0 else None
        dist.gather_object(local, gathered, dst=dist.get_global_rank(self.group, 0), group=self.group)
        if self.rank != 0:
            return None
        state = {k: v for part in gathered for k, v in part.items()}
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": sorted(state)}
                  for g in optimizer.param_groups]
        return {"state": state, "param_groups": groups}

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, full: dict[str, Any]) -> None:
        """This rank's share of a `full_optimizer_state` (as saved) into `optimizer`."""
        names = self._names()
        params = [p for g in optimizer.param_groups for p in g["params"]]
        state = {i: full["state"][names[id(p)]] for i, p in enumerate(params) if names[id(p)] in full["state"]}
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": list(range(len(params)))}
                  for g in full["param_groups"][:1]]
        optimizer.load_state_dict({"state": state, "param_groups": groups})

    def step(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
             global_tokens: float, world_size: int = 1) -> dict[str, float]:
        """One forward + backward over `n_microbatches` equal chunks of the batch (all ranks call it; only rank 0
        needs real tensors, the others may pass the same). Returns, on rank 0, the loss sums of the step."""
        last = next((s for s in self.stages if s.last), None)
        for st in self.stages:
            st.token_scale = world_size / global_tokens
            st.sums = []
        inputs = (input_ids.to(self.device), attention_mask.to(self.device), labels.to(self.device))
        if any(s.first for s in self.stages):
            self.schedule.step(*inputs, target=labels.to(self.device), losses=[])
        else:
            self.schedule.step(target=labels.to(self.device), losses=[])
        if last is None:
            return {}
        out = {"loss_sum": float(sum(float(s[0]) for s in last.sums))}
        if last.sums and last.sums[0][1] is not None:
            out["mtp_sum"] = float(sum(float(s[1]) for s in last.sums))
        return out

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Scale every stage's gradients so that the global norm (over all ranks' disjoint parameters) is at most
        `max_norm`; returns the norm before clipping, equal on every rank."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        sq = (torch.stack(torch._foreach_norm(grads, 2.0, dtype=torch.float32)).pow(2).sum() if grads
              else torch.zeros((), device=self.device))
        dist.all_reduce(sq, group=self.group)
        norm = sq.sqrt()
        if grads:
            torch._foreach_mul_(grads, (max_norm / (norm + 1e-6)).clamp(max=1.0).to(grads[0].device))
        return norm

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
        local = {k: v.detach().cpu() for k, v in self.model.state_dict(keep_vars=True).items()
                 if id(v) in mine}
        gathered: list[dict[str, torch.Tensor] | None] = [None] * self.pp if self.rank == 0 else None
        dist.gather_object(local, gathered, dst=dist.get_global_rank(self.group, 0), group=self.group)
        if self.rank != 0:
            return {}
        full: dict[str, torch.Tensor] = {}
        for part in gathered:
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
