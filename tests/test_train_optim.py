"""MasterWeightAdamW: exactly AdamW for fp32 parameters; for bf16 parameters, AdamW on fp32 master weights whose
rounding the model computes with; its state (masters, moments) stays fp32 through a save/load."""

from __future__ import annotations

import copy

import pytest
import torch

from prover.model import DeepSeekV3, ModelConfig
from prover.train.optim import MasterWeightAdamW

torch.set_num_threads(1)
HYPER = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)


def _params(dtype: torch.dtype, seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=g).to(dtype)) for shape in [(7, 5), (3,), (2, 4, 6)]]


def _grads(step: int, like: list[torch.Tensor]) -> list[torch.Tensor]:
    """Gradients exactly representable in bf16, so both optimizers see the same numbers."""
    g = torch.Generator().manual_seed(100 + step)
    return [torch.randn(p.shape, generator=g).to(torch.bfloat16).float() for p in like]


def _run(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], steps: range) -> None:
    for t in steps:
        for p, g in zip(params, _grads(t, params), strict=True):
            p.grad = g.to(p.dtype)
        opt.step()
        opt.zero_grad(set_to_none=True)


def test_fp32_parameters_are_exactly_adamw():
    ours, ref = _params(torch.float32), _params(torch.float32)
    _run(MasterWeightAdamW(ours, **HYPER), ours, range(6))
    _run(torch.optim.AdamW(ref, **HYPER), ref, range(6))
    for a, b in zip(ours, ref, strict=True):
        assert torch.equal(a, b)


def test_bf16_parameters_follow_fp32_adamw_through_their_masters():
    low, ref = _params(torch.bfloat16), [torch.nn.Parameter(p.detach().float()) for p in _params(torch.bfloat16)]
    opt = MasterWeightAdamW(low, **HYPER)
    _run(opt, low, range(8))
    _run(torch.optim.AdamW(ref, **HYPER), ref, range(8))
    for p, r in zip(low, ref, strict=True):
        state = opt.state[p]
        assert p.dtype == torch.bfloat16
        assert state["master"].dtype == state["exp_avg"].dtype == state["exp_avg_sq"].dtype == torch.float32
        assert torch.equal(state["master"], r)  # the fp32 trajectory, unaffected by bf16 rounding
        assert torch.equal(p, r.to(torch.bfloat16))  # the model computes with its rounding
        assert not torch.equal(p.float(), r)  # (and bf16 alone would have lost precision)


@pytest.mark.parametrize("moments", [torch.float32, torch.bfloat16], ids=["fp32 moments", "bf16 moments, compiled"])
def test_state_dict_round_trip_keeps_the_state_dtypes_and_resumes_exactly(moments):
    def make(params):
        return (MasterWeightAdamW(params, **HYPER) if moments == torch.float32
                else _compiled_eager(params, moment_dtype=moments, **HYPER))

    straight = _params(torch.bfloat16)
    _run(make(straight), straight, range(6))

    first = _params(torch.bfloat16)
    opt = make(first)
    _run(opt, first, range(3))
    saved = copy.deepcopy(opt.state_dict())
    resumed = [torch.nn.Parameter(p.detach().clone()) for p in first]
    opt2 = make(resumed)
    opt2.load_state_dict(saved)
    assert all(opt2.state[p]["master"].dtype == torch.float32 for p in resumed)
    assert all(opt2.state[p]["exp_avg"].dtype == opt2.state[p]["exp_avg_sq"].dtype == moments for p in resumed)
    _run(opt2, resumed, range(3, 6))
    for a, b in zip(straight, resumed, strict=True):
        assert torch.equal(a, b)


