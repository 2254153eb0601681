"""Multi-token prediction: the MTP loss re-derived by hand from the module's parts, its weight in the loss,
gradients, and label masking; plus generation stopping at eos."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prover.model.attention import rope_cos_sin
from prover.model.testing import tiny_model

torch.set_num_threads(1)


def test_mtp_loss_is_the_deepseek_v3_definition():
    model = tiny_model(seed=21).eval()
    ids = torch.randint(0, 1024, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(ids, labels=ids)
        # depth 1 at position i: [enorm(emb(t_{i+1})); hnorm(h_i)] -> eh_proj -> block -> shared_head.norm -> head,
        # predicting t_{i+2}
        layer = model.mtp[0]
        h = out.hidden_states[:, :-1]
        x = layer.eh_proj(torch.cat((layer.enorm(model.model.embed_tokens(ids[:, 1:])), layer.hnorm(h)), -1))
        cos, sin = rope_cos_sin(model.inv_freq, model.rope_scale, torch.arange(11).expand(2, 11))
        x, _ = layer(x, cos, sin, None)
        logits = model.lm_head(layer.shared_head.norm(x))
        expect = F.cross_entropy(logits[:, :-1].reshape(-1, 1024), ids[:, 2:].reshape(-1))
    torch.testing.assert_close(out.mtp_loss, expect)
    lm = F.cross_entropy(out.logits[:, :-1].reshape(-1, 1024), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(out.lm_loss, lm)
    torch.testing.assert_close(out.loss, lm + model.config.mtp_loss_weight * expect)


def test_mtp_weight_zero_and_gradients():
    model = tiny_model(seed=22).train()
    ids = torch.randint(0, 1024, (2, 10))
    out = model(ids, labels=ids)
    out.loss.backward()
    assert model.mtp[0].eh_proj.weight.grad.abs().sum() > 0
    assert model.mtp[0].mlp.experts.gate_up_proj.grad.abs().sum() > 0
    model.config.mtp_loss_weight = 0.0
    out = model(ids, labels=ids)
    assert out.mtp_loss is None
    torch.testing.assert_close(out.loss, out.lm_loss)


def test_ignored_labels():
    model = tiny_model(seed=23).eval()
    ids = torch.randint(0, 1024, (1, 10))
    labels = ids.clone()
    labels[:, :6] = -100  # a prompt
    with torch.no_grad():
        out = model(ids, labels=labels)
        lm = F.cross_entropy(out.logits[0, 5:-1], ids[0, 6:])
    torch.testing.assert_close(out.lm_loss, lm)
    assert torch.isfinite(out.mtp_loss)


def test_generate_stops_and_pads_after_eos():
    model = tiny_model(seed=24).eval()
    ids = torch.randint(0, 1024, (2, 6))
    with torch.no_grad():
        free = model.generate(ids, max_new_tokens=8, eos_token_id=[])
        eos = int(free[0, 7])  # the second token row 0 produces: call it eos
        out = model.generate(ids, max_new_tokens=8, eos_token_id=eos, pad_token_id=-1)
    row0 = out[0, 6:].tolist()
    assert row0[:2] == free[0, 6:8].tolist() and all(t == -1 for t in row0[2:])
    if eos not in free[1, 6:].tolist():
        assert torch.equal(out[1], free[1])


def test_padding_mask_path_agrees_with_no_mask():
    model = tiny_model(seed=25).eval()
    ids = torch.randint(0, 1024, (2, 10))
    with torch.no_grad():
        a = model(ids, labels=ids)
        b = model(ids, labels=ids, attention_mask=torch.ones_like(ids))
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.mtp_loss, b.mtp_loss, rtol=1e-5, atol=1e-5)


def test_sampling_is_seeded_and_top_p_narrows_to_greedy():
    model = tiny_model(seed=26).eval()
    ids = torch.randint(0, 1024, (2, 5))
    with torch.no_grad():
        s1 = model.generate(ids, 6, temperature=1.0, eos_token_id=[], generator=torch.Generator().manual_seed(1))
        s2 = model.generate(ids, 6, temperature=1.0, eos_token_id=[], generator=torch.Generator().manual_seed(1))
        greedy = model.generate(ids, 6, eos_token_id=[])
        narrow = model.generate(ids, 6, temperature=1.0, top_p=1e-6, eos_token_id=[],
                                generator=torch.Generator().manual_seed(2))
    assert torch.equal(s1, s2)
    assert torch.equal(narrow, greedy)


def test_right_padded_batches_skip_the_mask_with_the_same_loss_and_gradients():
    """A training batch padded on the right needs no attention mask (a causal query never sees the pads after
    it): `right_padded=True` keeps attention plain causal and must give the masked path's loss, MTP loss
    and gradients."""
    ids = torch.randint(0, 1024, (3, 14), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[0, 9:] = 0  # right pads of different lengths; row 2 has none
    mask[1, 5:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    results = []
    for right_padded in (False, True):
        model = tiny_model(seed=23).train()
        out = model(ids, labels=labels, attention_mask=mask, right_padded=right_padded)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out.lm_loss.detach(), out.mtp_loss.detach(), grads))
    (lm0, mtp0, g0), (lm1, mtp1, g1) = results
    torch.testing.assert_close(lm1, lm0)
    torch.testing.assert_close(mtp1, mtp0)
    assert g0.keys() == g1.keys() and len(g0) > 10
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], msg=name)
