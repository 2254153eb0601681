"""The speed variants of the model compute what the plain model computes (fp32, CPU): FlexAttention against
SDPA (causal and padded masks), the fused q_a/kv_a projection and the fused gate/up GEMMs; forward and every
gradient. Their speed is bench/model_gpu.py's (rows flex, fused)."""

from __future__ import annotations

import copy

import pytest
import torch

from prover.model.testing import tiny_model

torch.set_num_threads(1)


def _run(model, ids, mask):
    out = model(ids, attention_mask=mask, labels=ids)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(variant, ids, mask, tol=1e-5):
    torch.manual_seed(0)
    plain = tiny_model(seed=0, moe_impl="batched").float().train()
    fast = copy.deepcopy(plain)
    variant(fast)
    (la, ga), (lb, gb) = _run(plain, ids, mask), _run(fast, ids, mask)
    real = mask.bool() if mask is not None else torch.ones_like(ids, dtype=torch.bool)
    assert torch.allclose(la[real], lb[real], atol=tol, rtol=tol)
    assert ga.keys() == gb.keys()
    for name in ga:
        assert torch.allclose(ga[name], gb[name], atol=tol, rtol=1e-4), name


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(2, 1024, (2, 24), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 17:] = 0  # right padding
    return ids, mask


@pytest.mark.parametrize("padded", [False, True], ids=["causal", "padded"])
def test_flex_attention_forward_matches_sdpa(batch, padded):
    """Forward only: FlexAttention has no backward on CPU (the GPU test below checks gradients)."""
    ids, mask = batch
    mask = mask if padded else None
    plain = tiny_model(seed=0, moe_impl="batched").eval()
    flex = copy.deepcopy(plain)
    flex.set_attention("flex")
    with torch.no_grad():
        a, b = plain(ids, attention_mask=mask, labels=ids), flex(ids, attention_mask=mask, labels=ids)
    real = mask.bool() if mask is not None else torch.ones_like(ids, dtype=torch.bool)
    assert torch.allclose(a.logits[real], b.logits[real], atol=1e-5, rtol=1e-5)
    assert torch.allclose(a.loss, b.loss, atol=1e-6) and torch.allclose(a.mtp_loss, b.mtp_loss, atol=1e-6)


@pytest.mark.gpu
def test_flex_attention_gradients_match_sdpa_on_gpu(batch):
    ids, mask = (t.cuda() for t in batch)
    torch.manual_seed(0)
    plain = tiny_model(seed=0, moe_impl="batched").float().cuda().train()
    flex = copy.deepcopy(plain)
    flex.set_attention("flex")
    (la, ga), (lb, gb) = _run(plain, ids, mask), _run(flex, ids, mask)
    assert torch.allclose(la[mask.bool()], lb[mask.bool()], atol=1e-4, rtol=1e-4)
    for name in ga:
        assert torch.allclose(ga[name], gb[name], atol=1e-4, rtol=1e-3), name


def test_fused_projections_match_separate_ones(batch):
    ids, mask = batch
    _assert_same(lambda m: m.set_fusions(True), ids, mask)


def test_fusions_keep_checkpoint_names():
    m = tiny_model(seed=0)
    names = set(m.state_dict())
    m.set_fusions(True)
    assert set(m.state_dict()) == names and any(n.endswith("q_a_proj.weight") for n in names)


def test_flex_is_not_used_for_decoding(batch):
    """Decode steps run in latent space with a dense mask: FlexAttention must not change generation."""
    ids, _ = batch
    plain = tiny_model(seed=0).eval()
    flex = copy.deepcopy(plain)
    flex.set_attention("flex")
    assert torch.equal(plain.generate(ids[:, :8], max_new_tokens=4, eos_token_id=[]),
                       flex.generate(ids[:, :8], max_new_tokens=4, eos_token_id=[]))
