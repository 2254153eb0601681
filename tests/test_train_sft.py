"""SFT: the loss falls on its data, prompts are masked, and a resumed run ends in exactly the same state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.tiny_models import bpe_tokenizer, tiny_llama, tiny_moe
from helpers.train import weights, write_examples

from prover.train.sft import IGNORE, SFTConfig, tokenize_example, train_sft

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("llama") / "m", bpe_tokenizer())


def test_prompt_tokens_are_masked(llama):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llama)
    ex = tokenize_example(tok, "prompt text ", "  omega", max_length=64)
    n_prompt = len(tok("prompt text ")["input_ids"])
    assert ex["labels"][:n_prompt] == [IGNORE] * n_prompt
    assert ex["labels"][n_prompt:] == ex["input_ids"][n_prompt:]
    assert ex["input_ids"][-1] == tok.eos_token_id


def test_chat_kinds_are_trained_through_the_chat_template(llama):
    """Generation sends `sketch` prompts as a chat turn (its template has `chat = true`) and `complete` ones as
    plain text; SFT must train on those same token sequences."""
    from transformers import AutoTokenizer

    from prover.generate.base import chat_turn
    from prover.train.sft import _load_examples, chat_kinds

    tok = AutoTokenizer.from_pretrained(llama)
    tok.chat_template = "{% for m in messages %}<|user|>{{ m['content'] }}<|assistant|>{% endfor %}"
    assert "sketch" in chat_kinds() and "whole_proof" not in chat_kinds()
    rows = [{"prompt": "plan it", "completion": "done", "kind": "sketch"},
            {"prompt": "continue it", "completion": "done", "kind": "whole_proof"}]
    sketch, whole = _load_examples(SFTConfig(model="m", data="d", out="o"), tok, rows)
    assert sketch == tokenize_example(tok, chat_turn(tok, "plan it"), "done", 2048)
    assert chat_turn(tok, "plan it") != "plan it"
    assert whole == tokenize_example(tok, "continue it", "done", 2048)


def test_sft_lowers_loss_on_tiny_llama(llama, tmp_path):
    data = write_examples(tmp_path / "ex.jsonl")
    cfg = SFTConfig(model=str(llama), data=str(data), out=str(tmp_path / "ckpt"), lr=1e-2, max_steps=30,
                    micro_batch_size=4, grad_accum=2, warmup_steps=3, device="cpu")
    res = train_sft(cfg, progress=False)
    assert res.steps == 30
    assert res.final_loss < 0.5 * res.first_loss
    # the final model is an HF checkpoint, and TensorBoard got the scalars
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt")
    assert list((tmp_path / "ckpt" / "tb").glob("events.out.tfevents.*"))
    logged = [json.loads(line) for line in (tmp_path / "ckpt" / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "lr", "tokens_per_s"} <= set(logged[0])


def test_resume_reaches_the_same_state(llama, tmp_path):
    data = write_examples(tmp_path / "ex.jsonl")
    common = dict(model=str(llama), data=str(data), lr=1e-3, micro_batch_size=2, grad_accum=2, max_steps=6,
                  warmup_steps=2, device="cpu", seed=3)
    straight = train_sft(SFTConfig(out=str(tmp_path / "a"), **common), progress=False)

    # Same run, stopped after 3 steps (its checkpoint stays), then resumed to 6.
    first = train_sft(SFTConfig(out=str(tmp_path / "b"), stop_after=3, **common), progress=False)
    assert first.steps == 3 and not (tmp_path / "b" / "model.safetensors").exists()
    resumed = train_sft(SFTConfig(out=str(tmp_path / "b"), **common), progress=False)
    assert resumed.resumed_from and resumed.resumed_from.endswith("step-000003")
    assert resumed.history == pytest.approx(straight.history, rel=1e-5)

    from safetensors.torch import load_file

    wa = load_file(tmp_path / "a" / "model.safetensors")
    wb = load_file(tmp_path / "b" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def moe(tmp_path_factory) -> Path:
    return tiny_moe(tmp_path_factory.mktemp("moe") / "m", bpe_tokenizer())


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_sft_lowers_loss_on_tiny_moe_with_mtp_and_bias_update(moe, tmp_path):
    data = write_examples(tmp_path / "ex.jsonl")
    out = tmp_path / "ckpt"
    res = train_sft(SFTConfig(model=str(moe), data=str(data), out=str(out), lr=1e-2, max_steps=20,
                              micro_batch_size=4, warmup_steps=2, device="cpu"), progress=False)
    assert res.final_loss < 0.5 * res.first_loss
    logged = _metrics(out)
    assert all("mtp_loss" in m and "expert_load/max_violation_mean" in m for m in logged)
    from prover.model import DeepSeekV3

    trained = DeepSeekV3.from_pretrained(out)
    biases = [m.gate.e_score_correction_bias for m in trained.moe_layers()]
    assert any(float(b.abs().sum()) > 0 for b in biases)  # the bias update ran and was saved


def test_bias_update_moves_expert_load_toward_balance(moe, tmp_path):
    from prover.model import DeepSeekV3

    # A router skewed toward experts 0-3, and lr = 0: only the aux-loss-free bias update can change the load.
    skewed = DeepSeekV3.from_pretrained(moe)
    for m in skewed.moe_layers():
        m.gate.e_score_correction_bias[:4] += 0.2
    from transformers import AutoTokenizer

    skewed.save_pretrained(tmp_path / "skewed", tokenizer=AutoTokenizer.from_pretrained(moe))
    data = write_examples(tmp_path / "ex.jsonl")
    out = tmp_path / "ckpt"
    train_sft(SFTConfig(model=str(tmp_path / "skewed"), data=str(data), out=str(out), lr=0.0, max_steps=16,
                        micro_batch_size=4, schedule="constant", bias_update_gamma=0.02, device="cpu"),
              progress=False)
    violation = [m["expert_load/max_violation_mean"] for m in _metrics(out)]
    assert sum(violation[-4:]) / 4 < 0.6 * violation[0]


def test_bf16_training_keeps_fp32_masters_and_resumes_bit_identically(moe, tmp_path):
    """`--precision bf16`: bf16 parameters (the saved model), fp32 master weights and moments in the trainer
    state; a run stopped and resumed ends in exactly the weights of the uninterrupted run."""
    data = write_examples(tmp_path / "ex.jsonl")
    common = dict(model=str(moe), data=str(data), lr=1e-3, micro_batch_size=2, max_steps=4, device="cpu",
                  precision="bf16", seed=1)
    straight = train_sft(SFTConfig(out=str(tmp_path / "a"), **common), progress=False)
    train_sft(SFTConfig(out=str(tmp_path / "b"), stop_after=2, **common), progress=False)
    state = torch.load(tmp_path / "b" / "checkpoints" / "step-000002" / "trainer_state.pt", weights_only=False)
    moments = [s for s in state["optimizer"]["state"].values() if "master" in s]
    assert moments and all(s["master"].dtype == s["exp_avg"].dtype == torch.float32 for s in moments)
    resumed = train_sft(SFTConfig(out=str(tmp_path / "b"), **common), progress=False)
    assert resumed.history == straight.history

    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert wa["model.layers.0.self_attn.q_a_proj.weight"].dtype == torch.bfloat16
    assert wa["model.layers.1.mlp.gate.e_score_correction_bias"].dtype == torch.float32
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)




def test_metrics_read_a_step_late_still_log_every_step_and_checkpoint_whole(moe, tmp_path):
    """Each step's loss is read after the next step is queued; a checkpoint between steps still holds every
    step's loss up to it, and the log has one line per step."""
    data = write_examples(tmp_path / "ex.jsonl")
    out = tmp_path / "ckpt"
    res = train_sft(SFTConfig(model=str(moe), data=str(data), out=str(out), lr=1e-3, max_steps=5, save_every=2,
                              keep_last=5, micro_batch_size=2, device="cpu"), progress=False)
    logged = _metrics(out)
    assert [m["step"] for m in logged] == [1, 2, 3, 4, 5]
    assert [m["loss"] for m in logged] == res.history and all(isinstance(x, float) for x in res.history)
    state = torch.load(out / "checkpoints" / "step-000004" / "trainer_state.pt", weights_only=False)
    assert state["extra"]["history"] == res.history[:4]


@pytest.mark.gpu
def test_sft_step_never_waits_for_the_gpu(moe):
    """On CUDA the whole trainer step (batch upload, loss, clipping, AdamW on masters, bias update) queues work
    without one host sync: torch raises on any under sync debug mode "error"."""
    from types import SimpleNamespace

    from prover.model import DeepSeekV3
    from prover.train.distributed import DistEnv
    from prover.train.sft import _train_step, make_optimizer, make_scheduler, prepare_model

    env = DistEnv(device=torch.device("cuda"))
    cfg = SFTConfig(model="", data="", out="", micro_batch_size=2, compile=False, device="cuda")
    model = prepare_model(DeepSeekV3.from_pretrained(moe).to("cuda", torch.bfloat16), cfg, env)
    opt = make_optimizer(model, cfg, env)
    sched = make_scheduler(opt, "cosine", 0, 10, 0.1)
    examples = [{"input_ids": list(range(3, 40)), "labels": [IGNORE] * 8 + list(range(11, 40))}] * 2
    tok = SimpleNamespace(pad_token_id=0)
    _train_step(model, opt, sched, [[0, 1]], examples, tok, cfg, env)  # optimizer state made
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        metrics = _train_step(model, opt, sched, [[0, 1]], examples, tok, cfg, env)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    from prover.train.common import read_metrics

    assert read_metrics(metrics)["loss"] > 0


@pytest.mark.parametrize(("device", "compile_", "fp8", "note"), [
    ("cpu", None, False, "sft"),
    ("cpu", True, False, "sft (first step: compiling, minutes)"),
    ("cuda", None, False, "sft (first step: compiling, minutes)"),
    ("cuda", False, True, "sft (first step: tuning FP8 kernels, minutes)"),
    ("cuda", None, True, "sft (first step: compiling and tuning FP8 kernels, minutes)"),
])
def test_the_progress_bar_says_why_the_first_step_is_slow(device, compile_, fp8, note):
    """Compiling (on by default on CUDA) and FP8's kernel tuning take minutes before the first step's bar moves:
    the bar says so, so the run does not look hung."""
    from prover.train.distributed import DistEnv
    from prover.train.sft import first_step_note

    cfg = SFTConfig(model="", data="", out="", compile=compile_, fp8=fp8)
    assert first_step_note(cfg, DistEnv(device=torch.device(device))) == note
