"""bench/sft_cli_gpu.py runs `subgoal train sft` end to end on CPU with the tiny preset (numbers not asserted), and
refuses an unknown variant with one message."""

from __future__ import annotations

import json

import pytest

from bench.sft_cli_gpu import main


def test_sft_cli_bench_runs_the_command_and_reads_its_log(tmp_path):
    out = tmp_path / "sft_cli.json"
    rc = main(["--preset", "tiny", "--device", "cpu", "--examples", "8", "--steps", "3", "--batch-size", "2",
               "--len-min", "16", "--len-max", "48", "--variants", "default", "--work", str(tmp_path / "w"),
               "--out", str(out)])
    assert rc == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["row"] == "default" and row["steps"] == 3 and row["steady_tokens_per_s"] > 0
    assert 0 < row["tokens_per_step"] <= 2 * 48 and row["wall_s"] > 0
    assert (tmp_path / "w" / "out-default" / "config.json").is_file()  # the command's final model


def test_unknown_variant_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--variants", "default,fast"])
    assert e.value.code == 2 and "unknown variant(s) fast" in capsys.readouterr().err
