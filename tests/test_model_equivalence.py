"""Logits, cached decoding and greedy generation agree with transformers' DeepseekV3ForCausalLM loaded from the
checkpoint this model wrote (float32, CPU, random non-trivial weights: nonzero selection bias, YaRN, random norms)."""

from __future__ import annotations

import pytest
import torch

from prover.model.testing import tiny_model

torch.set_num_threads(1)
TOL = 1e-4


def _pair(tmp_path_factory, name: str, **overrides):
    from transformers import AutoModelForCausalLM

    model = tiny_model(seed=11, **overrides).eval()
    d = tmp_path_factory.mktemp(name)
    model.save_pretrained(d)
    hf = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    return model, hf


@pytest.fixture(scope="module")
def yarn_pair(tmp_path_factory):
    """tiny preset: low-rank q, YaRN (factor 4), nonzero e_score_correction_bias, group-limited routing."""
    return _pair(tmp_path_factory, "yarn")


@pytest.fixture(scope="module")
def plain_pair(tmp_path_factory):
    """The other branches: full-rank q, plain RoPE, no top-k renormalization, scaling 1, no dense layer."""
    return _pair(tmp_path_factory, "plain", q_lora_rank=None, rope_scaling=None, norm_topk_prob=False,
                 routed_scaling_factor=1.0, first_k_dense_replace=0, rope_theta=500.0)


def _ids(seed: int, batch: int, length: int) -> torch.Tensor:
    return torch.randint(0, 1024, (batch, length), generator=torch.Generator().manual_seed(seed))


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("pair", ["yarn_pair", "plain_pair"])
def test_prefill_logits_match_transformers(pair, request):
    model, hf = request.getfixturevalue(pair)
    ids = _ids(0, 3, 40)
    with torch.no_grad():
        ours, theirs = model(ids).logits, hf(ids).logits
    assert theirs.abs().max() > 0.5  # logits are not trivially small
    assert _diff(ours, theirs) < TOL


def test_selection_bias_matters(yarn_pair):
    """The bias must change routing (else the tests above would not exercise it)."""
    model, _ = yarn_pair
    ids = _ids(1, 2, 16)
    with torch.no_grad():
        base = model(ids).logits
        saved = [m.gate.e_score_correction_bias.clone() for m in model.moe_layers()]
        for m in model.moe_layers():
            m.gate.e_score_correction_bias.zero_()
        unbiased = model(ids).logits
        for m, b in zip(model.moe_layers(), saved, strict=True):
            m.gate.e_score_correction_bias.copy_(b)
    assert _diff(base, unbiased) > 1e-3


@pytest.mark.parametrize("pair", ["yarn_pair", "plain_pair"])
def test_cached_decoding_matches_full_forward(pair, request):
    """Prefill 12 (expanded path), a 3-token chunk and single tokens (absorbed latent path) with the cache."""
    model, hf = request.getfixturevalue(pair)
    ids = _ids(2, 2, 24)
    with torch.no_grad():
        full = hf(ids).logits
        cache = model.new_cache(2, 24)
        pieces = [model(ids[:, :12], cache=cache).logits, model(ids[:, 12:15], cache=cache).logits]
        pieces += [model(ids[:, i:i + 1], cache=cache).logits for i in range(15, 24)]
    assert cache.length == 24
    assert _diff(torch.cat(pieces, 1), full) < TOL
    # only the latent is cached: kv_lora_rank + rope dims per token and layer
    cfg = model.config
    assert cache.kv.shape[-1] == cfg.kv_lora_rank and cache.pe.shape[-1] == cfg.qk_rope_head_dim


def test_cached_decoding_matches_transformers_cache(yarn_pair):
    model, hf = yarn_pair
    ids = _ids(3, 2, 20)
    with torch.no_grad():
        out = hf(ids[:, :10], use_cache=True)
        past, theirs = out.past_key_values, [out.logits]
        cache = model.new_cache(2, 20)
        ours = [model(ids[:, :10], cache=cache).logits]
        for i in range(10, 20):
            o = hf(ids[:, i:i + 1], past_key_values=past, use_cache=True)
            past = o.past_key_values
            theirs.append(o.logits)
            ours.append(model(ids[:, i:i + 1], cache=cache).logits)
    assert _diff(torch.cat(ours, 1), torch.cat(theirs, 1)) < TOL


@pytest.mark.parametrize("pair", ["yarn_pair", "plain_pair"])
def test_greedy_generation_matches_transformers(pair, request):
    model, hf = request.getfixturevalue(pair)
    ids = _ids(4, 2, 8)
    with torch.no_grad():
        ours = model.generate(ids, max_new_tokens=16, eos_token_id=[])
        theirs = hf.generate(ids, max_new_tokens=16, min_new_tokens=16, do_sample=False, eos_token_id=None,
                             pad_token_id=0)
    assert ours.shape == theirs.shape == (2, 24)
    assert torch.equal(ours, theirs)


def test_left_padding_matches_transformers_and_unpadded(yarn_pair):
    model, hf = yarn_pair
    ids = _ids(5, 2, 14)
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # row 0 is left-padded by 5
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ours = model(ids, attention_mask=mask).logits
        theirs = hf(ids, attention_mask=mask, position_ids=pos).logits
        alone = model(ids[:1, 5:]).logits
    real = mask.bool()
    assert _diff(ours[real], theirs[real]) < TOL
    assert _diff(ours[0, 5:], alone[0]) < TOL
    assert torch.isfinite(ours).all()


def test_padded_batch_generation_equals_single_rows(yarn_pair):
    model, _ = yarn_pair
    a, b = _ids(6, 1, 9), _ids(7, 1, 5)
    batch = torch.cat([a, torch.cat([torch.zeros(1, 4, dtype=torch.long), b], 1)])
    mask = torch.ones_like(batch)
    mask[1, :4] = 0
    with torch.no_grad():
        both = model.generate(batch, max_new_tokens=6, attention_mask=mask, eos_token_id=[])
        one_a = model.generate(a, max_new_tokens=6, eos_token_id=[])
        one_b = model.generate(b, max_new_tokens=6, eos_token_id=[])
    assert torch.equal(both[0, 9:], one_a[0, 9:]) and torch.equal(both[1, 9:], one_b[0, 5:])