def test_bf16_training_with_master_weights_tracks_fp32_training():
    """The tiny MoE trained 12 steps in bf16 (master weights) ends within 2% of the fp32 run's loss."""
    cfg = ModelConfig.preset("tiny")
    torch.manual_seed(0)
    base = DeepSeekV3(cfg)
    ids = torch.randint(0, cfg.vocab_size, (4, 32), generator=torch.Generator().manual_seed(1))
    losses = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = copy.deepcopy(base).to(dtype).train()
        opt = MasterWeightAdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.0)
        for _ in range(12):
            loss = model(ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            losses[dtype] = float(model(ids, labels=ids).loss)
            start = float(base(ids, labels=ids).loss)
    assert losses[torch.float32] < start - 0.5  # it did learn
    assert abs(losses[torch.bfloat16] - losses[torch.float32]) < 0.02 * losses[torch.float32]


def _compiled_eager(params, **kw) -> MasterWeightAdamW:
    """The compiled path with its update run eagerly (inductor is the slow test's business)."""
    from prover.train.optim import master_adamw_

    opt = MasterWeightAdamW(params, compiled=True, **kw)
    opt._update = master_adamw_
    return opt


def test_compiled_update_is_the_master_weight_update():
    low, ref = _params(torch.bfloat16), _params(torch.bfloat16)
    opt = _compiled_eager(low, **HYPER)
    ref_opt = MasterWeightAdamW(ref, **HYPER)
    _run(opt, low, range(8))
    _run(ref_opt, ref, range(8))
    for p, r in zip(low, ref, strict=True):
        assert p.dtype == torch.bfloat16 and opt.state[p]["exp_avg"].dtype == torch.float32
        torch.testing.assert_close(opt.state[p]["master"], ref_opt.state[r]["master"], rtol=1e-6, atol=1e-7)
        assert torch.equal(p, opt.state[p]["master"].to(torch.bfloat16))  # rounded into the parameter
        assert float(opt.state[p]["step"]) == 8


def test_per_tensor_update_is_the_same_update():
    """`per_tensor` calls the update once per tensor, on flat views (one compiled graph for every shape): the same
    masters, moments and parameters as the update over all tensors at once."""
    low, ref = _params(torch.bfloat16), _params(torch.bfloat16)
    opt, whole = _compiled_eager(low, per_tensor=True, **HYPER), _compiled_eager(ref, **HYPER)
    _run(opt, low, range(5))
    _run(whole, ref, range(5))
    for p, r in zip(low, ref, strict=True):
        for k in ("master", "exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt.state[p][k], whole.state[r][k]), k
        assert torch.equal(p, r) and p.shape == r.shape
    with pytest.raises(ValueError, match="compiled=True"):
        MasterWeightAdamW(_params(torch.bfloat16), per_tensor=True, **HYPER)


def test_bf16_moments_stay_bf16_and_track_fp32_moments():
    low, ref = _params(torch.bfloat16), _params(torch.bfloat16)
    start = [p.detach().float() for p in low]
    opt = _compiled_eager(low, moment_dtype=torch.bfloat16, **HYPER)
    ref_opt = MasterWeightAdamW(ref, **HYPER)
    _run(opt, low, range(8))
    _run(ref_opt, ref, range(8))
    for p, r, p0 in zip(low, ref, start, strict=True):
        s = opt.state[p]
        assert s["exp_avg"].dtype == s["exp_avg_sq"].dtype == torch.bfloat16 and s["master"].dtype == torch.float32
        assert (s["master"] - p0).abs().min() > 1e-3  # every weight moved (lr 1e-2, 8 steps)...
        torch.testing.assert_close(s["master"], ref_opt.state[r]["master"], rtol=0, atol=2e-3)  # ...as fp32's did


@pytest.mark.slow
def test_per_tensor_update_compiles_one_graph_for_every_shape():
    from torch._dynamo.utils import counters

    low, ref = _params(torch.bfloat16), _params(torch.bfloat16)
    torch._dynamo.reset()
    counters.clear()
    compiled = MasterWeightAdamW(low, compiled=True, per_tensor=True, **HYPER)
    _run(compiled, low, range(3))
    eager = _compiled_eager(ref, **HYPER)
    _run(eager, ref, range(3))
    assert counters["stats"]["unique_graphs"] <= 2  # (a first static compile, then the dynamic one)
    for p, r in zip(low, ref, strict=True):
        torch.testing.assert_close(compiled.state[p]["master"], eager.state[r]["master"], rtol=1e-6, atol=1e-7)


def test_per_tensor_update_keeps_the_hyperparameters_constants():
    """Compiled with `dynamic=True`, the update took betas, eps and weight decay as graph inputs: tensors made
    from the floats on every call, per tensor and step, each a host-to-device copy on a GPU (likely the H200
    profile's 1,397 host syncs a step). Only the sizes may be dynamic."""
    from torch.profiler import profile

    low = _params(torch.bfloat16)
    torch._dynamo.reset()
    opt = MasterWeightAdamW(low, compiled=True, per_tensor=True, **HYPER)
    _run(opt, low, range(3))
    for p, g in zip(low, _grads(3, low), strict=True):
        p.grad = g.to(p.dtype)
    with profile() as prof:
        opt.step()
    ops = {e.key: e.count for e in prof.key_averages()}
    assert ops.get("Torch-Compiled Region: 0/1", 0) + ops.get("Torch-Compiled Region: 0/0", 0) == len(low)
    assert "aten::lift_fresh" not in ops and "aten::scalar_tensor" not in ops, ops


@pytest.mark.slow
def test_torch_compile_of_the_update_matches_its_eager_run():
    low, ref = _params(torch.bfloat16), _params(torch.bfloat16)
    compiled = MasterWeightAdamW(low, compiled=True, **HYPER)
    _run(compiled, low, range(4))
    eager = _compiled_eager(ref, **HYPER)
    _run(eager, ref, range(4))
    assert compiled._update is not None and compiled._update is not eager._update
    for p, r in zip(low, ref, strict=True):
        torch.testing.assert_close(compiled.state[p]["master"], eager.state[r]["master"], rtol=1e-6, atol=1e-7)


def test_grad_scale_is_clipping_inside_the_update():
    """step(grad_scale=c) is AdamW on the gradients times c, c taken in fp32 (no bf16 rounding of the scaled
    gradients), compiled or not; clip_coefficient's norm is clip_grad_norm_'s."""
    from prover.parallel import clip_coefficient, clip_grad_norm_

    for make in (lambda ps: MasterWeightAdamW(ps, **HYPER), lambda ps: _compiled_eager(ps, **HYPER)):
        low = _params(torch.bfloat16)
        ref = [torch.nn.Parameter(p.detach().float()) for p in low]
        opt, ref_opt = make(low), torch.optim.AdamW(ref, **HYPER)
        for t in range(3):
            for p, g in zip(low, _grads(t, low), strict=True):
                p.grad = (g * 10).to(p.dtype)  # norm well above 1: clipping bites
            norm, coef = clip_coefficient(low, 1.0)
            assert float(coef) < 0.2
            assert torch.equal(clip_grad_norm_([_with_grad(p) for p in low], 1.0), norm)  # (on copies)
            for r, p in zip(ref, low, strict=True):
                r.grad = p.grad.float() * coef
            opt.step(grad_scale=coef)
            ref_opt.step()
            for p in low:
                p.grad = None
        for p, r in zip(low, ref, strict=True):
            torch.testing.assert_close(opt.state[p]["master"], r.detach(), rtol=1e-6, atol=1e-7)


def _with_grad(p: torch.Tensor) -> torch.nn.Parameter:
    q = torch.nn.Parameter(p.detach().clone())
    q.grad = p.grad.clone()
    return q


def test_bf16_moments_without_the_compiled_update_are_refused():
    with pytest.raises(ValueError, match="compiled=True"):
        MasterWeightAdamW(_params(torch.bfloat16), moment_dtype=torch.bfloat16)
