"""`ModelConfig`: the keys of a DeepSeek-V3 `config.json` (HF `DeepseekV3Config` plus `topk_method` /
`scoring_func`, which vLLM reads), read from and written to `config.json`, with presets.

`config.json` is written with exactly the keys DeepSeek-V3 ships (`PUBLISHED_KEYS`): `rope_theta` and
`rope_scaling` rather than transformers 5's `rope_parameters` (both transformers 4/5 and vLLM read the former;
a `rope_parameters` dict is accepted on load). Training-only knobs (`mtp_loss_weight`, `aux_loss_alpha`,
`moe_impl`) live on the same object but never go into `config.json`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prover.errors import ProverError


class ModelConfigError(ProverError):
    """A config.json that does not describe a DeepSeek-V3-architecture model this code can build."""


# Written to config.json besides the fields below (fixed values).
_FIXED = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3"}
# Not architecture: training knobs that never go to config.json.
TRAINING_KEYS = ("mtp_loss_weight", "aux_loss_alpha", "moe_impl")


@dataclass
class ModelConfig:
    vocab_size: int = 129280
    hidden_size: int = 7168
    intermediate_size: int = 18432  # dense MLP of the first `first_k_dense_replace` layers
    moe_intermediate_size: int = 2048  # one routed (or shared) expert
    num_hidden_layers: int = 61
    num_nextn_predict_layers: int = 1  # MTP modules
    num_attention_heads: int = 128
    num_key_value_heads: int = 128  # MLA: one latent, every head its own k/v (must equal num_attention_heads)
    n_shared_experts: int = 1
    n_routed_experts: int = 256
    routed_scaling_factor: float = 2.5
    kv_lora_rank: int = 512
    q_lora_rank: int | None = 1536  # None: plain q projection
    qk_rope_head_dim: int = 64
    v_head_dim: int = 128
    qk_nope_head_dim: int = 128
    topk_method: str = "noaux_tc"
    n_group: int = 8
    topk_group: int = 4
    num_experts_per_tok: int = 8
    moe_layer_freq: int = 1
    first_k_dense_replace: int = 3
    norm_topk_prob: bool = True
    scoring_func: str = "sigmoid"
    hidden_act: str = "silu"
    max_position_embeddings: int = 163840
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    use_cache: bool = True
    bos_token_id: int | None = 0
    eos_token_id: int | list[int] | None = 1
    tie_word_embeddings: bool = False
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None  # {"type": "yarn", "factor", "original_max_position_embeddings", ...}
    attention_bias: bool = False
    attention_dropout: float = 0.0
    torch_dtype: str = "bfloat16"
    # --- training knobs, not in config.json ---
    mtp_loss_weight: float = 0.3  # lambda of the MTP loss (DeepSeek-V3: 0.3, then 0.1)
    aux_loss_alpha: float = 0.0  # sequence-wise balance loss weight (DeepSeek-V3: 1e-4); 0 = off
    moe_impl: str = "auto"  # "auto" (grouped GEMM where available) | "grouped" | "batched" | "quack" | "reference"
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # unknown keys read from a file (not written)

    def __post_init__(self) -> None:
        self.validate()

    # ---------------------------------------------------------------- derived sizes
    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    def is_moe_layer(self, layer_idx: int) -> bool:
        """MTP blocks (index >= num_hidden_layers) are MoE too, as in DeepSeek-V3."""
        return layer_idx >= self.first_k_dense_replace and layer_idx % self.moe_layer_freq == 0

    @property
    def softmax_scale(self) -> float:
        """1/sqrt(d_qk), times YaRN's mscale(factor, mscale_all_dim)^2 attention-temperature correction."""
        scale = self.qk_head_dim**-0.5
        rs = self.rope_scaling
        if rs and _rope_type(rs) == "yarn" and rs.get("mscale_all_dim"):
            m = yarn_mscale(float(rs["factor"]), float(rs["mscale_all_dim"]))
            scale *= m * m
        return scale

    # ---------------------------------------------------------------- checks
    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ModelConfigError(f"invalid model config: {msg}")

        need(self.scoring_func == "sigmoid", f"scoring_func={self.scoring_func!r}; only 'sigmoid' (DeepSeek-V3)")
        need(self.topk_method == "noaux_tc", f"topk_method={self.topk_method!r}; only 'noaux_tc' (DeepSeek-V3)")
        need(self.hidden_act == "silu", f"hidden_act={self.hidden_act!r}; only 'silu'")
        need(self.num_key_value_heads == self.num_attention_heads, "MLA needs num_key_value_heads == num_attention_heads")
        need(self.n_routed_experts % self.n_group == 0, "n_routed_experts must be divisible by n_group")
        need(1 <= self.topk_group <= self.n_group, "need 1 <= topk_group <= n_group")
        per_group = self.n_routed_experts // self.n_group
        need(per_group >= 2, "group-limited routing scores a group by its top-2 experts: need >= 2 experts per group")
        need(self.num_experts_per_tok <= self.topk_group * per_group, "num_experts_per_tok > experts in topk_group groups")
        need(self.moe_layer_freq >= 1, "moe_layer_freq must be >= 1")
        need(self.qk_rope_head_dim % 2 == 0, "qk_rope_head_dim must be even")
        need(self.moe_impl in ("auto", "grouped", "batched", "quack", "reference"), f"unknown moe_impl {self.moe_impl!r}")
        if self.rope_scaling is not None:
            kind = _rope_type(self.rope_scaling)
            need(kind in ("yarn", "default"), f"rope_scaling type {kind!r} unsupported (yarn only)")
            if kind == "yarn":
                need("factor" in self.rope_scaling, "yarn rope_scaling needs 'factor'")
                need("original_max_position_embeddings" in self.rope_scaling,
                     "yarn rope_scaling needs 'original_max_position_embeddings'")
        if self.extra.get("rope_interleave") is False:
            raise ModelConfigError("rope_interleave=false is not supported (DeepSeek-V3 weights are interleaved)")

    # ---------------------------------------------------------------- (de)serialization
    def to_dict(self) -> dict[str, Any]:
        """Exactly the keys of DeepSeek-V3's published config.json."""
        out: dict[str, Any] = dict(_FIXED)
        for f in dataclasses.fields(self):
            if f.name in TRAINING_KEYS or f.name == "extra":
                continue
            out[f.name] = getattr(self, f.name)
        return dict(sorted(out.items()))

    @classmethod
    def from_dict(cls, d: dict[str, Any], **overrides: Any) -> ModelConfig:
        d = {**d, **overrides}
        if d.get("model_type", "deepseek_v3") != "deepseek_v3":
            raise ModelConfigError(f"model_type={d.get('model_type')!r}; this is a DeepSeek-V3 ('deepseek_v3') model")
        d = dict(d)
        if "rope_parameters" in d and d["rope_parameters"]:  # transformers 5 layout
            rp = dict(d.pop("rope_parameters"))
            d.setdefault("rope_theta", rp.pop("rope_theta", 10000.0))
            kind = rp.pop("rope_type", rp.pop("type", "default"))
            if kind != "default" and not d.get("rope_scaling"):
                d["rope_scaling"] = {"type": kind, **rp}
        if d.get("dtype") and "torch_dtype" not in d:
            d["torch_dtype"] = d["dtype"]
        if d.get("torch_dtype") is not None and not isinstance(d["torch_dtype"], str):
            d["torch_dtype"] = str(d["torch_dtype"]).removeprefix("torch.")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names and k not in _FIXED}
        if known.get("rope_scaling") and _rope_type(known["rope_scaling"]) == "default":
            known["rope_scaling"] = None
        try:
            return cls(**known, extra=extra)
        except TypeError as e:
            raise ModelConfigError(f"invalid model config: {e}") from None

    @classmethod
    def from_pretrained(cls, path: str | Path, **overrides: Any) -> ModelConfig:
        """`path`: a config.json, or a directory holding one."""
        p = Path(path)
        if p.is_dir():
            p = p / "config.json"
        if not p.is_file():
            raise ModelConfigError(f"no config.json at {path}")
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ModelConfigError(f"{p} is not valid JSON: {e}") from None
        return cls.from_dict(d, **overrides)

    def save_pretrained(self, directory: str | Path) -> Path:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "config.json"
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    # ---------------------------------------------------------------- presets
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ModelConfig:
        """`tiny` (CPU tests, < 5M parameters, vLLM-servable latent size 256 + 64), `small` (the GPU yardstick,
        = shared/reference/small-moe-config.json), `medium` (DeepSeek-V3's head dims and GEMM widths at 4.1B
        parameters, 1.15B active: trains on one H200, where FP8 pays), `deepseek-v3` (the published 671B config)."""
        if name == "tiny":
            base = dict(
                vocab_size=1024, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                num_hidden_layers=3, first_k_dense_replace=1, num_nextn_predict_layers=1,
                num_attention_heads=4, num_key_value_heads=4, q_lora_rank=32, kv_lora_rank=256,
                qk_nope_head_dim=32, qk_rope_head_dim=64, v_head_dim=32,
                n_routed_experts=16, n_shared_experts=1, num_experts_per_tok=4, n_group=4, topk_group=2,
                max_position_embeddings=2048, bos_token_id=0, eos_token_id=1,
                rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 512,
                              "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
            )
            return cls(**{**base, **overrides})
        if name == "small":
            return cls.from_dict(dict(_SMALL), **overrides)
        if name == "medium":
            return cls.from_dict({**_SMALL, **_MEDIUM}, **overrides)
        if name in ("deepseek-v3", "deepseek_v3", "671b"):
            return cls.from_dict(dict(_DEEPSEEK_V3), **overrides)
        raise ModelConfigError(f"unknown preset {name!r} (tiny, small, medium, deepseek-v3)")


