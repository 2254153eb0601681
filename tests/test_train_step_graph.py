"""`subgoal train sft --cuda-graph` (`prover.train.step_graph`): the step padded to one shape trains exactly as the
trainer's own step (CPU: the eager path every step takes before the capture); on CUDA the captured, replayed step
trains as the same step run eagerly, with no host sync (`gpu`); one clear error wherever it cannot capture."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from prover.errors import ProverError
from prover.model import DeepSeekV3, ModelConfig
from prover.train.distributed import DistEnv
from prover.train.sft import IGNORE, SFTConfig, _train_step, make_optimizer, make_scheduler, prepare_model
from prover.train.step_graph import GraphedSFTStep, check_cuda_graph

TOKENIZER = SimpleNamespace(pad_token_id=0)


def examples(vocab: int, lengths: list[int], seed: int = 0) -> list[dict[str, list[int]]]:
    """Token rows of the given lengths, the first third of each a masked prompt."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(2, vocab, (n,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE] * (n // 3) + ids[n // 3:]})
    return out


def trainer(cfg: ModelConfig, scfg: SFTConfig, env: DistEnv, dtype: torch.dtype):
    torch.manual_seed(0)
    with torch.device(env.device):
        model = DeepSeekV3(cfg).to(dtype)
    model = prepare_model(model, scfg, env)
    opt = make_optimizer(model, scfg, env)
    return model, opt, make_scheduler(opt, "cosine", 2, 6, 0.1)  # warm-up then decay: the lr moves every step


def run(step_fn, cfg, scfg, env, dtype, data, steps: int):
    """`steps` optimizer steps of two micro-batches of two examples; (metrics per step, final parameters)."""
    from prover.train.common import read_metrics

    model, opt, sched = trainer(cfg, scfg, env, dtype)
    history = [read_metrics(step_fn(model, opt, sched, [[2 * s % 8, 2 * s % 8 + 1], [(2 * s + 4) % 8, 1]], data,
                                    TOKENIZER, scfg, env))
               for s in range(steps)]
    return history, {n: p.detach().float().clone() for n, p in model.named_parameters()}, (model, opt, sched)


def test_padded_step_trains_as_the_trainers_step():
    """Every micro-batch padded to max_length, the batch and token shares in fixed buffers: the same losses, grad
    norms, expert load and parameters as `_train_step` (which pads to each micro-batch's longest example)."""
    cfg = ModelConfig.preset("tiny")
    scfg = SFTConfig(model="", data="", out="", micro_batch_size=2, grad_accum=2, max_length=40, lr=1e-2,
                     compile=False)
    env = DistEnv(device=torch.device("cpu"))
    data = examples(cfg.vocab_size, [17, 40, 9, 23, 31, 12, 40, 5])
    want, want_params, _ = run(_train_step, cfg, scfg, env, torch.float32, data, 4)
    got, got_params, _ = run(GraphedSFTStep(warmup=10**9), cfg, scfg, env, torch.float32, data, 4)
    assert [m["step_tokens"] for m in got] == [m["step_tokens"] for m in want]  # real tokens, not the padding
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w)
        for k in w:
            assert g[k] == pytest.approx(w[k], rel=1e-5, abs=1e-6), k
    # Adam turns a gradient of rounding noise (a row the loss barely reaches) into an lr-sized step; 1e-4 is still
    # 1% of one step's update at lr 1e-2.
    for name, p in want_params.items():
        torch.testing.assert_close(got_params[name], p, rtol=1e-4, atol=1e-4, msg=name)


