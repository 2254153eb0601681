"""Training-test data and checks: SFT examples, toy GRPO problems over the FAKE Lean, the consistency scores of a hand-written rollout, checkpoint weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fakes import FAKE_LEAN

from data.config import LeanSettings, load_config
from helpers.tiny_models import tiny_llama, word_tokenizer
from prover.train.grpo import GRPOConfig

PROMPT = "Complete the following Lean 4 code:\n\n```lean4\ntheorem t{i} (n : ℕ) : n + {i} = {i} + n := by\n"


def write_examples(path: Path, n: int = 8) -> Path:
    rows = [
        {"prompt": PROMPT.format(i=i), "completion": "  omega\n```", "kind": "whole_proof", "problem": f"t{i}",
         "statement": f"theorem t{i} (n : ℕ) : n + {i} = {i} + n := by", "source": "test"}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def weights(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v for f in sorted(directory.glob("model*.safetensors")) for k, v in load_file(f).items()}


# Only `assumption` closes `a = i` from `h₀ : a = i` among these (rfl/decide see free variables, sorry is
# rejected as unsound, intro/constructor do not apply).
TACTICS = ["assumption", "rfl", "decide", "sorry", "intro", "constructor"]


def write_toy_problems(path: Path, n: int = 4) -> Path:
    rows = [{"name": f"toy_{i}", "header": "", "formal_statement": f"theorem toy_{i} (a : ℕ) (h₀ : a = {i}) : a = {i} := by"}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def fake_lean_verifier():
    """A Verifier over the FAKE Lean, for the module's tests."""
    from lean_env import make_verifier

    v = make_verifier(LeanSettings(repl_path=FAKE_LEAN, workers=1, timeout_s=30))
    yield v
    v.close()


def consistency_scores(tmp_path: Path, problems: Path, texts: list[str], verifier, steps: int, step: int
                       ) -> tuple[list[float], list[bool]]:
    """The real GRPOTrainer's `score` on a hand-written rollout of CoT completions for the first problem of
    `problems`, with the consistency penalty 0.5 for the first `steps` steps."""
    from prover.prompts.extract import extract_proof
    from prover.train.distributed import init_distributed
    from prover.train.grpo import GRPOTrainer, Rollout

    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = GRPOConfig(model=str(tiny_llama(tmp_path / "m", word_tokenizer(TACTICS), hidden=16, layers=1)),
                     problems=str(problems), out=str(tmp_path / "grpo"), device="cpu", prompt_kind="cot",
                     consistency_penalty=0.5, consistency_steps=steps)
    trainer = GRPOTrainer(cfg, load_config(environ={}), init_distributed("cpu"), verifier)
    problem = trainer.problems[0]
    name = problem.formal_statement.split()[1]
    proofs = [extract_proof(t, problem.formal_statement, False, name) for t in texts]
    rollout = Rollout(step, trainer.problems[:1], [0] * len(texts), [[1]] * len(texts), [[1]] * len(texts), texts,
                      proofs)
    rewards, outcomes = trainer.score(rollout)
    return rewards, [o.proved for o in outcomes]


def assert_checkpoint_is(directory: Path, model: torch.nn.Module, ids: torch.Tensor, atol: float) -> None:
    """The DeepSeek-V3 HF checkpoint in `directory` holds `model`'s weights (buffers included: the routing biases)
    within `atol`, and gives its logits on `ids`."""
    from prover.model import DeepSeekV3

    loaded = DeepSeekV3.from_pretrained(directory).eval()
    for (name, a), (_, b) in zip(loaded.state_dict().items(), model.state_dict().items(), strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=atol), name
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, model.eval()(ids).logits, atol=1e-4)


def free_port() -> int:
    """A TCP port free right now on localhost, for a process group's store."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sft_rank(rank: int, world: int, ports: list[int], runs: list[dict], common: dict) -> None:
    """One rank of a `train_sft` launch the way torchrun makes it (its environment variables), for `mp.spawn`: the
    `runs` one after the other, each on a fresh port (re-joining a just-destroyed group's store on the same port can
    hang)."""
    import os

    from prover.train.sft import SFTConfig, train_sft

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    for port, run in zip(ports, runs, strict=True):
        os.environ["MASTER_PORT"] = str(port)
        result = train_sft(SFTConfig(**run, **common), progress=False)
        if rank == 0:  # what the CLI prints, for the test to read
            (Path(run["out"]) / "result.json").write_text(json.dumps(result.to_dict()))


def run_with_torn_checkpoint_writes(monkeypatch, run) -> None:
    """`run()` with every checkpoint's model write cut short by a Ctrl-C, leaving a torn model file behind."""
    import prover.train.checkpoint as checkpoint

    def torn_write(model, tokenizer, out_dir, env, optimizer=None):
        (Path(out_dir) / "model.safetensors").write_bytes(b"torn")
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(checkpoint, "save_model", torn_write)
        try:
            run()
        except KeyboardInterrupt:
            pass


def assert_sft_refuses_before_loading(tmp_path: Path, capsys, flags: list[str], says: str) -> None:
    """`subgoal train sft FLAGS --device cpu` on a model and data that do not exist: one message saying `says`, a
    non-zero exit, no traceback, no output folder (the flags are checked before anything loads)."""
    from eval.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "sft", "--model", str(tmp_path / "no-such-model"), "--data", str(tmp_path / "none.jsonl"),
              "--out", str(tmp_path / "out"), *flags, "--device", "cpu"])
    assert e.value.code != 0
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and not (tmp_path / "out").exists()
