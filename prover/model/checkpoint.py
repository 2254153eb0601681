"""HF-format checkpoints in DeepSeek-V3's layout: sharded safetensors + `model.safetensors.index.json`,
`config.json`, `generation_config.json`, tokenizer files.

Names are those of DeepSeek-V3's HF checkpoints: routed experts one tensor per expert and projection
(`model.layers.{i}.mlp.experts.{j}.gate_proj.weight`), MTP module k stored as layer `num_hidden_layers + k`
with `enorm`, `hnorm`, `eh_proj`, `shared_head.norm`, and copies of the embedding (`embed_tokens`) and head
(`shared_head.head`), as the release ships them. `e_score_correction_bias` is kept in float32.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from prover.errors import ProverError
from prover.model.config import ModelConfig

if TYPE_CHECKING:
    from prover.model.model import DeepSeekV3

log = logging.getLogger(__name__)
INDEX_NAME = "model.safetensors.index.json"
_STACKED = re.compile(r"^(.*\.mlp\.experts)\.(gate_up_proj|down_proj)$")
_PER_EXPERT = re.compile(r"^(.*\.mlp\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")
_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.*)$")
_FP32 = ("e_score_correction_bias",)


class CheckpointError(ProverError):
    pass


# ------------------------------------------------------------------------------------------- name mapping
def to_hf_tensors(model: DeepSeekV3, dtype: torch.dtype | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """(HF name, tensor) for every tensor a DeepSeek-V3 checkpoint holds, from this model's state dict."""
    N = model.config.num_hidden_layers
    state = model.state_dict()

    def cast(name: str, t: torch.Tensor) -> torch.Tensor:
        t = t.detach()
        if name.endswith(_FP32):
            return t.float().contiguous()
        return (t.to(dtype) if dtype is not None else t).contiguous()

    for name, t in state.items():
        if name.startswith("mtp."):
            k, rest = name.split(".", 2)[1:]
            name = f"model.layers.{N + int(k)}.{rest}"
        if m := _STACKED.match(name):
            prefix, kind = m.groups()
            if kind == "gate_up_proj":
                inter = t.shape[1] // 2
                for j in range(t.shape[0]):
                    yield f"{prefix}.{j}.gate_proj.weight", cast(name, t[j, :inter])
                    yield f"{prefix}.{j}.up_proj.weight", cast(name, t[j, inter:])
            else:
                for j in range(t.shape[0]):
                    yield f"{prefix}.{j}.down_proj.weight", cast(name, t[j])
            continue
        yield name, cast(name, t)
    for k in range(len(model.mtp)):  # the release stores the MTP module's own embedding and head copies
        yield f"model.layers.{N + k}.embed_tokens.weight", cast("", state["model.embed_tokens.weight"]).clone()
        yield f"model.layers.{N + k}.shared_head.head.weight", cast("", state["lm_head.weight"]).clone()


