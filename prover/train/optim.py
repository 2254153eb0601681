"""AdamW with fp32 master weights for low-precision (bf16) parameters: DeepSeek-V3's recipe (the model computes in
bf16; the optimizer keeps fp32 master weights, moments in fp32 (the default) or in bf16 as the paper does, and
writes the rounded update back).

The rule: an fp32 parameter is its own master, so for an fp32 model this is exactly `torch.optim.AdamW` (same
functional kernel, same state layout). State lives under the model's parameters (`state[p]["master"]`), so
`torch.distributed.checkpoint` and the expert-parallel gather see it like any other optimizer state.

`compiled=True` runs the bf16 parameters' update through torch.compile: one fused pass per tensor that reads the
bf16 gradient, the master and the moments and writes them back with the bf16 parameter. torch's fused AdamW takes
one dtype for all of them, so without it the step casts every gradient to fp32 and copies every master back, three
passes over memory where one does (written here because no library fuses a mixed-precision AdamW). Compiling that
one graph over every tensor takes about 0.5 s per tensor (minutes for a model); `per_tensor=True` compiles the
update for all sizes (a static graph, then one with dynamic sizes) and calls it per tensor (seconds to compile, a
compiled call per tensor on the host each step: on the H200 29 ms of host work a step against 10 ms for the one
graph, `bench/train_gpu.py`'s `bf16-pt` row).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.adamw import adamw


class MasterWeightAdamW(torch.optim.AdamW):
    """`torch.optim.AdamW` (no amsgrad) whose update runs on fp32 copies of non-fp32 parameters."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, foreach: bool | None = None, fused: bool | None = None,
                 compiled: bool = False, moment_dtype: torch.dtype = torch.float32, per_tensor: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=foreach,
                         fused=fused)
        if moment_dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"moment_dtype must be float32 or bfloat16, not {moment_dtype}")
        if moment_dtype != torch.float32 and not compiled:  # torch's AdamW kernels take one dtype for all states
            raise ValueError("bf16 moments need compiled=True (the mixed-precision update)")
        if per_tensor and not compiled:
            raise ValueError("per_tensor is a way of compiling the update: it needs compiled=True")
        self.compiled = compiled
        self.per_tensor = per_tensor  # one compiled update for every size, called per tensor
        self.moment_dtype = moment_dtype  # of low-precision parameters' moments; an fp32 parameter's stay fp32
        self._update = None  # the compiled `master_adamw_` (made on the first step)
        # Each group's lr on the device, a kernel argument: a changing float would recompile; a captured step
        # (`prover.train.step_graph`) reads it, refilled by `load_lr` before each replay.
        self._lr: dict[tuple[int, torch.device], torch.Tensor] = {}

    def _state(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state = self.state[p]
        if not state:  # as Adam._init_group lays it out; masters fp32, moments fp32 or `moment_dtype`
            master = p if p.dtype == torch.float32 else p.detach().float()
            on_device = group["fused"] or group["capturable"] or (self.compiled and master is not p)
            state["step"] = (torch.zeros((), dtype=torch.float32, device=p.device) if on_device
                             else torch.tensor(0.0, dtype=torch.float32))
            moments = torch.float32 if master is p else self.moment_dtype
            state["exp_avg"] = torch.zeros_like(master, dtype=moments, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(master, dtype=moments, memory_format=torch.preserve_format)
            if master is not p:
                state["master"] = master
        return state

    @torch.no_grad()
    def step(self, closure=None, grad_scale: torch.Tensor | None = None):
        """One AdamW step; `grad_scale` (a 0-dim tensor, e.g. `clip_coefficient`'s) multiplies every gradient
        first, inside the compiled update where there is one (the gradients themselves are left as they are)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            if group["amsgrad"]:
                raise ValueError("MasterWeightAdamW does not implement amsgrad")
            masters, grads, exp_avgs, exp_avg_sqs, steps, low = [], [], [], [], [], []
            compiled: list[list[torch.Tensor]] = [[], [], [], [], [], []]  # `master_adamw_`'s lists
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._state(p, group)
                master = state.get("master", p)
                if self.compiled and master is not p:
                    for lst, t in zip(compiled, (p, p.grad, master, state["exp_avg"], state["exp_avg_sq"],
                                                  state["step"]), strict=True):
                        lst.append(t)
                    continue
                masters.append(master)
                grad = p.grad if p.grad.dtype == master.dtype else p.grad.to(master.dtype)
                grads.append(grad if grad_scale is None else grad * grad_scale.to(grad.device, grad.dtype))
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                steps.append(state["step"])
                if master is not p:
                    low.append((p, master))
            beta1, beta2 = group["betas"]
            if compiled[0]:
                self._compiled_step(compiled, index, group, grad_scale)
            if not masters:
                continue
            adamw(masters, grads, exp_avgs, exp_avg_sqs, [], steps, foreach=group["foreach"],
                  capturable=group["capturable"], differentiable=False, fused=group["fused"],
                  grad_scale=None, found_inf=None, has_complex=False, amsgrad=False, beta1=beta1, beta2=beta2,
                  lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"])
            if low:  # round the fp32 result into the bf16 parameters the model computes with (FSDP2 shards: their
                # local tensors; DTensor has no foreach copy)
                local = [tuple(t.to_local() if hasattr(t, "to_local") else t for t in pm) for pm in low]
                torch._foreach_copy_([p for p, _ in local], [m for _, m in local])
        return loss

    def load_lr(self) -> None:
        """Each group's current lr into the device tensor its compiled update reads: what a replayed CUDA graph
        of the step needs first (a capture records the update reading the tensor, not the fill)."""
        for (index, _), lr in self._lr.items():
            lr.fill_(self.param_groups[index]["lr"])

    def _compiled_step(self, lists: list[list[torch.Tensor]], index: int, group: dict[str, Any],
                       grad_scale: torch.Tensor | None) -> None:
        if self._update is None:
            # per_tensor: sizes go dynamic on the second shape (automatic dynamic shapes), while the float
            # hyperparameters stay constants; `dynamic=True` made them graph inputs, copied to the GPU per tensor
            # and step (1,397 host syncs a step on the H200 then, 3.7 now; docs/BENCHMARKS.md)
            self._update = torch.compile(master_adamw_, fullgraph=True, dynamic=None if self.per_tensor else False)
        device = lists[0][0].device
        if (index, device) not in self._lr:
            self._lr[(index, device)] = torch.zeros((), dtype=torch.float32, device=device)
        lr = self._lr[(index, device)]
        if not (device.type == "cuda" and torch.cuda.is_current_stream_capturing()):
            lr.fill_(group["lr"])  # a kernel argument: no host-to-device copy, no wait
        scale = (torch.ones((), dtype=torch.float32, device=device) if grad_scale is None
                 else grad_scale.to(device, torch.float32))
        torch._foreach_add_(lists[5], 1.0)
        beta1, beta2 = group["betas"]
        # Elementwise, so FSDP2's shards update as plain local tensors.
        local = [[t.to_local() if hasattr(t, "to_local") else t for t in lst] for lst in lists]
        if not self.per_tensor:
            self._update(*local, lr, scale, beta1, beta2, group["eps"], group["weight_decay"])
            return
        for p, g, master, m, v, step in zip(*local, strict=True):  # flat views: one graph whatever the shape
            self._update([p.view(-1)], [g.reshape(-1)], [master.view(-1)], [m.view(-1)], [v.view(-1)], [step], lr,
                         scale, beta1, beta2, group["eps"], group["weight_decay"])

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch casts loaded state to each parameter's dtype; master weights stay fp32, moments in their dtype."""
        kept = {pid: {k: v for k, v in s.items() if torch.is_tensor(v) and k != "step" and v.is_floating_point()}
                for pid, s in state_dict["state"].items()}
        super().load_state_dict(state_dict)
        ids = [pid for g in state_dict["param_groups"] for pid in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        for pid, p in zip(ids, params, strict=True):
            for k, v in kept.get(pid, {}).items():
                low_moment = k != "master" and p.dtype != torch.float32
                self.state[p][k] = v.to(device=p.device, dtype=self.moment_dtype if low_moment else torch.float32)
            if self.compiled and "step" in self.state[p] and p.dtype != torch.float32:
                self.state[p]["step"] = self.state[p]["step"].to(p.device)


def master_adamw_(params: list[torch.Tensor], grads: list[torch.Tensor], masters: list[torch.Tensor],
                  exp_avgs: list[torch.Tensor], exp_avg_sqs: list[torch.Tensor], steps: list[torch.Tensor],
                  lr: torch.Tensor, grad_scale: torch.Tensor, beta1: float, beta2: float, eps: float,
                  weight_decay: float) -> None:
    """One AdamW step (torch's formula, `steps` already incremented) on fp32 `masters` from `grads` of any dtype
    times `grad_scale`, moments kept in their own dtype, the result rounded into `params`. Plain tensor code:
    compiled, each tensor's update is one fused kernel."""
    for i in range(len(params)):  # (dynamo traces an index loop; the lists are equally long)
        g32 = grads[i].float() * grad_scale
        m32 = exp_avgs[i].float().lerp(g32, 1 - beta1)
        v32 = exp_avg_sqs[i].float() * beta2 + (1 - beta2) * g32 * g32
        denom = v32.sqrt() / (1 - beta2 ** steps[i]).sqrt() + eps
        w32 = masters[i] * (1 - lr * weight_decay) - (lr / (1 - beta1 ** steps[i])) * (m32 / denom)
        exp_avgs[i].copy_(m32)
        exp_avg_sqs[i].copy_(v32)
        masters[i].copy_(w32)
        params[i].copy_(w32)
