"""Checkpoints: the model in HF format (loadable by `transformers`/vLLM or `DeepSeekV3.from_pretrained`) plus
`trainer_state.pt` (optimizer, scheduler, step, RNG state, anything else the loop needs) for exact resume.

Layout under a training output directory:
    <out>/checkpoints/step-000040/{config.json, model.safetensors, tokenizer files, trainer_state.pt}
    <out>/{config.json, model.safetensors, tokenizer files}      the final model
Under FSDP every rank joins the gather of the full state dicts; rank 0 writes.
"""

from __future__ import annotations

import inspect
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from prover.train.common import rng_state, set_rng_state, unwrap
from prover.train.distributed import DistEnv, barrier

STATE_FILE = "trainer_state.pt"
_STEP_DIR = re.compile(r"step-(\d+)$")


def _full_state_dicts(model, optimizer, env: DistEnv) -> tuple[dict, dict | None]:
    if hasattr(model, "full_optimizer_state"):  # a pipeline (`prover.parallel.pipeline.Pipeline`) gathers its stages
        return model.full_state_dict(), model.full_optimizer_state(optimizer) if optimizer is not None else None
    if not env.distributed:
        return unwrap(model).state_dict(), optimizer.state_dict() if optimizer is not None else None
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd = get_model_state_dict(model, options=opts)
    optim_sd = get_optimizer_state_dict(model, optimizer, options=opts) if optimizer is not None else None
    from prover.parallel import gather_expert_state

    gather_expert_state(unwrap(model), optimizer, model_sd, optim_sd)  # expert shards -> full tensors on rank 0
    return model_sd, optim_sd


def save_model(model, tokenizer, out_dir: str | Path, env: DistEnv, optimizer=None) -> dict | None:
    """Write the model (and tokenizer) in HF format to `out_dir`; returns the full optimizer state dict
    (rank 0) when an optimizer is given, so a checkpoint gathers everything once."""
    model_sd, optim_sd = _full_state_dicts(model, optimizer, env)
    if env.is_main:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        inner = unwrap(model)
        if not env.distributed:
            inner.save_pretrained(str(out_dir))
        elif "state_dict" in inspect.signature(inner.save_pretrained).parameters:  # transformers models
            inner.save_pretrained(str(out_dir), state_dict=model_sd)
        else:  # sharded parameters: a meta-device shell takes the gathered CPU tensors (nothing initialized twice)
            with torch.device("meta"):
                full = type(inner)(inner.config)
            full.load_state_dict(model_sd, assign=True)
            full.save_pretrained(str(out_dir))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(out_dir))
    barrier(env)
    return optim_sd


def save_checkpoint(
    out_dir: str | Path,
    step: int,
    model,
    optimizer,
    scheduler,
    tokenizer,
    env: DistEnv,
    extra: dict[str, Any] | None = None,
    keep_last: int = 2,
) -> Path:
    ckpt = Path(out_dir) / "checkpoints" / f"step-{step:06d}"
    optim_sd = save_model(model, tokenizer, ckpt, env, optimizer=optimizer)
    if env.is_main:
        state = {
            "step": step,
            "optimizer": optim_sd,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": rng_state(),
            "extra": extra or {},
        }
        torch.save(state, ckpt / (STATE_FILE + ".tmp"))
        (ckpt / (STATE_FILE + ".tmp")).rename(ckpt / STATE_FILE)  # complete checkpoints only
        for old in list_checkpoints(out_dir)[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    barrier(env)
    return ckpt


def export_final(ckpt: str | Path, out_dir: str | Path, env: DistEnv) -> None:
    """Make the checkpoint's model (and tokenizer) the final model in `out_dir`: a copy of its files, not a
    second gather of the weights."""
    if env.is_main:
        for old in Path(out_dir).glob("model*.safetensors*"):
            old.unlink()  # a previous final model with another sharding
        for f in Path(ckpt).iterdir():
            if f.is_file() and f.name != STATE_FILE:
                shutil.copy2(f, Path(out_dir) / f.name)
    barrier(env)


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Complete checkpoints (with their trainer state), oldest first."""
    root = Path(out_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.search(p.name))]
    return [p for _, p in sorted(found) if (p / STATE_FILE).is_file()]


def clear_checkpoints(out_dir: str | Path, env: DistEnv) -> int:
    """A run starting over in `out_dir` (`--no-resume`) removes the earlier run's checkpoints: left there, they
    would outrank this run's under `keep_last` (which deletes by step) and be what the next rerun resumes from.
    Returns how many went."""
    root = Path(out_dir) / "checkpoints"
    old = [p for p in root.iterdir() if _STEP_DIR.search(p.name)] if root.is_dir() else []
    if env.is_main:
        for p in old:
            shutil.rmtree(p)
    barrier(env)
    return len(old)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(out_dir)
    return ckpts[-1] if ckpts else None


def load_training_state(ckpt: str | Path, model, optimizer, scheduler, env: DistEnv) -> dict[str, Any]:
    """Restore optimizer, scheduler and RNG from a checkpoint (the model weights were loaded from it already);
    returns `{"step": ..., "extra": ...}`."""
    state = torch.load(Path(ckpt) / STATE_FILE, map_location="cpu", weights_only=False)
    if optimizer is not None and state["optimizer"] is not None:
        if hasattr(model, "load_optimizer_state"):  # a pipeline: this rank's stages' share
            model.load_optimizer_state(optimizer, state["optimizer"])
        elif env.distributed:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            from prover.parallel import local_expert_state

            state["optimizer"] = local_expert_state(unwrap(model), state["optimizer"])
            set_optimizer_state_dict(
                model, optimizer, optim_state_dict=state["optimizer"], options=StateDictOptions(full_state_dict=True)
            )
        else:
            optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return {"step": state["step"], "extra": state["extra"]}
