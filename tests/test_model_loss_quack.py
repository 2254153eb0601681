"""`DeepSeekV3.set_loss_impl("quack")`: the output head and cross-entropy fused on QuACK's linear cross-entropy give
the loss, MTP loss and every gradient of the plain path, without making the logits; inference and cached decoding
still make them; clear errors where it cannot run. The CPU tests run `loss_quack` on a FAKE of QuACK's entry point
(tests/fakes/fake_quack.py); the `gpu` test runs the real kernels. Speed: bench/model_gpu.py (rows loss, *-lce)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from prover.model import loss_quack
from prover.model.model import causal_lm_loss
from prover.model.testing import tiny_model
from tests.fakes import fake_quack

torch.set_num_threads(1)


@pytest.fixture
def fake_kernels(monkeypatch):
    monkeypatch.setattr(loss_quack, "kernels", lambda: fake_quack)
    monkeypatch.setattr(fake_quack, "calls", {"linear_cross_entropy": 0})
    return fake_quack.calls


def _plain_and_fused():
    plain = tiny_model(seed=0, moe_impl="batched").float().train()
    fused = copy.deepcopy(plain)
    fused.set_loss_impl("quack")
    return plain, fused


def test_fused_loss_matches_the_plain_one_and_every_gradient(fake_kernels):
    ids = torch.randint(2, 1024, (2, 20), generator=torch.Generator().manual_seed(3))
    labels = ids.clone()
    labels[:, :6] = -100  # a masked prompt
    labels[1, 15:] = -100  # and right padding
    mask = (labels != -100).long()
    mask[:, :6] = 1
    plain, fused = _plain_and_fused()
    outs = []
    for model in (plain, fused):
        out = model(ids, attention_mask=mask, labels=labels, right_padded=True)
        out.loss.backward()
        outs.append((out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (a, ga), (b, gb) = outs
    assert b.logits is None and a.logits is not None
    assert fake_kernels["linear_cross_entropy"] == 2  # the main head and the MTP module's
    for name in ("loss", "lm_loss", "mtp_loss"):
        torch.testing.assert_close(getattr(b, name), getattr(a, name), rtol=1e-5, atol=1e-6, msg=name)
    assert ga.keys() == gb.keys()
    for name in ga:
        torch.testing.assert_close(gb[name], ga[name], rtol=1e-4, atol=1e-6, msg=name)


def test_inference_and_decoding_still_make_logits(fake_kernels):
    ids = torch.randint(2, 1024, (1, 10), generator=torch.Generator().manual_seed(4))
    plain, fused = _plain_and_fused()
    with torch.no_grad():
        torch.testing.assert_close(fused(ids).logits, plain(ids).logits)
        assert fake_kernels["linear_cross_entropy"] == 0
        # with a cache the head makes its logits and the loss is theirs
        a, b = plain(ids, labels=ids, cache=plain.new_cache(1, 16)), fused(ids, labels=ids, cache=fused.new_cache(1, 16))
        torch.testing.assert_close(b.logits, a.logits)
        torch.testing.assert_close(b.lm_loss, a.lm_loss)


def test_next_token_loss_shifts_the_labels_not_the_hidden_states(fake_kernels):
    torch.manual_seed(0)
    hidden, weight = torch.randn(3, 7, 16), torch.randn(40, 16)
    labels = torch.randint(0, 40, (3, 7))
    labels[0, 4] = -100
    want = causal_lm_loss(F.linear(hidden, weight), labels)
    torch.testing.assert_close(loss_quack.next_token_loss(hidden, weight, labels), want)


@pytest.mark.parametrize("n,d", [(16384, 1024), (8192, 4096), (4096, 4096), (4000, 4096), (6144, 2048),
                                 (12288, 4224), (300, 384), (1, 7168)])
def test_no_chunk_has_as_many_rows_as_the_width(n, d):
    """QuACK's dx GEMM refuses a chunk of exactly d rows; the last chunk is padded to a multiple of 128."""
    c = loss_quack.chunk_rows(n, d)
    assert c % 128 == 0
    sizes = [c] * (-(-n // c) - 1) + [-(-(n - (-(-n // c) - 1) * c) // 128) * 128]
    assert d not in sizes, sizes


def test_unknown_loss_impl_is_refused():
    with pytest.raises(ValueError, match="unknown loss_impl 'fused'"):
        tiny_model().set_loss_impl("fused")


def test_trainer_fuses_the_loss(fake_kernels):
    from prover.train.distributed import DistEnv
    from prover.train.sft import SFTConfig, prepare_model

    model = prepare_model(tiny_model(seed=0, moe_impl="batched"),
                          SFTConfig(model="", data="", out="", compile=False, loss_impl="quack"), DistEnv())
    assert model.loss_impl == "quack"
    ids = torch.randint(2, 1024, (2, 16), generator=torch.Generator().manual_seed(5))
    model(ids, labels=ids).loss.backward()
    assert fake_kernels["linear_cross_entropy"] == 2


@pytest.mark.parametrize("flags,says", [(["--loss-impl", "quack"], "compute capability >= 9.0"),  # on a CPU
                                        (["--loss-impl", "fused"], "unknown --loss-impl 'fused'"),
                                        (["--loss-impl", "quack", "--pp", "2"], "not wired into --pp")])
def test_sft_loss_impl_errors_stop_before_loading_anything(tmp_path, capsys, flags, says):
    # imported here, not at the top: the GPU image lacks the helper's imports (`pytest -m gpu` runs there)
    from helpers.train import assert_sft_refuses_before_loading

    assert_sft_refuses_before_loading(tmp_path, capsys, flags, says)


@pytest.mark.gpu
def test_real_kernels_match_the_plain_loss_in_bf16():
    pytest.importorskip("quack")
    if torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("QuACK's linear cross-entropy needs compute capability >= 9.0")
    torch.manual_seed(0)
    hidden = torch.randn(4, 1024, 512, device="cuda", dtype=torch.bfloat16)
    weight = torch.randn(32000, 512, device="cuda", dtype=torch.bfloat16) * 0.05
    labels = torch.randint(0, 32000, (4, 1024), device="cuda")
    labels[:, :100] = -100

    def run(fn):
        h, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
        loss = fn(h, w)
        loss.backward()
        return loss.detach().float(), h.grad.float(), w.grad.float()

    want = run(lambda h, w: causal_lm_loss(F.linear(h, w), labels))
    got = run(lambda h, w: loss_quack.next_token_loss(h, w, labels))
    assert abs(float(got[0] - want[0])) < 1e-2 * float(want[0])
    for g, w in zip(got[1:], want[1:], strict=True):
        assert float((g - w).norm() / w.norm()) < 2e-2
