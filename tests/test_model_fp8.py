"""FP8 training (prover.model.fp8): which modules get FP8 GEMMs and which keep their precision, the clear errors
where FP8 cannot run, the wiring through torchao's CPU emulation, and the `medium` preset it is meant for."""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from torch import nn

from prover.errors import ProverError
from prover.model import DeepSeekV3, ModelConfig
from prover.model.attention import MLA, RMSNorm
from prover.model.fp8 import check_fp8, convert_to_fp8, fp8_plan
from prover.model.moe import RoutedExperts, Router

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small() -> DeepSeekV3:
    with torch.device("meta"):
        return DeepSeekV3(ModelConfig.preset("small"))


@pytest.mark.parametrize("recipe", ["blockwise", "rowwise"])
def test_projections_and_experts_are_converted(small, recipe):
    plan = fp8_plan(small, recipe)
    block = "model.layers.3"
    for proj in ("q_a_proj", "q_b_proj", "kv_b_proj", "o_proj"):
        assert plan.convert[f"{block}.self_attn.{proj}"] == f"{recipe} FP8 linear"
    for proj in ("gate_proj", "up_proj", "down_proj"):
        assert plan.convert[f"{block}.mlp.shared_experts.{proj}"] == f"{recipe} FP8 linear"
        assert plan.convert[f"model.layers.0.mlp.{proj}"] == f"{recipe} FP8 linear"  # the dense layer
    assert plan.convert[f"{block}.mlp.experts"] == "rowwise FP8 grouped GEMM"
    assert plan.convert["mtp.0.mlp.experts"] == "rowwise FP8 grouped GEMM"


def test_experts_can_stay_bf16_while_the_dense_linears_go_fp8(small):
    """`--no-fp8-experts`: every routed-expert module is kept, and every linear is converted as before."""
    full, dense = fp8_plan(small), fp8_plan(small, experts=False)
    experts = [n for n, m in small.named_modules() if isinstance(m, RoutedExperts)]
    assert experts and all("as asked" in dense.keep[n] for n in experts) and not set(experts) & set(dense.convert)
    assert {n: h for n, h in full.convert.items() if n not in experts} == dense.convert


@pytest.mark.parametrize("kind,reason", [(nn.Embedding, "embedding"), (Router, "router"), (RMSNorm, "normalization"),
                                         (MLA, "attention core")])
def test_paper_keeps_these_in_high_precision(small, kind, reason):
    plan = fp8_plan(small)
    names = [n for n, m in small.named_modules() if isinstance(m, kind)]
    assert names and all(reason in plan.keep[n] for n in names) and not set(names) & set(plan.convert)


def test_output_head_is_kept(small):
    plan = fp8_plan(small)
    assert "output head" in plan.keep["lm_head"] and "lm_head" not in plan.convert


def test_blockwise_keeps_projections_that_do_not_tile(small):
    """kv_a_proj_with_mqa is 1024 -> 512 + 64: not a multiple of 128 (blockwise), a multiple of 16 (rowwise)."""
    name = "model.layers.3.self_attn.kv_a_proj_with_mqa"
    assert "not multiples of 128" in fp8_plan(small, "blockwise").keep[name]
    assert name in fp8_plan(small, "rowwise").convert


def test_unknown_recipe_is_one_clear_error(small):
    with pytest.raises(ProverError, match="unknown FP8 recipe 'tensorwise'"):
        fp8_plan(small, "tensorwise")


def _fake_gpu(monkeypatch, cc: tuple[int, int]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: cc)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "FAKE GPU")


def test_no_cuda_is_a_clear_error():
    with pytest.raises(ProverError, match=r"--fp8 needs a CUDA GPU .*the device is cpu"):
        check_fp8(torch.device("cpu"))


def test_gpu_without_fp8_tensor_cores_is_a_clear_error(monkeypatch):
    _fake_gpu(monkeypatch, (8, 0))
    with pytest.raises(ProverError, match=r"compute capability >= 8.9 .*FAKE GPU is 8.0"):
        check_fp8(torch.device("cuda"), "rowwise")


