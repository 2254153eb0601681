"""moe_impl "quack": the routed experts on QuACK's fused grouped GEMMs. On CPU the kernels are a FAKE
(tests/fakes/fake_quack.py) and these tests check the wiring: the gathers, the [gate; up] layout through
`concat_layout`, the routing weights folded into the backward, each gradient. The `gpu` test runs the real kernels."""

from __future__ import annotations

import sys

import pytest
import torch
from helpers.moe_layers import forward_backward, moe_layer

from prover.errors import ProverError
from prover.model import ModelConfig, moe_quack
from prover.model.moe import MoE, experts_reference
from prover.model.moe import expert_counts as count_routed
from tests.fakes import fake_quack

torch.set_num_threads(1)


@pytest.fixture
def fake_kernels(monkeypatch):
    monkeypatch.setattr(moe_quack, "kernels", lambda: fake_quack)


def test_quack_path_matches_reference_forward_backward(fake_kernels):
    layer = moe_layer(3)
    x = torch.randn(2, 37, layer.cfg.hidden_size)
    ref, fast = forward_backward(layer, "reference", x), forward_backward(layer, "quack", x)
    torch.testing.assert_close(fast[0], ref[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast[1], ref[1], rtol=1e-5, atol=1e-5)
    # gate.weight's gradient comes only through the routing weights: the kernel's column reduce
    assert set(fast[2]) == set(ref[2]) >= {"experts.gate_up_proj", "experts.down_proj", "gate.weight"}
    for name in ref[2]:
        torch.testing.assert_close(fast[2][name], ref[2][name], rtol=1e-4, atol=1e-5, msg=name)


def test_quack_path_with_experts_without_tokens(fake_kernels):
    torch.manual_seed(4)
    E, H, inter = 6, 8, 4
    gate_up = torch.randn(E, 2 * inter, H, requires_grad=True)
    down = torch.randn(E, H, inter, requires_grad=True)
    x = torch.randn(5, H, requires_grad=True)
    idx = torch.tensor([[0, 3], [3, 0], [0, 3], [3, 5], [0, 5]])  # experts 1, 2, 4 get nothing
    w = torch.rand(5, 2, requires_grad=True)
    counts = count_routed(idx, E)
    outs = {}
    for name, fn in (("reference", lambda: experts_reference(x, idx, w, gate_up, down)),
                     ("quack", lambda: moe_quack.experts_quack(x, idx, w, gate_up, down, counts))):
        y = fn()
        grads = torch.autograd.grad(y.pow(2).sum(), (x, w, gate_up, down))
        outs[name] = (y.detach(), *grads)
    for got, want in zip(outs["quack"], outs["reference"], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert outs["quack"][3][1:3].abs().sum() == 0  # no tokens, no gradient (and nothing stale)


def test_config_accepts_quack_and_rejects_unknown():
    assert ModelConfig.preset("tiny", moe_impl="quack").moe_impl == "quack"
    with pytest.raises(Exception, match="unknown moe_impl"):
        ModelConfig.preset("tiny", moe_impl="quak")


@pytest.mark.gpu
def test_real_kernels_match_reference_in_bf16_eager_and_compiled():
    pytest.importorskip("quack")
    if torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("QuACK's grouped GEMMs need compute capability >= 9.0")
    layer = moe_layer(5, torch.bfloat16, "cuda", hidden_size=256, moe_intermediate_size=128)
    x = torch.randn(4, 256, 256, device="cuda", dtype=torch.bfloat16)

    def run(impl: str, compiled: bool = False):
        layer.impl = impl
        fwd = torch.compile(layer, fullgraph=True) if compiled else layer
        xi = x.clone().requires_grad_(True)
        y, _ = fwd(xi)
        y.float().pow(2).mean().backward()
        grads = [xi.grad.float()] + [p.grad.float() for p in (layer.experts.gate_up_proj, layer.experts.down_proj,
                                                             layer.gate.weight)]
        layer.zero_grad(set_to_none=True)
        return [y.detach().float()] + grads

    ref = run("grouped")
    for compiled in (False, True):
        for got, want in zip(run("quack", compiled), ref, strict=True):
            assert float((got - want).norm() / want.norm()) < 2e-2, compiled


def test_trainer_runs_every_moe_layer_on_quack(fake_kernels):
    """`subgoal train sft --moe-impl quack`: prepare_model puts every MoE layer on the quack path, and the
    training loss and gradients are the default path's."""
    from prover.model import DeepSeekV3
    from prover.train.distributed import DistEnv
    from prover.train.sft import SFTConfig, prepare_model

    def loss_and_grads(impl: str):
        torch.manual_seed(0)
        model = DeepSeekV3(ModelConfig.preset("tiny", moe_impl="batched"))
        cfg = SFTConfig(model="", data="", out="", compile=False, moe_impl=impl)
        model = prepare_model(model, cfg, DistEnv())
        ids = torch.randint(0, 1024, (2, 24), generator=torch.Generator().manual_seed(1))
        loss = model(ids, labels=ids).loss
        loss.backward()
        layers = [m for m in model.modules() if isinstance(m, MoE)]
        return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}, layers

    base, base_grads, _ = loss_and_grads("auto")
    loss, grads, layers = loss_and_grads("quack")
    assert layers and all(m.impl == "quack" for m in layers)
    torch.testing.assert_close(loss, base, rtol=1e-5, atol=1e-6)
    assert set(grads) == set(base_grads)
    for name, g in base_grads.items():
        torch.testing.assert_close(grads[name], g, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("flags,says", [(["--moe-impl", "quack"], "compute capability >= 9.0"),  # on a CPU
                                        (["--moe-impl", "quak"], "unknown --moe-impl 'quak'")])
def test_sft_moe_impl_errors_stop_before_loading_anything(tmp_path, capsys, flags, says):
    # imported here, not at the top: the GPU image lacks the helper's imports (`pytest -m gpu` runs there)
    from helpers.train import assert_sft_refuses_before_loading

    assert_sft_refuses_before_loading(tmp_path, capsys, flags, says)


def test_quack_with_fp8_experts_or_expert_parallel_is_refused(monkeypatch):
    from prover.train import sft
    from prover.train.distributed import DistEnv

    monkeypatch.setattr(moe_quack, "check_quack", lambda device: None)  # as if on an sm90 GPU with quack
    for overrides, says in (({"fp8": True}, "--no-fp8-experts"), ({"ep": 2}, "drop --ep / --pp"),
                            ({"pp": 2}, "drop --ep / --pp")):
        cfg = sft.SFTConfig(model="", data="", out="", moe_impl="quack", **overrides)
        with pytest.raises(ProverError, match=says):
            sft.check_quack_training(cfg, DistEnv())
    sft.check_quack_training(sft.SFTConfig(model="", data="", out="", moe_impl="quack", fp8=True,
                                           fp8_experts=False), DistEnv())


def test_compile_blocks_loads_quack_before_tracing(monkeypatch):
    """torch.compile tracing an import is a graph break the compiled block keeps (the experts then ran eagerly on
    the H200): `compile_blocks` imports QuACK's kernels first, and says so where they are missing."""
    from prover.model import DeepSeekV3

    loaded = []
    monkeypatch.setattr(moe_quack, "kernels", lambda: loaded.append(True) or fake_quack)
    model = DeepSeekV3(ModelConfig.preset("tiny", moe_impl="quack"))
    assert not loaded
    model.compile_blocks()  # compiles lazily: nothing is traced here
    assert loaded
    monkeypatch.undo()
    monkeypatch.setattr(moe_quack, "_quack", None)
    monkeypatch.setitem(sys.modules, "quack", None)
    with pytest.raises(ProverError, match="moe_impl 'quack' needs quack-kernels"):
        DeepSeekV3(ModelConfig.preset("tiny", moe_impl="quack")).compile_blocks()
    DeepSeekV3(ModelConfig.preset("tiny")).compile_blocks()  # the default experts need no QuACK
