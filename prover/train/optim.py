"""AdamW with fp32 master weights for low-precision (bf16) parameters: DeepSeek-V3's recipe (the model computes in
bf16; the optimizer keeps fp32 master weights and fp32 moments, and writes the rounded update back).

The rule: an fp32 parameter is its own master, so for an fp32 model this is exactly `torch.optim.AdamW` (same
functional kernel, same state layout). State lives under the model's parameters (`state[p]["master"]`), so
`torch.distributed.checkpoint` and the expert-parallel gather see it like any other optimizer state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.adamw import adamw


class MasterWeightAdamW(torch.optim.AdamW):
    """`torch.optim.AdamW` (no amsgrad) whose update runs on fp32 copies of non-fp32 parameters."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, foreach: bool | None = None, fused: bool | None = None):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=foreach,
                         fused=fused)

    def _state(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state = self.state[p]
        if not state:  # as Adam._init_group lays it out, with fp32 tensors
            master = p if p.dtype == torch.float32 else p.detach().float()
            on_device = group["fused"] or group["capturable"]
            state["step"] = (torch.zeros((), dtype=torch.float32, device=p.device) if on_device
                             else torch.tensor(0.0, dtype=torch.float32))
            state["exp_avg"] = torch.zeros_like(master, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(master, memory_format=torch.preserve_format)
            if master is not p:
                state["master"] = master
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["amsgrad"]:
                raise ValueError("MasterWeightAdamW does not implement amsgrad")
            masters, grads, exp_avgs, exp_avg_sqs, steps, low = [], [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._state(p, group)
                master = state.get("master", p)
                masters.append(master)
                grads.append(p.grad if p.grad.dtype == master.dtype else p.grad.to(master.dtype))
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                steps.append(state["step"])
                if master is not p:
                    low.append((p, master))
            if not masters:
                continue
            beta1, beta2 = group["betas"]
            adamw(masters, grads, exp_avgs, exp_avg_sqs, [], steps, foreach=group["foreach"],
                  capturable=group["capturable"], differentiable=False, fused=group["fused"],
                  grad_scale=None, found_inf=None, has_complex=False, amsgrad=False, beta1=beta1, beta2=beta2,
                  lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"])
            if low:  # round the fp32 result into the bf16 parameters the model computes with
                torch._foreach_copy_([p for p, _ in low], [m for _, m in low])
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch casts loaded state to each parameter's dtype; master weights and moments must stay fp32."""
        kept = {pid: {k: v for k, v in s.items() if torch.is_tensor(v) and k != "step" and v.is_floating_point()}
                for pid, s in state_dict["state"].items()}
        super().load_state_dict(state_dict)
        ids = [pid for g in state_dict["param_groups"] for pid in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        for pid, p in zip(ids, params, strict=True):
            for k, v in kept.get(pid, {}).items():
                self.state[p][k] = v.to(device=p.device, dtype=torch.float32)