def test_blockwise_on_ada_points_to_rowwise(monkeypatch):
    _fake_gpu(monkeypatch, (8, 9))
    with pytest.raises(ProverError, match="use --fp8-recipe rowwise"):
        check_fp8(torch.device("cuda"), "blockwise")


def test_missing_torchao_says_what_to_install(monkeypatch):
    _fake_gpu(monkeypatch, (9, 0))
    monkeypatch.setitem(sys.modules, "torchao", None)  # import torchao -> ImportError
    with pytest.raises(ProverError, match=r"pip install 'torchao==0.18.0'"):
        check_fp8(torch.device("cuda"))


@pytest.mark.parametrize("flag,says", [("--fp8", "--fp8 needs a CUDA GPU"),  # FP8 on a CPU
                                       ("--no-fp8-experts", "add --fp8")])  # a choice within --fp8, without it
def test_sft_fp8_flags_on_cpu_stop_before_loading_anything(tmp_path, capsys, flag, says):
    from eval.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "sft", "--model", str(tmp_path / "no-such-model"), "--data", str(tmp_path / "none.jsonl"),
              "--out", str(tmp_path / "out"), flag, "--device", "cpu"])
    assert e.value.code != 0
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and not (tmp_path / "out").exists()


def test_rowwise_conversion_wiring_under_cpu_emulation(monkeypatch):
    """torchao's emulated FP8 linears on CPU: the planned linears are swapped, the state dict keeps its names and
    dtypes (checkpoints are unchanged), the loss stays close to bf16's and gradients reach the weights. Every FP8
    linear sees a multiple of 16 rows: 2 x 31 tokens (and the MTP module's 2 x 30) are padded, as the real FP8
    GEMM's backward needs (emulation does not check it, hence the spy)."""
    pytest.importorskip("torchao")
    from torchao.float8.float8_linear import Float8Linear

    rows_seen = []
    forward = Float8Linear.forward

    def spy(self, x):
        rows_seen.append(x.numel() // x.shape[-1])
        return forward(self, x)

    monkeypatch.setattr(Float8Linear, "forward", spy)

    torch.manual_seed(0)
    model = DeepSeekV3(ModelConfig.preset("tiny")).to(torch.bfloat16)
    ref = copy.deepcopy(model)
    plan = convert_to_fp8(model, "rowwise", emulate=True)
    converted = {n for n, m in model.named_modules() if isinstance(m, Float8Linear)}
    assert not any(m.fp8 for m in model.modules() if isinstance(m, RoutedExperts))  # emulation: experts unchanged
    assert converted == {n for n, how in plan.convert.items() if how.endswith("linear")}
    assert not isinstance(model.lm_head, Float8Linear)
    assert {k: v.dtype for k, v in model.state_dict().items()} == {k: v.dtype for k, v in ref.state_dict().items()}
    ids = torch.randint(0, model.config.vocab_size, (2, 31), generator=torch.Generator().manual_seed(0))
    loss, ref_loss = model(ids, labels=ids).loss, float(ref(ids, labels=ids).loss.detach())
    assert rows_seen and all(r % 16 == 0 for r in rows_seen), sorted(set(rows_seen))
    assert abs(float(loss.detach()) - ref_loss) < 0.01 * ref_loss
    assert float(loss.detach()) != ref_loss  # the casts did happen
    loss.backward()
    assert model.model.layers[1].self_attn.o_proj.weight.grad.abs().sum() > 0


def test_medium_preset_has_deepseek_v3_widths_and_fits_one_h200():
    cfg = ModelConfig.preset("medium")
    assert cfg.hidden_size >= 4096 and cfg.moe_intermediate_size >= 1024
    assert (cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim, cfg.kv_lora_rank) == (128, 64, 128, 512)
    with torch.device("meta"):
        model = DeepSeekV3(cfg)
    n = model.num_parameters(include_mtp=True)
    # bf16 weights + bf16 grads + fp32 master + two fp32 moments = 16 bytes a parameter, of 141 GB
    assert 3e9 < n and 16 * n < 0.5 * 141e9
    assert isinstance(model.model.layers[1].mlp.experts, RoutedExperts)


@pytest.mark.parametrize("shape", [(3, 7, 16), (2, 128, 16), (5, 16)])
def test_blockwise_rows_padded_to_the_tile_give_the_same_linear(shape):
    """The blockwise FP8 linear takes 128-row activation tiles only: any token count (MTP sees S - 1 per
    sequence) goes through zero-padded rows whose outputs are dropped; values and gradients are unchanged."""
    from prover.model.fp8 import rows_padded

    torch.manual_seed(0)
    x = torch.randn(*shape, requires_grad=True)
    w = torch.randn(24, shape[-1], requires_grad=True)
    seen = []

    def linear(rows):
        seen.append(rows.shape[0])
        return rows @ w.T

    got = rows_padded(linear, x, 128)
    want = x @ w.T
    assert seen[0] % 128 == 0 and got.shape == want.shape and torch.allclose(got, want, atol=1e-5)
    g = torch.randn_like(want)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(torch.autograd.grad(got, (x, w), g),
                                                                torch.autograd.grad(want, (x, w), g), strict=True))


