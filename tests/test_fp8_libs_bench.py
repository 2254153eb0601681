"""bench/fp8_libs_gpu.py on CPU with the tiny preset (smoke test): every shape the FP8 plan converts gets a bf16
time, each FP8 library a reason it cannot run here, and the per-step rows weigh the shapes by their counts."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_fp8_libs_bench_smoke(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    bench = runpy.run_path(str(REPO / "bench" / "fp8_libs_gpu.py"))
    assert bench["main"](["--preset", "tiny", "--device", "cpu", "--seq", "32", "--iters", "1", "--warmup", "0",
                          "--out", str(tmp_path)]) == 0
    got = json.loads((tmp_path / "fp8_libs_gpu.json").read_text())
    linear = [r for r in got["rows"] if r["row"].startswith("linear")]
    assert sum(r["count"] for r in linear) == sum(bench["linear_shapes"](bench["ModelConfig"].preset("tiny")).values())
    for r in got["rows"]:
        assert r["libs"]["bf16"]["ms"] > 0 and r["libs"]["bf16"]["rel_err_out"] < 1e-5  # fp32 on CPU
        assert all("skipped" in c for lib, c in r["libs"].items() if lib != "bf16")  # FP8: a reason, no numbers
    dense = next(t for t in got["per_step"] if t["row"] == "per step: dense linears")
    assert dense["ms"]["bf16"] == pytest.approx(sum(r["count"] * r["libs"]["bf16"]["ms"] for r in linear))
    assert dense["ms"]["te-blockwise"] is None


def test_unknown_library_is_one_clear_error(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(REPO))
    bench = runpy.run_path(str(REPO / "bench" / "fp8_libs_gpu.py"))
    with pytest.raises(SystemExit) as e:
        bench["main"](["--libs", "bf16,deepgemm"])
    assert e.value.code == 2 and "unknown --libs ['deepgemm']" in capsys.readouterr().err
