"""ModelConfig: the published DeepSeek-V3 config, presets, config.json round trip, published sizes."""

from __future__ import annotations

import json

import pytest
import torch

from prover.errors import ProverError
from prover.model import DeepSeekV3, ModelConfig, ModelConfigError


def test_published_config_loads_and_writes_back_the_same_keys(shared_dir, tmp_path):
    path = shared_dir / "reference" / "deepseek-v3-config.json"
    published = json.loads(path.read_text())
    cfg = ModelConfig.from_pretrained(path)
    written = json.loads(cfg.save_pretrained(tmp_path).read_text())
    assert set(written) == set(published)
    for key, value in published.items():
        assert written[key] == value, key
    assert written["topk_method"] == "noaux_tc" and written["scoring_func"] == "sigmoid"
    assert ModelConfig.from_pretrained(tmp_path) == cfg  # directory form


def test_published_sizes_on_meta_device(shared_dir):
    cfg = ModelConfig.from_pretrained(shared_dir / "reference" / "deepseek-v3-config.json")
    with torch.device("meta"):
        model = DeepSeekV3(cfg)
    total, active = model.num_parameters(include_mtp=False), model.num_active_parameters()
    assert 668e9 < total < 674e9, total  # "671B"
    assert 36.5e9 < active < 38e9, active  # "37B activated"
    mtp_own = model.num_parameters(include_mtp=True) - total
    copies = 2 * cfg.vocab_size * cfg.hidden_size  # the release stores embedding + head copies in the MTP layer
    assert 13e9 < mtp_own + copies < 15e9, mtp_own + copies  # "about 14B"


def test_small_preset_is_the_shared_yardstick(shared_dir):
    ref = json.loads((shared_dir / "reference" / "small-moe-config.json").read_text())
    cfg = ModelConfig.preset("small")
    d = cfg.to_dict()
    for key, value in ref.items():
        assert d[key] == value, key
    with torch.device("meta"):
        model = DeepSeekV3(cfg)
    assert 1.25e9 < model.num_parameters() < 1.27e9
    assert 2.2e8 < model.num_active_parameters(include_embedding=False) < 2.35e8  # ~227M


def test_tiny_preset_is_small_and_servable():
    cfg = ModelConfig.preset("tiny")
    assert cfg.kv_lora_rank + cfg.qk_rope_head_dim in (320, 576)
    model = DeepSeekV3(cfg)
    assert model.num_parameters(include_mtp=True) < 5_000_000
    assert cfg.rope_scaling and cfg.rope_scaling["type"] == "yarn"


def test_transformers_reads_our_config(tmp_path):
    from transformers import AutoConfig

    ModelConfig.preset("tiny").save_pretrained(tmp_path)
    hf = AutoConfig.from_pretrained(tmp_path)
    assert hf.model_type == "deepseek_v3"
    assert hf.n_routed_experts == 16 and hf.kv_lora_rank == 256 and hf.q_lora_rank == 32


def test_transformers5_rope_parameters_accepted():
    d = ModelConfig.preset("tiny").to_dict()
    d.pop("rope_scaling")
    d.pop("rope_theta")
    d["rope_parameters"] = {"rope_type": "yarn", "rope_theta": 5000.0, "factor": 2.0,
                            "original_max_position_embeddings": 256}
    cfg = ModelConfig.from_dict(d)
    assert cfg.rope_theta == 5000.0
    assert cfg.rope_scaling == {"type": "yarn", "factor": 2.0, "original_max_position_embeddings": 256}


def test_yarn_softmax_scale_correction():
    cfg = ModelConfig.preset("tiny")
    import math

    m = 0.1 * 1.0 * math.log(4.0) + 1.0
    assert cfg.softmax_scale == pytest.approx(cfg.qk_head_dim**-0.5 * m * m)
    assert ModelConfig.preset("tiny", rope_scaling=None).softmax_scale == pytest.approx(cfg.qk_head_dim**-0.5)


@pytest.mark.parametrize("bad", [
    {"scoring_func": "softmax"},
    {"topk_method": "greedy"},
    {"n_group": 3},
    {"topk_group": 9},
    {"num_key_value_heads": 2},
    {"rope_scaling": {"type": "dynamic", "factor": 2.0}},
])
def test_invalid_configs_are_one_clear_error(bad):
    with pytest.raises(ModelConfigError) as e:
        ModelConfig.preset("tiny", **bad)
    assert isinstance(e.value, ProverError) and "invalid model config" in str(e.value)


def test_missing_or_broken_config_file(tmp_path):
    with pytest.raises(ModelConfigError, match="no config.json"):
        ModelConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelConfigError, match="not valid JSON"):
        ModelConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ModelConfigError, match="deepseek_v3"):
        ModelConfig.from_pretrained(tmp_path)
    with pytest.raises(ModelConfigError, match="unknown preset"):
        ModelConfig.preset("huge")