@pytest.mark.parametrize(("changes", "device", "dtype", "says"), [
    ({}, "cpu", torch.bfloat16, "captures the step on a CUDA device"),
    ({"pp": 2}, "cuda", torch.bfloat16, "one-process step"),
    ({"ep": 2}, "cuda", torch.bfloat16, "one-process step"),
    ({}, "cuda", torch.float32, "drop --precision fp32"),
    ({"compile": False}, "cuda", torch.bfloat16, "drop --no-compile"),
    ({"fp8": True}, "cuda", torch.bfloat16, "FP8"),
])
def test_where_the_step_cannot_be_captured_one_clear_error(changes, device, dtype, says):
    scfg = SFTConfig(model="", data="", out="", cuda_graph=True, **changes)
    with pytest.raises(ProverError, match=says):
        check_cuda_graph(scfg, DistEnv(device=torch.device(device)), dtype)
    check_cuda_graph(SFTConfig(model="", data="", out="", **changes), DistEnv(device=torch.device(device)), dtype)


def test_sft_cuda_graph_on_cpu_stops_before_loading_anything(tmp_path, capsys):
    from helpers.train import assert_sft_refuses_before_loading

    assert_sft_refuses_before_loading(tmp_path, capsys, ["--cuda-graph"], "captures the step on a CUDA device")


def test_the_run_says_what_the_padding_costs():
    from prover.train.step_graph import padding_note

    note = padding_note([{"input_ids": [1] * 300}, {"input_ids": [1] * 100}], 800)
    assert "padded to --max-length 800" in note and "average 200 tokens" in note and "75% of the step's tokens" in note


def test_the_progress_bar_says_which_step_captures():
    from prover.train.sft import first_step_note

    note = first_step_note(SFTConfig(model="", data="", out="", cuda_graph=True), DistEnv(device=torch.device("cuda")))
    assert note == "sft (first step: compiling, minutes; step 3: capturing the CUDA graph)"


KERNELS = {"default": {}, "fa4-quack-lce": {"moe_impl": "quack", "attention": "fa4", "loss_impl": "quack"}}


@pytest.mark.gpu
@pytest.mark.parametrize("kernels", list(KERNELS))
def test_replayed_step_trains_as_the_step_run_eagerly_without_a_host_sync(kernels):
    """`small`'s widths, 2 layers: 2 eager steps, the capture, 3 replays against 6 eager steps of the same padded
    step; the lr schedule moves every step, so a replay that kept the capture's lr would drift."""
    from prover.train.common import read_metrics

    if kernels != "default":
        pytest.importorskip("quack")
        pytest.importorskip("flash_attn.cute")
        if torch.cuda.get_device_capability() < (9, 0):
            pytest.skip("QuACK's and FlashAttention-4's kernels need compute capability >= 9.0")
    cfg = ModelConfig.preset("small", num_hidden_layers=2)
    scfg = SFTConfig(model="", data="", out="", micro_batch_size=2, grad_accum=2, max_length=256, lr=1e-3,
                     cuda_graph=True, **KERNELS[kernels])
    env = DistEnv(device=torch.device("cuda"))
    data = examples(cfg.vocab_size, [256, 200, 97, 256, 180, 64, 256, 129])
    start = trainer(cfg, scfg, env, torch.bfloat16)[0]
    start = {n: p.detach().float().clone() for n, p in start.named_parameters()}
    want, want_params, _ = run(GraphedSFTStep(warmup=10**9), cfg, scfg, env, torch.bfloat16, data, 6)
    graphed = GraphedSFTStep()
    got, got_params, (model, opt, sched) = run(graphed, cfg, scfg, env, torch.bfloat16, data, 6)
    assert graphed.graph is not None
    for g, w in zip(got, want, strict=True):
        assert g["loss"] == pytest.approx(w["loss"], rel=1e-3) and g["lr"] == w["lr"]
    moved = sum(float((want_params[n] - start[n]).norm() ** 2) for n in start) ** 0.5
    apart = sum(float((got_params[n] - want_params[n]).norm() ** 2) for n in start) ** 0.5
    assert apart < 1e-2 * moved, (apart, moved)

    # One more replayed step queues its work without waiting for the GPU: torch raises on a sync in this mode.
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        metrics = graphed(model, opt, sched, [[0, 1], [2, 3]], data, TOKENIZER, scfg, env)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert read_metrics(metrics)["loss"] > 0
