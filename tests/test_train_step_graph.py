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
from prover.train.step_graph import GraphedSFTStep, resolve_cuda_graph

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
    return model, opt, make_scheduler(opt, "cosine", 2, 10, 0.1)  # warm-up then decay: the lr moves every step


def run(step_fn, cfg, scfg, env, dtype, data, plan: list[list[list[int]]]):
    """One optimizer step per entry of `plan` (its micro-batches' example indices); (metrics per step, final
    parameters, (model, optimizer, scheduler))."""
    from prover.train.common import read_metrics

    model, opt, sched = trainer(cfg, scfg, env, dtype)
    history = [read_metrics(step_fn(model, opt, sched, mbs, data, TOKENIZER, scfg, env)) for mbs in plan]
    return history, {n: p.detach().float().clone() for n, p in model.named_parameters()}, (model, opt, sched)


def start_params(cfg, scfg, env, dtype) -> dict[str, torch.Tensor]:
    return {n: p.detach().float().clone() for n, p in trainer(cfg, scfg, env, dtype)[0].named_parameters()}


def apart(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The distance between two sets of the same parameters."""
    return sum(float((a[n] - b[n]).norm() ** 2) for n in a) ** 0.5


def test_padded_step_trains_as_the_trainers_step(monkeypatch):
    """Each step's micro-batches padded to one of a few lengths, the batch and token shares in fixed buffers per
    shape: the same losses, grad norms, expert load and parameters as `_train_step` (which pads each micro-batch
    to its own longest example)."""
    cfg = ModelConfig.preset("tiny")
    scfg = SFTConfig(model="", data="", out="", micro_batch_size=2, grad_accum=2, max_length=40, lr=1e-2,
                     compile=False)
    monkeypatch.setattr("prover.train.step_graph.BUCKET", 16)  # steps of 16, 32 and 40 tokens: three shapes
    env = DistEnv(device=torch.device("cpu"))
    data = examples(cfg.vocab_size, [5, 12, 9, 14, 17, 31, 40, 23])
    plan = [[[0, 1], [2, 3]], [[4, 5], [6, 7]], [[0, 2], [4, 5]], [[1, 3], [0, 2]], [[6, 1], [2, 3]]]  # 16, 40, 32, ..
    want, want_params, _ = run(_train_step, cfg, scfg, env, torch.float32, data, plan)
    graphed = GraphedSFTStep(warmup=10**9)
    got, got_params, _ = run(graphed, cfg, scfg, env, torch.float32, data, plan)
    assert sorted(key[-1] for key in graphed.shapes) == [16, 32, 40]
    assert [m["step_tokens"] for m in got] == [m["step_tokens"] for m in want]  # real tokens, not the padding
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w)
        for k in w:
            assert g[k] == pytest.approx(w[k], rel=1e-4, abs=1e-6), k
    # Measured against how far training moved the parameters: Adam turns a difference in rounding (other padded
    # shapes) into lr-sized steps of a few elements, and those grow step by step.
    assert apart(got_params, want_params) < 1e-3 * apart(want_params, start_params(cfg, scfg, env, torch.float32))


@pytest.mark.parametrize(("changes", "device", "dtype", "says"), [
    ({}, "cpu", torch.bfloat16, "captures the step on a CUDA device"),
    ({"pp": 2}, "cuda", torch.bfloat16, "one-process step"),
    ({"ep": 2}, "cuda", torch.bfloat16, "one-process step"),
    ({}, "cuda", torch.float32, "drop --precision fp32"),
    ({"compile": False}, "cuda", torch.bfloat16, "drop --no-compile"),
    ({"fp8": True}, "cuda", torch.bfloat16, "FP8"),
])
def test_where_the_step_cannot_be_captured_one_clear_error(changes, device, dtype, says):
    env = DistEnv(device=torch.device(device))
    with pytest.raises(ProverError, match=says):
        resolve_cuda_graph(SFTConfig(model="", data="", out="", cuda_graph=True, **changes), env, dtype)
    # Left to the default, such a run trains without CUDA graphs, and says nothing
    assert resolve_cuda_graph(SFTConfig(model="", data="", out="", **changes), env, dtype) is False


def test_cuda_graphs_are_the_default_wherever_the_step_can_be_captured():
    cuda = DistEnv(device=torch.device("cuda"))
    assert resolve_cuda_graph(SFTConfig(model="", data="", out=""), cuda, torch.bfloat16) is True
    assert resolve_cuda_graph(SFTConfig(model="", data="", out="", cuda_graph=False), cuda, torch.bfloat16) is False


def test_a_failed_capture_is_an_error_when_asked_for_and_falls_back_to_eager_steps_by_default(monkeypatch, capsys):
    """`--cuda-graph`: the capture's failure is one message naming the way out. Only defaulted to: a warning, and
    every later step is the trainer's own (`_train_step`), training as a run without CUDA graphs does."""
    def fail(*_):
        raise ProverError("--cuda-graph could not capture the step (operation not permitted when stream is capturing)")

    monkeypatch.setattr(GraphedSFTStep, "_capture", fail)
    with pytest.raises(ProverError, match="could not capture the step .*: pass --no-cuda-graph"):
        GraphedSFTStep()._try_capture(None, None, None, None, None)
    cfg = ModelConfig.preset("tiny")
    scfg = SFTConfig(model="", data="", out="", micro_batch_size=2, max_length=40, lr=1e-2, compile=False)
    env = DistEnv(device=torch.device("cpu"))
    data = examples(cfg.vocab_size, [5, 12, 9, 14])
    plan = [[[0, 1]], [[2, 3]], [[1, 2]]]
    want, want_params, _ = run(_train_step, cfg, scfg, env, torch.float32, data, plan)
    graphed = GraphedSFTStep(fallback=True)
    graphed._try_capture(None, None, None, None, None)
    assert graphed.eager_only and "warning: --cuda-graph could not capture the step" in capsys.readouterr().err
    got, got_params, _ = run(graphed, cfg, scfg, env, torch.float32, data, plan)
    assert got == want and all(torch.equal(got_params[n], want_params[n]) for n in want_params)
    assert not graphed.shapes  # no step went through the graphed path


def test_on_cuda_a_micro_batch_is_padded_to_a_multiple_of_64_tokens():
    """Each new length costs cuDNN's attention a new plan: on CUDA a run's micro-batches take at most
    max_length / 64 lengths; on CPU each is padded to its own longest example, as before."""
    from prover.train.sft import PAD_MULTIPLE, micro_batch_length

    data = examples(64, [5, 70, 130, 1000])
    scfg = SFTConfig(model="", data="", out="", max_length=1000)
    cuda, cpu = DistEnv(device=torch.device("cuda")), DistEnv(device=torch.device("cpu"))
    assert PAD_MULTIPLE == 64
    assert [micro_batch_length(mb, data, scfg, cuda) for mb in ([0], [0, 1], [2], [3])] == [64, 128, 192, 1000]
    assert micro_batch_length([0, 1], data, scfg, cpu) is None


def test_sft_cuda_graph_on_cpu_stops_before_loading_anything(tmp_path, capsys):
    from helpers.train import assert_sft_refuses_before_loading

    assert_sft_refuses_before_loading(tmp_path, capsys, ["--cuda-graph"], "captures the step on a CUDA device")


def test_a_step_is_padded_to_its_longest_example_rounded_up_to_a_bucket():
    from prover.train.step_graph import BUCKET, padding_note, step_length

    assert step_length([3, 1], 2048) == BUCKET and step_length([BUCKET, 7], 2048) == BUCKET
    assert step_length([BUCKET + 1], 2048) == 2 * BUCKET and step_length([2000], 2048) == 2048
    assert step_length([300], 300) == 300  # never past max_length
    note = padding_note([[BUCKET, BUCKET // 2], [BUCKET + 1, 3 * BUCKET // 4 - 1]], 2048)
    # real 1.5 B + 1.75 B tokens of 2 B + 4 B padded
    assert "2 shape(s)" in note and f"{1 - 3.25 / 6:.0%} of the tokens padding" in note


def test_the_progress_bar_says_which_step_captures():
    from prover.train.sft import first_step_note

    note = first_step_note(SFTConfig(model="", data="", out="", cuda_graph=True), DistEnv(device=torch.device("cuda")))
    assert note == "sft (first step: compiling, minutes; each step length's step 3: capturing its CUDA graph)"


KERNELS = {"default": {}, "fa4-quack-lce": {"moe_impl": "quack", "attention": "fa4", "loss_impl": "quack"}}


@pytest.mark.gpu
@pytest.mark.parametrize("kernels", list(KERNELS))
def test_replayed_step_trains_as_the_step_run_eagerly_without_a_host_sync(kernels):
    """`small`'s widths, 2 layers, steps of two shapes in turn (256 and 512 tokens): each shape's 2 eager steps,
    its capture and 3 replays, against the same 10 steps run eagerly; the lr schedule moves every step, so a replay
    that kept its capture's lr would drift."""
    from prover.train.common import read_metrics

    if kernels != "default":
        pytest.importorskip("quack")
        pytest.importorskip("flash_attn.cute")
        if torch.cuda.get_device_capability() < (9, 0):
            pytest.skip("QuACK's and FlashAttention-4's kernels need compute capability >= 9.0")
    cfg = ModelConfig.preset("small", num_hidden_layers=2)
    scfg = SFTConfig(model="", data="", out="", micro_batch_size=2, grad_accum=2, max_length=512, lr=1e-3,
                     cuda_graph=True, **KERNELS[kernels])
    env = DistEnv(device=torch.device("cuda"))
    data = examples(cfg.vocab_size, [256, 200, 97, 130, 512, 300, 480, 129])
    plan = [[[0, 1], [2, 3]], [[4, 5], [6, 7]], [[3, 2], [1, 0]], [[5, 6], [7, 4]]] * 2 + [[[0, 1], [2, 3]],
                                                                                            [[4, 5], [6, 7]]]
    # Each run compiles afresh: dynamo's compiled blocks for the first shape, then for any (dynamic), the same
    # kernels in the same steps of both runs (a second run would find the dynamic ones first)
    torch._dynamo.reset()
    want, want_params, _ = run(GraphedSFTStep(warmup=10**9), cfg, scfg, env, torch.bfloat16, data, plan)
    torch._dynamo.reset()
    graphed = GraphedSFTStep()
    got, got_params, (model, opt, sched) = run(graphed, cfg, scfg, env, torch.bfloat16, data, plan)
    assert len(graphed.shapes) == 2 and all(shape.graph is not None for shape in graphed.shapes.values())
    assert [g["lr"] for g in got] == [w["lr"] for w in want]
    assert [g["loss"] for g in got] == pytest.approx([w["loss"] for w in want], rel=1e-3), (got, want)
    assert apart(got_params, want_params) < 1e-2 * apart(want_params, start_params(cfg, scfg, env, torch.bfloat16))

    # One more replayed step queues its work without waiting for the GPU: torch raises on a sync in this mode.
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        metrics = graphed(model, opt, sched, [[0, 1], [2, 3]], data, TOKENIZER, scfg, env)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert read_metrics(metrics)["loss"] > 0


def test_a_run_with_cuda_graph_logs_checkpoints_and_resumes(tmp_path, capsys, monkeypatch):
    """`train_sft` with `cuda_graph` through its whole loop (on CPU the graphed step's eager path: the refusal of
    CPU lifted for the test): the padding said at the start, every step logged, a run stopped at a checkpoint and
    resumed ends with the uninterrupted run's losses."""
    from helpers.tiny_models import bpe_tokenizer, tiny_moe
    from helpers.train import write_examples

    from prover.train.sft import train_sft

    monkeypatch.setattr("prover.train.sft.resolve_cuda_graph", lambda cfg, *a: bool(cfg.cuda_graph))
    model = tiny_moe(tmp_path / "m", bpe_tokenizer())
    data = write_examples(tmp_path / "ex.jsonl")
    common = dict(model=str(model), data=str(data), lr=1e-3, micro_batch_size=2, max_steps=4, device="cpu",
                  cuda_graph=True)
    straight = train_sft(SFTConfig(out=str(tmp_path / "a"), **common), progress=False)
    assert "--cuda-graph: each step's micro-batches padded" in capsys.readouterr().err
    train_sft(SFTConfig(out=str(tmp_path / "b"), stop_after=2, **common), progress=False)
    resumed = train_sft(SFTConfig(out=str(tmp_path / "b"), **common), progress=False)
    assert len(straight.history) == 4 and resumed.history == straight.history
