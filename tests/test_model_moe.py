"""DeepSeekMoE: routing semantics, the fast (sorted + grouped GEMM) path against the reference loop, balancing."""

from __future__ import annotations

import pytest
import torch
from helpers.moe_layers import forward_backward, moe_layer

from prover.model import DeepSeekV3, ModelConfig
from prover.model.balance import expert_counts, expert_load, load_summary, update_bias
from prover.model.moe import MoE, experts_reference, experts_sorted
from prover.model.moe import expert_counts as count_routed

torch.set_num_threads(1)


def _layer(seed: int = 0, dtype=torch.float32, device="cpu", **overrides) -> MoE:
    return moe_layer(seed, dtype, device, **overrides)


def test_router_matches_group_limited_definition():
    layer = _layer(1)
    x = torch.randn(50, layer.cfg.hidden_size)
    weights, idx, scores = layer.gate(x)
    cfg = layer.cfg
    per_group = cfg.n_routed_experts // cfg.n_group
    biased = scores + layer.gate.e_score_correction_bias
    for t in range(x.shape[0]):
        # the chosen experts lie in the topk_group groups with the best top-2 biased sums
        group_score = biased[t].view(cfg.n_group, per_group).topk(2).values.sum(-1)
        allowed = set(group_score.topk(cfg.topk_group).indices.tolist())
        assert {int(e) // per_group for e in idx[t]} <= allowed
        # and are the best biased experts inside those groups
        masked = torch.full_like(biased[t], float("-inf"))
        for g in allowed:
            masked[g * per_group:(g + 1) * per_group] = biased[t, g * per_group:(g + 1) * per_group]
        assert set(idx[t].tolist()) == set(masked.topk(cfg.num_experts_per_tok).indices.tolist())
    # weights: unbiased sigmoid scores of the chosen experts, normalized, times routed_scaling_factor
    expect = scores.gather(1, idx)
    expect = expect / expect.sum(-1, keepdim=True) * cfg.routed_scaling_factor
    torch.testing.assert_close(weights, expect)


def test_bias_changes_selection_not_weights():
    layer = _layer(2)
    x = torch.randn(64, layer.cfg.hidden_size)
    with torch.no_grad():
        layer.gate.e_score_correction_bias.zero_()
        _, idx0, scores0 = layer.gate(x)
        layer.gate.e_score_correction_bias[5] = 10.0  # force expert 5 everywhere
        w1, idx1, scores1 = layer.gate(x)
    assert not torch.equal(idx0, idx1)
    assert (idx1 == 5).any(-1).all()
    torch.testing.assert_close(scores0, scores1)
    expect = scores1.gather(1, idx1)
    torch.testing.assert_close(w1, expect / expect.sum(-1, keepdim=True) * layer.cfg.routed_scaling_factor)


@pytest.mark.parametrize("impl", ["batched", "grouped"])
def test_fast_path_matches_reference_forward_backward(impl):
    if impl == "grouped":
        try:  # torch._grouped_mm has CPU kernels in recent torch; elsewhere this case is covered on GPU only
            torch._grouped_mm(torch.randn(16, 16), torch.randn(2, 16, 16), offs=torch.tensor([5, 16], dtype=torch.int32))
        except Exception as e:
            pytest.skip(f"torch._grouped_mm not usable on CPU here: {e}")
    layer = _layer(3)
    x = torch.randn(2, 37, layer.cfg.hidden_size)
    ref, fast = forward_backward(layer, "reference", x), forward_backward(layer, impl, x)
    torch.testing.assert_close(fast[0], ref[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast[1], ref[1], rtol=1e-5, atol=1e-5)
    assert set(fast[2]) == set(ref[2]) and "experts.gate_up_proj" in ref[2]
    for name in ref[2]:
        torch.testing.assert_close(fast[2][name], ref[2][name], rtol=1e-4, atol=1e-5, msg=name)


def test_fast_path_handles_experts_without_tokens():
    torch.manual_seed(4)
    E, H, inter = 6, 8, 4
    gate_up, down = torch.randn(E, 2 * inter, H), torch.randn(E, H, inter)
    x = torch.randn(5, H)
    idx = torch.tensor([[0, 3], [3, 0], [0, 3], [3, 5], [0, 5]])  # experts 1, 2, 4 get nothing
    w = torch.rand(5, 2)
    counts = count_routed(idx, E)
    assert counts.tolist() == [4, 0, 0, 4, 0, 2]
    ref = experts_reference(x, idx, w, gate_up, down)
    torch.testing.assert_close(experts_sorted(x, idx, w, gate_up, down, counts, "batched"), ref)


def test_counts_and_bias_update():
    torch.manual_seed(5)
    model = DeepSeekV3(ModelConfig.preset("tiny"))
    ids = torch.randint(0, 1024, (2, 16))
    model.eval()
    model(ids)
    assert int(expert_counts(model).sum()) == 0  # eval forwards do not count
    model.train()
    model(ids)
    counts = expert_counts(model)
    n_moe = len(model.moe_layers())
    cfg = model.config
    assert counts.shape == (n_moe, cfg.n_routed_experts)
    # main layers see B*S tokens, the MTP layer sees B*(S-1) only when labels are given (not here: 0)
    per_layer = counts.sum(1).tolist()
    assert per_layer[: n_moe - 1] == [2 * 16 * cfg.num_experts_per_tok] * (n_moe - 1)
    load = expert_load(model)
    assert len(load["layers"]) == n_moe and load["summary"]["max_violation_worst"] >= 0
    before = [m.gate.e_score_correction_bias.clone() for m in model.moe_layers()]
    used = update_bias(model, gamma=0.01)
    assert torch.equal(used, counts)
    assert int(expert_counts(model).sum()) == 0  # reset
    for m, b0, c in zip(model.moe_layers(), before, counts, strict=True):
        delta = m.gate.e_score_correction_bias - b0
        if c.sum() == 0:
            assert torch.all(delta == 0)
            continue
        mean = c.float().mean()
        torch.testing.assert_close(delta, 0.01 * torch.sign(mean - c.float()))


def test_bias_update_balances_load():
    """Aux-loss-free balancing does its job: a skewed router becomes balanced after some updates."""
    layer = _layer(6)
    with torch.no_grad():
        layer.gate.e_score_correction_bias.zero_()
        layer.gate.weight[:4] += 0.5  # experts 0..3 preferred by every token
    layer.train()
    x = torch.randn(1, 256, layer.cfg.hidden_size)

    def violation() -> float:
        layer.tokens_per_expert.zero_()
        with torch.no_grad():
            layer(x)
        return load_summary(layer.tokens_per_expert[None])["max_violation_worst"]

    start = violation()
    for _ in range(200):
        with torch.no_grad():
            layer(x)
        update_bias(layer, gamma=0.005)
    end = violation()
    assert end < 0.5 * start, (start, end)


def test_bias_stays_float32_under_bf16():
    layer = _layer(7).to(torch.bfloat16)
    assert layer.gate.e_score_correction_bias.dtype == torch.float32
    assert layer.gate.weight.dtype == torch.bfloat16
    assert layer.tokens_per_expert.dtype == torch.int64


def test_sequence_balance_loss_added_and_differentiable():
    torch.manual_seed(8)
    cfg = ModelConfig.preset("tiny", aux_loss_alpha=0.01)
    model = DeepSeekV3(cfg).train()
    ids = torch.randint(0, 1024, (2, 12))
    out = model(ids, labels=ids)
    assert out.aux_loss is not None and out.aux_loss > 0
    torch.testing.assert_close(out.loss, out.lm_loss + cfg.mtp_loss_weight * out.mtp_loss + out.aux_loss)
    out.aux_loss.backward()
    assert model.model.layers[1].mlp.gate.weight.grad.abs().sum() > 0


@pytest.mark.gpu
def test_grouped_mm_on_gpu_matches_reference_bf16():
    from prover.model.moe import grouped_mm_supported

    x = torch.randn(4, 300, 64, device="cuda", dtype=torch.bfloat16)
    if not grouped_mm_supported(x):
        pytest.skip("torch._grouped_mm needs bf16 on sm90+")
    layer = _layer(9, dtype=torch.bfloat16, device="cuda")
    res = {}
    for mode in ("reference", "grouped"):
        layer.impl = mode
        xi = x.clone().requires_grad_(True)
        y, _ = layer(xi)
        y.float().pow(2).mean().backward()
        res[mode] = (y.float(), xi.grad.float(), layer.experts.gate_up_proj.grad.float())
        layer.zero_grad(set_to_none=True)
    for a, b in zip(res["grouped"], res["reference"], strict=True):
        assert torch.isfinite(a).all()
        assert ((a - b).norm() / b.norm()).item() < 2e-2


def test_model_built_on_meta_materializes_with_to_empty():
    with torch.device("meta"):
        model = DeepSeekV3(ModelConfig.preset("tiny"))
    model.to_empty(device="cpu")
    bias = model.moe_layers()[0].gate.e_score_correction_bias
    assert bias.device.type == "cpu" and bias.dtype == torch.float32


def test_fast_path_under_autocast_matches_reference():
    """fp32 master weights under bf16 autocast: the experts compute in bf16 like nn.Linear would."""
    torch.manual_seed(0)
    layer = MoE(ModelConfig.preset("tiny"))
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(2, 8, layer.cfg.hidden_size)
    ref = layer(x)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)[0]
    assert y.dtype == torch.bfloat16
    assert (y.float() - ref).norm() / ref.norm() < 2e-2


def test_padding_is_not_counted_as_expert_load():
    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny", num_nextn_predict_layers=0)
    model = DeepSeekV3(cfg).train()
    ids = torch.randint(0, cfg.vocab_size, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[0, 7:] = 0  # right padding: 3 pad tokens in the first row
    model(ids, attention_mask=mask, labels=ids)
    real = int(mask.sum())
    for layer_counts in expert_counts(model):
        assert int(layer_counts.sum()) == real * cfg.num_experts_per_tok


def test_sequence_balance_loss_ignores_padding():
    from prover.model.moe import sequence_balance_loss

    torch.manual_seed(0)
    scores, idx = torch.rand(1, 6, 8), torch.randint(0, 8, (1, 6, 2))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    masked = sequence_balance_loss(scores, idx, 0.1, mask)
    assert torch.allclose(masked, sequence_balance_loss(scores[:, :4], idx[:, :4], 0.1))


def test_groups_padded_to_16_rows_give_the_unpadded_grouped_gemm():
    """torchao's FP8 grouped GEMM takes groups of multiples of 16 rows: the padded copy must compute exactly the
    unpadded product and gradients (checked with the plain grouped GEMM, which takes any group size)."""
    from prover.model.moe import Segments, grouped_gemm, pad_groups, padded_grouped

    if not hasattr(torch, "_grouped_mm"):
        pytest.skip("this torch has no torch._grouped_mm")
    torch.manual_seed(0)
    counts = torch.tensor([5, 0, 17, 16, 1])  # empty, exact multiple and ragged groups
    n, e = int(counts.sum()), len(counts)
    offs = counts.cumsum(0)
    expert = torch.repeat_interleave(torch.arange(e), counts)
    seg = Segments(counts, offs.to(torch.int32), expert, torch.arange(n) - (offs - counts)[expert])
    dest, ends, rows = pad_groups(seg, n)
    assert rows % 16 == 0 and rows >= int(ends[-1]) and all(int(c) % 16 == 0 for c in torch.diff(ends, prepend=ends[:1] * 0))
    assert len(set(dest.tolist())) == n  # every row has its own place
    x = torch.randn(n, 32, dtype=torch.bfloat16, requires_grad=True)
    w = torch.randn(e, 48, 32, dtype=torch.bfloat16, requires_grad=True)
    try:
        want = grouped_gemm(x, w, seg)
    except RuntimeError as err:  # no CPU kernel for this dtype in this torch
        pytest.skip(f"torch._grouped_mm does not run here: {err}")
    got = padded_grouped(lambda a, b, o: torch._grouped_mm(a, b, offs=o), x, w, seg)
    assert torch.equal(got, want)
    g = torch.randn_like(want)
    gx, gw = torch.autograd.grad(want, (x, w), g)
    px, pw = torch.autograd.grad(got, (x, w), g)
    assert torch.allclose(px.float(), gx.float(), atol=1e-2) and torch.allclose(pw.float(), gw.float(), atol=1e-2)


def _segments(counts: torch.Tensor):
    from prover.model.moe import Segments

    n, offs = int(counts.sum()), counts.cumsum(0)
    expert = torch.repeat_interleave(torch.arange(len(counts)), counts)
    return Segments(counts, offs.to(torch.int32), expert, torch.arange(n) - (offs - counts)[expert])


def test_padded_groups_move_rows_by_gathers_only():
    """A scatter of whole rows (index_copy, index_put, index_add: `index_select`'s backward) is an aten kernel
    inductor leaves unfused; on the H200 it took 13.5-20 ms of each FP8 step. Forward and backward of the padded
    grouped GEMM write rows by gathers; only row numbers (1-D) are scattered."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from prover.model.moe import pad_groups, padded_grouped

    class Scatters(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.wide = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.__name__
            if any(k in name for k in ("index_copy", "index_put", "index_add", "scatter")) and args[0].dim() > 1:
                self.wide.append(name)
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    seg = _segments(torch.tensor([5, 0, 17, 16, 1]))
    x = torch.randn(39, 32, requires_grad=True)
    w = torch.randn(5, 48, 32, requires_grad=True)
    seen = []

    def gemm(a, b, offs):  # stands in for the FP8 grouped GEMM: group by group, any dtype
        seen.append(a.detach().clone())
        starts = torch.cat([offs.new_zeros(1), offs[:-1]]).tolist()
        return torch.cat([a[s:e] @ b[g] for g, (s, e) in enumerate(zip(starts, offs.tolist(), strict=True))]
                         + [a.new_zeros(a.shape[0] - int(offs[-1]), b.shape[-1])])

    with Scatters() as mode:
        out = padded_grouped(gemm, x, w, seg)
        gx, gw = torch.autograd.grad(out, (x, w), torch.ones_like(out))
    assert mode.wide == []
    want = torch.cat([x[seg.expert == e] @ w[e].T for e in range(5)])
    assert torch.allclose(out, want, atol=1e-5)
    wx, ww = torch.autograd.grad(want, (x, w), torch.ones_like(want))
    assert torch.allclose(gx, wx, atol=1e-4) and torch.allclose(gw, ww, atol=1e-4)
    real = torch.zeros(seen[0].shape[0], dtype=torch.bool)
    real[pad_groups(seg, 39)[0]] = True
    assert seen[0][~real].abs().sum() == 0  # the pad rows the GEMM sees are zeros


def test_padded_groups_with_no_rows():
    """An expert-parallel rank can receive no token copies: an empty output, and zero (not missing) gradients."""
    from prover.model.moe import padded_grouped

    seg = _segments(torch.tensor([0, 0, 0]))
    x = torch.zeros(0, 8, requires_grad=True)
    w = torch.randn(3, 4, 8, requires_grad=True)
    out = padded_grouped(lambda a, b, offs: a @ b[0], x, w, seg)
    assert out.shape == (0, 4)
    gx, gw = torch.autograd.grad(out.sum(), (x, w))
    assert gx.shape == (0, 8) and torch.equal(gw, torch.zeros_like(w))
