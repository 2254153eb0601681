"""Checkpoints: DeepSeek-V3 HF layout (sharded safetensors + index, per-expert tensors, MTP as layer N + k),
round trip, and loading in transformers (model + tokenizer)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from prover.errors import ProverError
from prover.model import DeepSeekV3
from prover.model.checkpoint import INDEX_NAME, CheckpointError
from prover.model.testing import tiny_checkpoint, tiny_model
from prover.model.tokenizer import build_test_tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tokenizer(shared_dir):
    return build_test_tokenizer(vocab_size=400, data_dir=shared_dir / "benchmarks")


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tokenizer):
    model = tiny_model(seed=3, vocab_size=len(tokenizer))
    d = tmp_path_factory.mktemp("ckpt")
    model.save_pretrained(d, tokenizer=tokenizer, max_shard_size=600_000)  # several shards
    return model, d


def _names(d) -> dict[str, str]:
    return json.loads((d / INDEX_NAME).read_text())["weight_map"]


def test_layout_and_weight_names(saved):
    model, d = saved
    cfg = model.config
    weight_map = _names(d)
    shards = sorted(set(weight_map.values()))
    assert len(shards) > 1 and all((d / s).is_file() for s in shards)
    for f in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (d / f).is_file(), f
    N, E = cfg.num_hidden_layers, cfg.n_routed_experts
    for j in (0, E - 1):
        for proj in ("gate_proj", "up_proj", "down_proj"):
            assert f"model.layers.1.mlp.experts.{j}.{proj}.weight" in weight_map
    assert not any("gate_up_proj" in n or n.startswith("mtp.") for n in weight_map)
    for n in ("model.layers.0.mlp.gate_proj.weight", "model.layers.1.mlp.gate.e_score_correction_bias",
              "model.layers.1.mlp.shared_experts.down_proj.weight", "model.layers.1.self_attn.kv_a_proj_with_mqa.weight",
              "model.layers.1.self_attn.q_a_layernorm.weight", "lm_head.weight", "model.norm.weight"):
        assert n in weight_map, n
    for n in ("enorm.weight", "hnorm.weight", "eh_proj.weight", "shared_head.norm.weight", "shared_head.head.weight",
              "embed_tokens.weight", "self_attn.kv_b_proj.weight", "mlp.experts.0.up_proj.weight"):
        assert f"model.layers.{N}.{n}" in weight_map, n
    with safe_open(str(d / weight_map[f"model.layers.{N}.embed_tokens.weight"]), "pt") as fh:
        emb_copy = fh.get_tensor(f"model.layers.{N}.embed_tokens.weight")
    assert torch.equal(emb_copy, model.model.embed_tokens.weight)
    gate = model.model.layers[1].mlp.experts.gate_up_proj[2, : cfg.moe_intermediate_size]
    with safe_open(str(d / weight_map["model.layers.1.mlp.experts.2.gate_proj.weight"]), "pt") as fh:
        assert torch.equal(fh.get_tensor("model.layers.1.mlp.experts.2.gate_proj.weight"), gate)
    gen = json.loads((d / "generation_config.json").read_text())
    assert gen["eos_token_id"] == cfg.eos_token_id and "pad_token_id" in gen


def test_round_trip_is_exact(saved):
    model, d = saved
    loaded = DeepSeekV3.from_pretrained(d)
    a, b = model.state_dict(), loaded.state_dict()
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ids = torch.randint(0, model.config.vocab_size, (2, 10))
    model.eval()
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(ids, labels=ids).loss, loaded(ids, labels=ids).loss)  # MTP weights included
    assert loaded.inv_freq.device.type == "cpu" and loaded.model.layers[1].mlp.tokens_per_expert.sum() == 0


def test_bf16_save_keeps_bias_float32(tmp_path):
    model = tiny_model(seed=4)
    model.save_pretrained(tmp_path, dtype=torch.bfloat16)
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    loaded = DeepSeekV3.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert loaded.lm_head.weight.dtype == torch.bfloat16
    bias = loaded.model.layers[1].mlp.gate.e_score_correction_bias
    assert bias.dtype == torch.float32
    assert torch.equal(bias, model.model.layers[1].mlp.gate.e_score_correction_bias)


def test_transformers_loads_without_missing_or_unexpected_keys(saved):
    from transformers import AutoModelForCausalLM

    model, d = saved
    hf, info = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, output_loading_info=True)
    N = model.config.num_hidden_layers
    assert info["missing_keys"] == set() or not info["missing_keys"]
    assert all(k.startswith(f"model.layers.{N}.") for k in info["unexpected_keys"])  # the MTP layer only
    assert not info.get("mismatched_keys")
    ids = torch.randint(0, model.config.vocab_size, (1, 12))
    with torch.no_grad():
        assert (hf(ids).logits - model.eval()(ids).logits).abs().max() < 1e-4


def test_tiny_checkpoint_helper_with_auto_classes(tmp_path, tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = tiny_checkpoint(tmp_path / "tiny", tokenizer=tokenizer)
    tok = AutoTokenizer.from_pretrained(d)
    hf = AutoModelForCausalLM.from_pretrained(d)
    enc = tok("theorem foo (n : ℕ) : n + 0 = n := by", return_tensors="pt")
    out = hf.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > enc["input_ids"].shape[1]
    ours = DeepSeekV3.from_pretrained(d)
    assert ours.config.vocab_size == len(tok) and ours.config.eos_token_id == tok.eos_token_id


def test_bad_checkpoint_dirs_are_typed_errors(tmp_path):
    with pytest.raises(CheckpointError):
        DeepSeekV3.from_pretrained(tmp_path / "nope")
    tiny_model().config.save_pretrained(tmp_path)
    with pytest.raises(ProverError, match="no safetensors"):
        DeepSeekV3.from_pretrained(tmp_path)


def test_loads_a_checkpoint_written_by_transformers(saved, tmp_path):
    """transformers writes no MTP module and a `rope_parameters` config: both load, logits unchanged."""
    from transformers import AutoModelForCausalLM

    model, d = saved
    hf = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    hf.save_pretrained(tmp_path)
    ours = DeepSeekV3.from_pretrained(tmp_path)
    assert ours.config.num_nextn_predict_layers == 0 and len(ours.mtp) == 0
    ids = torch.randint(0, model.config.vocab_size, (1, 12))
    with torch.no_grad():
        assert (ours.eval()(ids).logits - model.eval()(ids).logits).abs().max() < 1e-5