def from_hf_tensors(tensors: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Inverse of `to_hf_tensors`: rename MTP layers, stack per-expert weights, drop the MTP copies."""
    N, D = cfg.num_hidden_layers, cfg.num_nextn_predict_layers
    out: dict[str, torch.Tensor] = {}
    experts: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    for name, t in tensors.items():
        if "rotary_emb" in name:
            continue
        if (m := _LAYER.match(name)) and int(m.group(1)) >= N:
            k = int(m.group(1)) - N
            if k >= D:
                continue  # more MTP modules in the file than the config asks for
            rest = m.group(2)
            if rest.startswith(("embed_tokens.", "shared_head.head.")):
                continue  # copies of the main embedding / head
            name = f"mtp.{k}.{rest}"
        if m := _PER_EXPERT.match(name):
            prefix, j, proj = m.groups()
            experts.setdefault(prefix, {}).setdefault(int(j), {})[proj] = t
            continue
        out[name] = t
    for prefix, by_expert in experts.items():
        E = cfg.n_routed_experts
        if sorted(by_expert) != list(range(E)):
            raise CheckpointError(f"{prefix}: expected experts 0..{E - 1}, found {len(by_expert)}")
        out[f"{prefix}.gate_up_proj"] = torch.stack(
            [torch.cat((by_expert[j]["gate_proj"], by_expert[j]["up_proj"]), 0) for j in range(E)])
        out[f"{prefix}.down_proj"] = torch.stack([by_expert[j]["down_proj"] for j in range(E)])
    return out


# ------------------------------------------------------------------------------------------- save
def save_pretrained(model: DeepSeekV3, directory: str | Path, tokenizer: Any = None,
                    max_shard_size: int = 5 * 2**30, dtype: torch.dtype | None = None) -> Path:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("model*.safetensors*"):
        old.unlink()
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in to_hf_tensors(model, dtype):
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_size:
            shards.append({})
            size = 0
        shards[-1][name] = t.cpu()
        size += nbytes
    weight_map: dict[str, str] = {}
    total = 0
    for i, shard in enumerate(shards, start=1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / fname), metadata={"format": "pt"})
        for name, t in shard.items():
            weight_map[name] = fname
            total += t.numel() * t.element_size()
    (out / INDEX_NAME).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map},
                                             indent=2, sort_keys=True) + "\n")
    cfg = model.config
    if dtype is not None:
        cfg = cfg.replace(torch_dtype=str(dtype).removeprefix("torch."))
    cfg.save_pretrained(out)
    gen: dict[str, Any] = {"_from_model_config": True, "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id}
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
        if getattr(tokenizer, "pad_token_id", None) is not None:
            gen["pad_token_id"] = tokenizer.pad_token_id
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    return out


# ------------------------------------------------------------------------------------------- load
def read_tensors(directory: str | Path) -> dict[str, torch.Tensor]:
    d = Path(directory)
    if (d / INDEX_NAME).is_file():
        files = sorted(set(json.loads((d / INDEX_NAME).read_text())["weight_map"].values()))
    elif (d / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise CheckpointError(f"no safetensors weights in {d} (expected {INDEX_NAME} or model.safetensors)")
    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        with safe_open(str(d / f), framework="pt") as fh:
            for name in fh.keys():  # noqa: SIM118 (safe_open is not a dict)
                tensors[name] = fh.get_tensor(name)
    return tensors


def load_pretrained(cls: type[DeepSeekV3], directory: str | Path, device: str | torch.device = "cpu",
                    dtype: torch.dtype | None = None, **config_overrides: Any) -> DeepSeekV3:
    d = Path(directory)
    if not d.is_dir():
        raise CheckpointError(f"checkpoint directory {d} does not exist")
    cfg = ModelConfig.from_pretrained(d, **config_overrides)
    state = from_hf_tensors(read_tensors(d), cfg)
    present = len({k.split(".")[1] for k in state if k.startswith("mtp.")})
    if present < cfg.num_nextn_predict_layers:
        # e.g. a checkpoint written by transformers, which has no MTP module: load what is there.
        log.warning("%s holds %d of %d MTP modules; loading with num_nextn_predict_layers=%d",
                    d, present, cfg.num_nextn_predict_layers, present)
        cfg = cfg.replace(num_nextn_predict_layers=present)
    with torch.device("meta"):
        model = cls(cfg)
    expected = set(model.state_dict())
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise CheckpointError(f"{d}: missing {sorted(missing)[:8]} unexpected {sorted(unexpected)[:8]}"
                              f" ({len(missing)} missing, {len(unexpected)} unexpected)")
    state = {k: (v if k.endswith(_FP32) or dtype is None else v.to(dtype)).to(device) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    materialize_buffers(model, device)
    return model


def materialize_buffers(model: DeepSeekV3, device: str | torch.device) -> None:
    """Re-create the non-persistent buffers (RoPE frequencies, expert counters) after a meta-device build."""
    from prover.model.attention import rope_frequencies
    from prover.model.moe import MoE

    model.inv_freq = rope_frequencies(model.config)[0].to(device)
    for m in model.modules():
        if isinstance(m, MoE):
            m.tokens_per_expert = torch.zeros(m.experts.num_experts, dtype=torch.int64, device=device)
