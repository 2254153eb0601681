"""GPU + torchao (skips without either): the blockwise FP8 linears (DeepSeek-V3's 1x128 / 128x128 scaling) run
inside torch.compile with no graph break, and compiled they compute what they compute eagerly.

Run on an FP8 GPU (Hopper) with torchao installed: `python -m pytest -q -m gpu tests/test_gpu_fp8.py`."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def hopper():
    pytest.importorskip("torchao")
    pytest.importorskip("triton")
    if torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("the blockwise FP8 recipe needs compute capability >= 9.0 (Hopper)")
    torch._dynamo.reset()


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.float() - want.float()).norm() / want.float().norm())


def test_blockwise_linear_compiles_whole_and_matches_eager_and_bf16():
    from prover.model.fp8 import row_padded_blockwise_linear

    torch.manual_seed(0)
    ref = nn.Linear(1024, 2048, bias=False, device="cuda", dtype=torch.bfloat16)
    fp8 = row_padded_blockwise_linear().from_float(nn.Linear(1024, 2048, bias=False, device="cuda",
                                                             dtype=torch.bfloat16))
    fp8.weight = nn.Parameter(ref.weight.detach().clone())
    compiled = torch.compile(fp8, fullgraph=True)  # a graph break (the old `_scaled_mm_v2` call) raises here
    x = torch.randn(3, 100, 1024, device="cuda", dtype=torch.bfloat16, requires_grad=True)  # 300 rows: padded
    g = torch.randn(3, 100, 2048, device="cuda", dtype=torch.bfloat16)

    def run(mod):
        out = mod(x)
        gx, gw = torch.autograd.grad(out, (x, mod.weight), g)
        return out, gx, gw

    eager, comp, bf16 = run(fp8), run(compiled), run(ref)
    for e, c, b in zip(eager, comp, bf16, strict=True):
        assert e.shape == c.shape == b.shape
        assert rel_err(c, e) < 1e-3  # the same kernels, scales and GEMMs
        assert rel_err(c, b) < 0.08  # e4m3 with 128-wide scales: a few percent from bf16, not garbage


def test_dense_model_with_blockwise_linears_compiles_fullgraph_and_trains():
    from prover.model import DeepSeekV3, ModelConfig
    from prover.model.fp8 import convert_to_fp8

    torch.manual_seed(0)
    cfg = ModelConfig.preset("small", num_hidden_layers=2, first_k_dense_replace=2, num_nextn_predict_layers=0)
    model = DeepSeekV3(cfg).cuda().bfloat16()
    plan = convert_to_fp8(model, "blockwise")
    assert any("layers.0.mlp" in n for n in plan.convert) and any("self_attn.o_proj" in n for n in plan.convert)
    model.compile_blocks(fullgraph=True)
    ids = torch.randint(0, cfg.vocab_size, (2, 300), device="cuda")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):  # one batch, repeated: the loss must fall
        loss = model(ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss))
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
