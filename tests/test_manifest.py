"""Run manifests: content ids, the difference message, and each command refusing to resume with other settings
(SFT here; GRPO, iterate and eval beside their own tests' fixtures below)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import FAKE_LEAN
from helpers.cli import cli
from helpers.eval_runs import minif2f_cli
from helpers.tiny_models import bpe_tokenizer, tiny_llama
from helpers.train import write_examples

from data.manifest import (
    MANIFEST_FILE,
    ManifestMismatch,
    check_resume,
    content_id,
    differences,
    make_manifest,
)


def test_content_id_follows_content_not_path(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"weights")
        (d / "config.json").write_text("{}")
    (b / "README.md").write_text("not a weight")
    (b / "checkpoints").mkdir()  # training state under the model dir is not the model
    assert content_id(a, weights_only=True) == content_id(b, weights_only=True)
    (b / "model.safetensors").write_bytes(b"retrained")
    assert content_id(a, weights_only=True) != content_id(b, weights_only=True)
    assert content_id("deepseek-ai/DeepSeek-Prover-V2-7B") == "name:deepseek-ai/DeepSeek-Prover-V2-7B"


def test_mismatch_names_each_change_and_a_match_passes(tmp_path):
    first = make_manifest("sft", {"lr": 1e-5, "epochs": 1.0}, {"seed": 0}, {"--data": "sha256:aaaa"})
    check_resume(tmp_path, first, resuming=False)
    recorded = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert recorded["settings"] == {"lr": 1e-5, "epochs": 1.0} and "commit" in recorded["git"]
    assert "torch" in recorded["versions"]
    check_resume(tmp_path, make_manifest("sft", {"lr": 1e-5, "epochs": 1.0}, {"seed": 0}, {"--data": "sha256:aaaa"}),
                 resuming=True)
    other = make_manifest("sft", {"lr": 3e-5, "epochs": 1.0}, {"seed": 1}, {"--data": "sha256:bbbb"})
    assert differences(recorded, other) == ["--lr 1e-05 -> 3e-05", "--seed 0 -> 1",
                                            "--data content sha256:aaaa -> sha256:bbbb"]
    with pytest.raises(ManifestMismatch, match=r"--lr 1e-05 -> 3e-05; --seed 0 -> 1"):
        check_resume(tmp_path, other, resuming=True)
    with pytest.raises(ManifestMismatch, match="no manifest.json"):
        check_resume(tmp_path / "legacy", other, resuming=True)


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("llama") / "m", bpe_tokenizer())


def _sft(model: Path, data: Path, out: Path, *extra: str) -> int:
    return cli("train", "sft", "--model", str(model), "--data", str(data), "--out", str(out), "--max-steps", "2",
               "--batch-size", "2", "--device", "cpu", *extra)


def test_sft_into_an_existing_out_with_new_data_or_lr_refuses(llama, tmp_path, capsys):
    data = write_examples(tmp_path / "ex.jsonl")
    out = tmp_path / "sft"
    assert _sft(llama, data, out, "--lr", "1e-5") == 0
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["command"] == "sft" and manifest["inputs"]["--data"].startswith("sha256:")
    assert manifest["seeds"] == {"seed": 0} and manifest["settings"]["lr"] == 1e-5
    weights = (out / "model.safetensors").read_bytes()
    capsys.readouterr()

    assert _sft(llama, data, out, "--lr", "3e-5") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "refusing to resume" in err and "--lr 1e-05 -> 3e-05" in err and "Traceback" not in err

    new_data = write_examples(tmp_path / "ex2.jsonl", n=6)  # other content at another path
    assert _sft(llama, new_data, out, "--lr", "1e-5") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--data" in err and "content sha256:" in err
    data.write_text(data.read_text().replace("omega", "simp"))  # same path, other content
    assert _sft(llama, data, out, "--lr", "1e-5") == 2
    assert (out / "model.safetensors").read_bytes() == weights  # the refused runs wrote nothing

    assert _sft(llama, data, out, "--lr", "3e-5", "--no-resume") == 0  # a deliberate restart records anew
    assert json.loads((out / MANIFEST_FILE).read_text())["settings"]["lr"] == 3e-5


def test_grpo_resume_with_other_settings_or_problems_refuses(tmp_path):
    from fakes import FAKE_LEAN
    from helpers.tiny_models import word_tokenizer
    from helpers.train import TACTICS, write_toy_problems

    from data.config import LeanSettings, load_config
    from lean_env import make_verifier
    from prover.train.grpo import GRPOConfig, train_grpo

    model = tiny_llama(tmp_path / "m", word_tokenizer(TACTICS), hidden=32)
    problems = write_toy_problems(tmp_path / "toy.jsonl", n=2)
    common = dict(model=str(model), problems=str(problems), out=str(tmp_path / "grpo"), problems_per_step=2,
                  group_size=2, max_new_tokens=2, device="cpu", save_every=1)
    verifier = make_verifier(LeanSettings(repl_path=FAKE_LEAN, workers=1, timeout_s=30))
    try:
        first = train_grpo(GRPOConfig(steps=1, **common), load_config(environ={}), verifier=verifier, progress=False)
        assert first.steps == 1 and (tmp_path / "grpo" / MANIFEST_FILE).is_file()
        with pytest.raises(ManifestMismatch, match=r"--lr 1e-06 -> 1e-05"):
            train_grpo(GRPOConfig(steps=2, lr=1e-5, **common), load_config(environ={}), verifier=verifier,
                       progress=False)
        write_toy_problems(problems, n=3)  # same path, other problems
        with pytest.raises(ManifestMismatch, match=r"--problems content"):
            train_grpo(GRPOConfig(steps=2, **common), load_config(environ={}), verifier=verifier, progress=False)
    finally:
        verifier.close()


def test_iterate_resume_with_other_settings_refuses_before_any_work(tmp_path, capsys):
    from helpers.train import write_toy_problems

    problems = write_toy_problems(tmp_path / "toy.jsonl", n=2)
    out = tmp_path / "it"
    out.mkdir()
    (out / "store.sqlite").write_bytes(b"")  # a store of an earlier start, made before manifests: refused
    args = ["iterate", "--problems", str(problems), "--model", "no/such-model", "--rounds", "1", "--out", str(out)]
    assert cli(*args) == 2
    assert "no manifest.json" in " ".join(capsys.readouterr().err.split())
    (out / "store.sqlite").unlink()

    from data import load_problems
    from data.manifest import write_manifest
    from prover.train.iterate import IterateConfig, iterate_manifest

    write_manifest(out, iterate_manifest(IterateConfig(str(problems), "no/such-model", 1, str(out), lr=1e-5),
                                         load_problems(str(problems))))
    (out / "store.sqlite").write_bytes(b"")
    assert cli(*args, "--lr", "2e-5", "--rounds", "3") == 2  # more rounds is fine; another lr is not
    err = " ".join(capsys.readouterr().err.split())
    assert "--lr 1e-05 -> 2e-05" in err and "rounds" not in err


def test_eval_identifies_the_model_by_content_and_refuses_a_retrained_checkpoint(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SUBGOAL_LEAN__REPL_PATH", str(FAKE_LEAN))  # the FAKE Lean of tests/, as a user wires Lean
    monkeypatch.setenv("SUBGOAL_LEAN__WORKERS", "1")
    from safetensors.torch import load_file, save_file

    from prover.model.testing import tiny_checkpoint

    model = tiny_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "runs" / "by-content"
    assert minif2f_cli(model, out) == 0
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["command"] == "eval" and manifest["inputs"]["--model"] == content_id(model, weights_only=True)
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["model_content"] == manifest["inputs"]["--model"]
    assert minif2f_cli(model, out) == 0  # same weights: resumes
    capsys.readouterr()

    weights = next(model.glob("*.safetensors"))  # "retrained" in place: same path, other weights
    tensors = load_file(weights)
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1.0
    save_file(tensors, weights, metadata={"format": "pt"})
    assert minif2f_cli(model, out) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "refusing to resume" in err and "--model content sha256:" in err
