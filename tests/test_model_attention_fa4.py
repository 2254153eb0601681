"""`DeepSeekV3.set_attention("fa4")`: plain causal attention on FlashAttention-4's kernels computes what SDPA
computes, forward and every gradient; masked calls stay on SDPA; the custom ops compile without a graph break;
clear errors where FA4 cannot run. The CPU tests run `attention_fa4` on a FAKE of FA4's two entry points
(tests/fakes/fake_fa4.py); the `gpu` test runs the real kernels. Speed: bench/model_gpu.py (rows fa4, attn)."""

from __future__ import annotations

import copy

import pytest
import torch

from prover.model import attention_fa4
from prover.model.testing import tiny_model
from tests.fakes import fake_fa4

torch.set_num_threads(1)


@pytest.fixture
def fake_kernels(monkeypatch):
    monkeypatch.setattr(attention_fa4, "kernels", lambda: fake_fa4)
    monkeypatch.setattr(fake_fa4, "calls", {"fwd": 0, "bwd": 0})
    return fake_fa4.calls


def _loss_and_grads(model, ids, mask=None):
    out = model(ids, attention_mask=mask, labels=ids, right_padded=mask is not None)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.loss.detach(), out.logits.detach(), grads


def _plain_and_fa4():
    plain = tiny_model(seed=0, moe_impl="batched").float().train()
    fast = copy.deepcopy(plain)
    fast.set_attention("fa4")
    return plain, fast


@pytest.mark.parametrize("padded", [False, True], ids=["causal", "right-padded"])
def test_fa4_matches_sdpa_forward_and_every_gradient(fake_kernels, padded):
    ids = torch.randint(2, 1024, (2, 24), generator=torch.Generator().manual_seed(3))
    mask = None
    if padded:  # a training batch: right pads keep attention plain causal (`right_padded=True`)
        mask = torch.ones_like(ids)
        mask[1, 17:] = 0
    plain, fast = _plain_and_fa4()
    (la, xa, ga), (lb, xb, gb) = _loss_and_grads(plain, ids, mask), _loss_and_grads(fast, ids, mask)
    # every attention layer (3 blocks + the MTP module) went through FA4, forward and backward
    assert fake_kernels == {"fwd": 4, "bwd": 4}
    torch.testing.assert_close(lb, la, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(xb, xa, rtol=1e-4, atol=1e-5)
    assert ga.keys() == gb.keys()
    for name in ga:
        torch.testing.assert_close(gb[name], ga[name], rtol=1e-4, atol=1e-6, msg=name)


def test_masked_attention_stays_on_sdpa(fake_kernels):
    """Left padding needs a [B, 1, S, S] mask, which FA4's causal call does not take: SDPA runs it."""
    ids = torch.randint(2, 1024, (2, 16), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # left padding
    plain, fast = _plain_and_fa4()
    with torch.no_grad():
        a, b = plain(ids, attention_mask=mask).logits, fast(ids, attention_mask=mask).logits
    assert fake_kernels["fwd"] == 0
    torch.testing.assert_close(b, a)


def test_custom_ops_compile_without_a_graph_break(fake_kernels):
    """The compiled blocks keep one graph around FA4's forward and backward (their fake shapes are right)."""
    torch.manual_seed(0)
    B, S, H = 2, 12, 3
    q, k = torch.randn(B, S, H, 96, requires_grad=True), torch.randn(B, S, H, 96, requires_grad=True)
    v = torch.randn(B, S, H, 32, requires_grad=True)
    fn = torch.compile(lambda q, k, v: attention_fa4.causal_attention(q, k, v, 0.1).square().sum(),
                       backend="aot_eager", fullgraph=True)
    fn(q, k, v).backward()
    got = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    want = torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                            is_causal=True, scale=0.1)
    want.square().sum().backward()
    assert fake_kernels["bwd"] == 1
    for g, t in zip(got, (q, k, v), strict=True):
        torch.testing.assert_close(g, t.grad, rtol=1e-4, atol=1e-5)


def test_unknown_attention_is_refused():
    with pytest.raises(ValueError, match="unknown attention 'fa3'"):
        tiny_model().set_attention("fa3")


@pytest.mark.gpu
def test_real_kernels_match_sdpa_in_bf16_eager_and_compiled():
    pytest.importorskip("flash_attn.cute")
    if torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("FlashAttention-4's kernels need compute capability >= 9.0")
    torch.manual_seed(0)
    B, S, H = 2, 1024, 16
    q, k = (torch.randn(B, S, H, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    v = torch.randn(B, S, H, 64, device="cuda", dtype=torch.bfloat16)
    dout = torch.randn(B, S, H, 64, device="cuda", dtype=torch.bfloat16)

    def run(fn):
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        out = fn(*leaves)
        out.backward(dout)
        return [out.detach().float()] + [t.grad.float() for t in leaves]

    def sdpa(q, k, v):
        return torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True, scale=128 ** -0.5).transpose(1, 2)

    def fa4(q, k, v):
        return attention_fa4.causal_attention(q, k, v, 128 ** -0.5)

    ref = run(sdpa)
    for fn in (fa4, torch.compile(fa4, fullgraph=True)):
        for got, want in zip(run(fn), ref, strict=True):
            assert float((got - want).norm() / want.norm()) < 1e-2


def test_trainer_puts_every_attention_layer_on_fa4(fake_kernels):
    """`subgoal train sft --attention fa4`: prepare_model switches every MLA (the MTP module's included)."""
    from prover.model.attention import MLA
    from prover.train.distributed import DistEnv
    from prover.train.sft import SFTConfig, prepare_model

    model = prepare_model(tiny_model(seed=0, moe_impl="batched"),
                          SFTConfig(model="", data="", out="", compile=False, attention="fa4"), DistEnv())
    layers = [m for m in model.modules() if isinstance(m, MLA)]
    assert len(layers) == 4 and all(m.fa4 for m in layers)
    ids = torch.randint(2, 1024, (2, 16), generator=torch.Generator().manual_seed(5))
    model(ids, labels=ids).loss.backward()
    assert fake_kernels == {"fwd": 4, "bwd": 4}


@pytest.mark.parametrize("flags,says", [(["--attention", "fa4"], "compute capability >= 9.0"),  # on a CPU
                                        (["--attention", "fa3"], "unknown --attention 'fa3'"),
                                        (["--attention", "fa4", "--pp", "2"], "not wired into --pp")])
def test_sft_attention_errors_stop_before_loading_anything(tmp_path, capsys, flags, says):
    # imported here, not at the top: the GPU image lacks the helper's imports (`pytest -m gpu` runs there)
    from helpers.train import assert_sft_refuses_before_loading

    assert_sft_refuses_before_loading(tmp_path, capsys, flags, says)
