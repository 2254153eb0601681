"""What SFT and GRPO share: loading a policy (any HF causal LM, or our DeepSeek-V3 MoE), precision, the
MoE-specific step hooks (aux-loss-free bias update, expert-load logging), RNG state, metric logging."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

from prover.errors import ProverError


def is_moe(model: torch.nn.Module) -> bool:
    """Our DeepSeek-V3 implementation (it carries the per-expert routing bias that training must update)."""
    try:
        from prover.model import DeepSeekV3
    except ImportError:
        return False
    return isinstance(unwrap(model), DeepSeekV3)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)  # DDP-style wrappers; FSDP2 modifies the module in place


def _model_type(path: Path) -> str | None:
    cfg = path / "config.json"
    if not cfg.is_file():
        return None
    try:
        return json.loads(cfg.read_text()).get("model_type")
    except json.JSONDecodeError:
        raise ProverError(f"{cfg} is not valid JSON") from None


def load_policy(name_or_path: str, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A DeepSeek-V3 checkpoint loads as `prover.model.DeepSeekV3` (so MTP and bias balancing train); any
    other checkpoint through `transformers.AutoModelForCausalLM`. Parameters in `dtype` (`param_dtype`); the
    MoE's routing bias stays fp32 whatever `dtype` is."""
    from safetensors import SafetensorError

    path = Path(name_or_path)
    try:
        if path.is_dir() and _model_type(path) == "deepseek_v3":
            from prover.model import DeepSeekV3

            model = DeepSeekV3.from_pretrained(str(path), dtype=dtype)
        else:
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype)
    except (OSError, ValueError, SafetensorError) as e:  # (the last: a weights file cut short)
        raise ProverError(f"cannot load model {name_or_path}: {str(e).splitlines()[0]}") from None
    return model.to(device=device, dtype=dtype)


def param_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """Training parameters' dtype: bf16 where the device does bf16 well (CUDA with bf16) or where asked, fp32
    otherwise. bf16 parameters train with fp32 master weights inside the optimizer (`optim.MasterWeightAdamW`)."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ProverError(f"unknown precision {precision!r} (auto, bf16, fp32)")
    use_bf16 = precision == "bf16" or (
        precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    )
    return torch.bfloat16 if use_bf16 else torch.float32


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as e:
        raise ProverError(f"cannot load a tokenizer from {name_or_path}: {str(e).splitlines()[0]}") from None
    if tok.eos_token_id is None:
        raise ProverError(f"tokenizer of {name_or_path} has no EOS token; training needs one to end completions")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def autocast(device: torch.device, precision: str = "auto"):
    """bf16 autocast over fp32 parameters where `param_dtype` would pick bf16 (GRPO's policy); else a no-op."""
    if param_dtype(device, precision) != torch.bfloat16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def moe_after_step(model: torch.nn.Module, gamma: float, process_group: Any = None,
                   read: bool = True) -> dict[str, Any]:
    """After each optimizer step of the MoE: nudge each expert's routing bias toward balance (DeepSeek-V3's
    aux-loss-free balancing) from the expert load counted since the last step, summed over `process_group` so
    every rank applies the same update; returns that load's summary for the logs (`read=False`: as device
    scalars, for `read_metrics` later). A no-op for other models."""
    if not is_moe(model):
        return {}
    from prover.model import balance

    inner = unwrap(model)
    if gamma > 0:
        counts = balance.update_bias(inner, gamma, process_group=process_group)  # the counts it used
    else:  # still report (and reset) the load
        counts = balance.expert_counts(inner)
        if process_group is not None:
            import torch.distributed as dist

            dist.all_reduce(counts, group=process_group)
        balance.reset_counts(inner)
    if counts.numel() == 0:
        return {}
    stats = balance.load_stats(counts) if not read else balance.load_summary(counts)
    return {f"expert_load/{k}": v for k, v in stats.items()}


class StepMetrics:
    """A step's metrics, its device scalars copied to pinned host memory as the step's last queued work: reading
    them waits for that step only. (A `.tolist()` at read time would queue behind, and wait for, every step
    queued since.)"""

    def __init__(self, metrics: dict[str, Any]):
        self._lazy = [k for k, v in metrics.items() if torch.is_tensor(v)]
        self._plain = {k: v for k, v in metrics.items() if k not in self._lazy}
        self._host: torch.Tensor | None = None
        self._done = None
        self.ready_at = time.perf_counter()  # when the step's work was done: now, unless it is queued on a GPU
        if self._lazy:
            device = metrics[self._lazy[0]].device
            values = torch.stack([metrics[k].detach().reshape(()).to(device, torch.float64) for k in self._lazy])
            if values.is_cuda:
                self._host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
                self._host.copy_(values, non_blocking=True)
                self._done = torch.cuda.Event()
                self._done.record()
            else:
                self._host = values

    def read(self) -> dict[str, Any]:
        if self._done is not None:
            self._done.synchronize()
            self.ready_at = time.perf_counter()
            self._done = None
        values = self._host.tolist() if self._host is not None else []
        return {**self._plain, **dict(zip(self._lazy, values, strict=True))}


def read_metrics(metrics: dict[str, Any] | StepMetrics) -> dict[str, Any]:
    """A step's metrics as plain numbers (device scalars read in one transfer)."""
    return (metrics if isinstance(metrics, StepMetrics) else StepMetrics(metrics)).read()


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        state["numpy"] = np.random.get_state()
    except ImportError:
        pass
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np

        np.random.set_state(state["numpy"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)  # its legacy global seed takes 32 bits; derived seeds have 63
    except ImportError:
        pass


class MetricLog:
    """TensorBoard scalars (under `<dir>/tb`) plus a JSONL copy and a one-line summary on stderr.

    A run continuing from step `from_step` (0: a new run) first drops what was logged after it: steps a crash
    lost since the last checkpoint, or all of an earlier run started over, so each step is logged once."""

    def __init__(self, out_dir: str | Path, enabled: bool = True, echo_every: int = 1, from_step: int = 0):
        self.enabled = enabled
        self.echo_every = max(1, echo_every)
        self._tb = None
        self._jsonl = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            Path(out_dir).mkdir(parents=True, exist_ok=True)
            self._tb = SummaryWriter(str(Path(out_dir) / "tb"), purge_step=from_step + 1)
            path = Path(out_dir) / "metrics.jsonl"
            if path.is_file():  # the kept lines replace the file in one rename: a crash here loses no log
                lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
                kept = [line for line in lines if _logged_step(line) <= from_step]
                if len(kept) < len(lines):
                    tmp = path.with_suffix(".jsonl.tmp")
                    tmp.write_text("".join(kept), encoding="utf-8")
                    os.replace(tmp, path)
            self._jsonl = open(path, "a", encoding="utf-8")

    def log(self, step: int, metrics: dict[str, float], echo_keys: tuple[str, ...] = ()) -> None:
        if not self.enabled:
            return
        for k, v in metrics.items():
            self._tb.add_scalar(k, v, step)
        self._jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
        self._jsonl.flush()
        if step % self.echo_every == 0:
            shown = " ".join(f"{k}={metrics[k]:.4g}" for k in echo_keys if k in metrics)
            print(f"step {step}: {shown}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._jsonl.close()


def _logged_step(line: str) -> float:
    """A metrics.jsonl line's step; a line cut short by a crash counts as after every step (it goes)."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf
