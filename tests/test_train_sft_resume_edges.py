"""SFT resume edge cases: a restart (`resume=False`) over an earlier run's output, crashes between checkpoints,
and the per-step log and numbers around checkpoint and resume boundaries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.tiny_models import bpe_tokenizer, tiny_llama
from helpers.train import run_with_torn_checkpoint_writes, weights, write_examples

from prover.train.checkpoint import list_checkpoints
from prover.train.sft import SFTConfig, train_sft

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("llama") / "m", bpe_tokenizer())


def _common(llama: Path, data: Path, **kw) -> dict:
    return dict(model=str(llama), data=str(data), micro_batch_size=2, device="cpu", seed=3, **kw)


def _logged(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_restart_over_an_earlier_run_never_resumes_or_keeps_its_checkpoints(llama, tmp_path):
    """`--no-resume` starts over in `--out`: the earlier run's checkpoints must not outrank the new run's (keep_last
    would delete the new ones) nor be what the next rerun resumes from."""
    data = write_examples(tmp_path / "ex.jsonl")
    out = tmp_path / "out"
    train_sft(SFTConfig(out=str(out), lr=1e-2, max_steps=6, save_every=2, **_common(llama, data)), progress=False)
    # Started over with another lr: stopped after 2 steps, then resumed to the end.
    restart = dict(lr=1e-3, max_steps=6, save_every=2, keep_last=2, **_common(llama, data))
    train_sft(SFTConfig(out=str(out), resume=False, stop_after=2, **restart), progress=False)
    assert [p.name for p in list_checkpoints(out)] == ["step-000002"]
    resumed = train_sft(SFTConfig(out=str(out), **restart), progress=False)
    assert resumed.resumed_from and resumed.resumed_from.endswith("step-000002")
    straight = train_sft(SFTConfig(out=str(tmp_path / "straight"), **restart), progress=False)
    assert resumed.history == straight.history
    wa, wb = weights(out), weights(tmp_path / "straight")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [m["step"] for m in _logged(out)] == [1, 2, 3, 4, 5, 6]  # the earlier run's lines are gone


def test_a_resume_after_a_crash_logs_each_step_once(llama, tmp_path, monkeypatch):
    """Steps logged after the last checkpoint and lost in a crash are trained again on resume: the log keeps
    one line per step, the resumed run's."""
    import prover.train.sft as sft

    data = write_examples(tmp_path / "ex.jsonl")
    out = tmp_path / "out"
    cfg = SFTConfig(out=str(out), lr=1e-3, max_steps=6, save_every=3, **_common(llama, data))
    real_step, calls = sft._train_step, []

    def crash_at_step_6(*a, **kw):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real_step(*a, **kw)

    monkeypatch.setattr(sft, "_train_step", crash_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        train_sft(cfg, progress=False)
    monkeypatch.setattr(sft, "_train_step", real_step)
    assert [m["step"] for m in _logged(out)] == [1, 2, 3, 4]  # step 4 logged, its checkpoint not yet written
    assert [p.name for p in list_checkpoints(out)][-1] == "step-000003"
    resumed = train_sft(cfg, progress=False)
    assert resumed.resumed_from.endswith("step-000003")
    logged = _logged(out)
    assert [m["step"] for m in logged] == [1, 2, 3, 4, 5, 6]
    assert [m["loss"] for m in logged] == resumed.history


def _step_seconds(out: Path) -> dict[int, float]:
    return {m["step"]: m["step_tokens"] / m["tokens_per_s"] for m in _logged(out)}


def test_tokens_per_s_times_each_step_alone(llama, tmp_path, monkeypatch):
    """A step's tokens/s is its own tokens over its own time: not the next step's time (metrics are read a step
    late), not a checkpoint's write."""
    import time

    import prover.train.sft as sft

    data = write_examples(tmp_path / "ex.jsonl")
    real_step, real_save, calls = sft._train_step, sft.save_checkpoint, []

    def step_3_is_slow(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            time.sleep(1.0)
        return real_step(*a, **kw)

    def slow_save(*a, **kw):
        time.sleep(1.0)
        return real_save(*a, **kw)

    monkeypatch.setattr(sft, "_train_step", step_3_is_slow)
    monkeypatch.setattr(sft, "save_checkpoint", slow_save)
    out = tmp_path / "out"
    train_sft(SFTConfig(out=str(out), lr=1e-3, max_steps=6, save_every=4, **_common(llama, data)), progress=False)
    seconds = _step_seconds(out)
    assert seconds[3] >= 1.0
    assert all(s < 0.5 for k, s in seconds.items() if k != 3), seconds


def test_a_rerun_with_nothing_left_to_train_leaves_its_checkpoint_whole(llama, tmp_path, monkeypatch):
    """Rerunning a run that already stopped there (`--stop-after`, or finished) trains nothing: it must not
    rewrite the checkpoint it resumed from in place, where a Ctrl-C mid-write leaves a complete-looking
    checkpoint with a torn model file. A finished run's rerun still (re)exports the final model."""
    data = write_examples(tmp_path / "ex.jsonl")
    out = tmp_path / "out"
    common = dict(lr=1e-3, max_steps=4, **_common(llama, data))
    train_sft(SFTConfig(out=str(out), stop_after=2, **common), progress=False)
    run_with_torn_checkpoint_writes(
        monkeypatch, lambda: train_sft(SFTConfig(out=str(out), stop_after=2, **common), progress=False))
    resumed = train_sft(SFTConfig(out=str(out), **common), progress=False)
    straight = train_sft(SFTConfig(out=str(tmp_path / "straight"), **common), progress=False)
    assert resumed.history == straight.history
    (out / "model.safetensors").unlink()  # as if the final export was cut short
    again = train_sft(SFTConfig(out=str(out), **common), progress=False)
    assert again.steps == 4 and again.history == straight.history
    wa, wb = weights(out), weights(tmp_path / "straight")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_torn_checkpoint_is_one_clear_error(llama, tmp_path):
    """A checkpoint whose weights file was cut short (disk full, a copy interrupted) stops the resume with one
    message naming it, not a safetensors traceback."""
    from prover.errors import ProverError

    data = write_examples(tmp_path / "ex.jsonl")
    out = tmp_path / "out"
    common = dict(lr=1e-3, max_steps=4, **_common(llama, data))
    train_sft(SFTConfig(out=str(out), stop_after=2, **common), progress=False)
    (out / "checkpoints" / "step-000002" / "model.safetensors").write_bytes(b"torn")
    with pytest.raises(ProverError, match="step-000002"):
        train_sft(SFTConfig(out=str(out), **common), progress=False)


def test_accumulated_micro_batches_are_one_big_batch_for_completion_only_examples(llama, tmp_path):
    """Token weighting counts the tokens the loss has: labels after the first position (a sequence's first token
    is never predicted). With completion-only examples under a tokenizer that adds no BOS (Qwen's), the first
    label is a completion token; counting it weighted the micro-batches off one big batch."""
    rows = [{"prompt": "" if i % 2 else f"prove t{i} " * (1 + i % 3), "completion": "omega " * (1 + i),
             "kind": "whole_proof"} for i in range(8)]
    data = tmp_path / "ex.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = dict(model=str(llama), data=str(data), lr=1e-2, max_steps=2, device="cpu", grad_clip=0.0)
    big = train_sft(SFTConfig(out=str(tmp_path / "big"), micro_batch_size=4, **common), progress=False)
    accum = train_sft(SFTConfig(out=str(tmp_path / "accum"), micro_batch_size=1, grad_accum=4, **common),
                      progress=False)
    assert accum.history == pytest.approx(big.history, rel=1e-6)
    wa, wb = weights(tmp_path / "big"), weights(tmp_path / "accum")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-5)