def _rope_type(rs: dict[str, Any]) -> str:
    return str(rs.get("type", rs.get("rope_type", "default")))


def yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


# The two reference configs, copied from ../shared/reference/ so presets work without the shared dir
# (tests check that they still match the files).
_SMALL: dict[str, Any] = {
    "vocab_size": 32000, "hidden_size": 1024, "intermediate_size": 2816, "moe_intermediate_size": 512,
    "num_hidden_layers": 12, "first_k_dense_replace": 1, "n_routed_experts": 64, "num_experts_per_tok": 6,
    "n_shared_experts": 2, "n_group": 8, "topk_group": 4, "num_attention_heads": 16, "num_key_value_heads": 16,
    "q_lora_rank": 384, "kv_lora_rank": 512, "qk_nope_head_dim": 64, "qk_rope_head_dim": 64, "v_head_dim": 64,
    "max_position_embeddings": 4096, "rope_scaling": None, "rope_theta": 10000, "routed_scaling_factor": 2.5,
    "norm_topk_prob": True, "scoring_func": "sigmoid", "topk_method": "noaux_tc", "hidden_act": "silu",
    "rms_norm_eps": 1e-06, "num_nextn_predict_layers": 1, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}
# `small` with DeepSeek-V3's widths: hidden 4096 (V3: 7168), experts of 1024 (V3: 2048), V3's MLA dims.
_MEDIUM: dict[str, Any] = {
    "hidden_size": 4096, "intermediate_size": 11264, "moe_intermediate_size": 1024, "num_hidden_layers": 8,
    "n_routed_experts": 32, "num_experts_per_tok": 4, "n_shared_experts": 1, "n_group": 4, "topk_group": 2,
    "num_attention_heads": 32, "num_key_value_heads": 32, "q_lora_rank": 1536, "kv_lora_rank": 512,
    "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
}
_DEEPSEEK_V3: dict[str, Any] = {
    "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 0, "eos_token_id": 1,
    "first_k_dense_replace": 3, "hidden_act": "silu", "hidden_size": 7168, "initializer_range": 0.02,
    "intermediate_size": 18432, "kv_lora_rank": 512, "max_position_embeddings": 163840,
    "moe_intermediate_size": 2048, "moe_layer_freq": 1, "n_group": 8, "n_routed_experts": 256,
    "n_shared_experts": 1, "norm_topk_prob": True, "num_attention_heads": 128, "num_experts_per_tok": 8,
    "num_hidden_layers": 61, "num_key_value_heads": 128, "num_nextn_predict_layers": 1, "q_lora_rank": 1536,
    "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "rms_norm_eps": 1e-06,
    "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0,
                     "original_max_position_embeddings": 4096, "type": "yarn"},
    "rope_theta": 10000, "routed_scaling_factor": 2.5, "scoring_func": "sigmoid", "tie_word_embeddings": False,
    "topk_group": 4, "topk_method": "noaux_tc", "torch_dtype": "bfloat16", "use_cache": True,
    "v_head_dim": 128, "vocab_size": 129280,
}
