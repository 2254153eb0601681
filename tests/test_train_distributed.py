"""SFT under torchrun (2 processes, gloo on CPU, FSDP2) gives the losses of the same run in one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from test_train_sft import write_examples
from test_train_tiny import bpe_tokenizer, tiny_llama, tiny_moe


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["llama", "moe"])
def test_fsdp_two_ranks_match_one_process(tmp_path, kind):
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not on PATH")
    make = tiny_llama if kind == "llama" else tiny_moe
    model = make(tmp_path / "m", bpe_tokenizer())
    data = write_examples(tmp_path / "ex.jsonl")
    common = ["train", "sft", "--model", str(model), "--data", str(data), "--max-steps", "3", "--lr", "1e-3",
              "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-c", "from eval.cli import main; main()"]
    subprocess.run([*cli, *common, "--out", str(tmp_path / "one"), "--batch-size", "4"], check=True, env=env,
                   capture_output=True)
    subprocess.run([torchrun, "--nproc_per_node", "2", "--no-python", *cli, *common, "--out", str(tmp_path / "two"),
                    "--batch-size", "2"], check=True, env=env, capture_output=True, timeout=240)

    def losses(d):
        return [json.loads(line)["loss"] for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]

    assert losses("two") == pytest.approx(losses("one"), rel=1e-4)
    assert (tmp_path / "two" / "config.json").is_file() and (tmp_path / "two" / "checkpoints").is_dir()