def test_quant_autotuning_keeps_the_fewest_stages_at_four_or_eight_warps():
    """torchao's FP8 quantization kernels tune 45 (blockwise casts) and 36 (grouped scales) configs, compiled one by
    one: minutes of first step. Grids above 8 keep their fewest stages at 4 or 8 warps; small grids (the GEMMs')
    stay. (No triton on CPU: the autotuners are stand-ins carrying torchao 0.18's own config grids.)"""
    from types import SimpleNamespace as Config

    from prover.model.fp8 import narrow_quant_autotuning

    blockwise = Config(configs=[Config(kwargs={"NUM_GROUPS": g}, num_warps=w, num_stages=s)
                                for g in [2, 16, 32, 64, 128] for w in [2, 4, 8] for s in [2, 4, 6]])
    scales = Config(configs=[Config(kwargs={"BLOCK_SIZE": b, "BLOCK_SIZE_ITER": i}, num_warps=w, num_stages=s)
                             for b in [32, 64, 128] for i in [64, 128, 256] for w in [4, 8] for s in [2, 3]])
    gemm = Config(configs=[Config(kwargs={"BLOCK_SIZE_M": b}, num_warps=w, num_stages=2)
                           for b in (64, 128, 256) for w in (4, 8)])
    assert narrow_quant_autotuning([blockwise, scales, gemm, "not an autotuner", Config(configs=[])]) == 2
    assert len(blockwise.configs) == 10 and len(scales.configs) == 18 and len(gemm.configs) == 6
    assert {c.kwargs["NUM_GROUPS"] for c in blockwise.configs} == {2, 16, 32, 64, 128}
    assert {(c.num_warps, c.num_stages) for c in blockwise.configs} == {(4, 2), (8, 2)}
    assert {c.num_stages for c in scales.configs} == {2}
    assert narrow_quant_autotuning([blockwise, scales]) == 0  # idempotent


def test_sft_cli_passes_no_fp8_experts_to_the_trainer(tmp_path, monkeypatch):
    import prover.train.sft as sft
    from eval.cli import main

    seen = []
    monkeypatch.setattr(sft, "train_sft", lambda cfg: seen.append(cfg) or sys.exit(0))
    for flags, want in (([], True), (["--no-fp8-experts"], False)):
        with pytest.raises(SystemExit):
            main(["train", "sft", "--model", "m", "--data", str(tmp_path / "d.jsonl"), "--out", str(tmp_path / "o"),
                  "--fp8", *flags])
        assert seen[-1].fp8 and seen[-1].fp8_experts is want

