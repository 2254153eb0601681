"""bench/generate_gpu.py runs on CPU with the transformers backend and a tiny random checkpoint (its GPU run,
with vLLM, is the lead's; see docs/prove.md)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "generate_gpu.py"


def test_generate_bench_cpu_smoke(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("generate_gpu", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "gen.json"
    result = bench.main(["--backends", "transformers", "--preset", "tiny", "--device", "cpu", "--batches", "2", "3",
                         "--prompt-len", "8", "--new-tokens", "4", "--workdir", str(tmp_path / "ckpt"),
                         "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert rows == result["rows"]
    assert [(r["backend"], r["batch"], r["generated_tokens"]) for r in rows] == [("transformers", 2, 8),
                                                                                 ("transformers", 3, 12)]
    assert all(r["tokens_per_s"] > 0 and r["error"] is None for r in rows)
    assert "| transformers | 3 | 8 | 4 |" in capsys.readouterr().out


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH.with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stream_openai_bench_today_versus_streaming(tmp_path):
    """The CPU benchmark against its stand-in server: today's pattern holds one group in flight, the streaming
    pattern as many as it is allowed, and every sample is answered exactly once."""
    out = tmp_path / "stream.json"
    # 0.5 s per request: long enough that a loaded 2-core box gets all 32 requests out before the first returns
    result = _load("stream_openai").main(["--latency", "0.5", "--problems", "2", "--samples", "16",
                                          "--in-flight", "32", "--out", str(out)])
    today, after = result["rows"]
    assert (today["mode"], today["peak_in_flight"], after["peak_in_flight"]) == ("today", 8, 32)
    assert today["samples"] == after["samples"] == 32
    assert json.loads(out.read_text())["rows"] == result["rows"]


@pytest.mark.slow  # three model loads and two CLI runs with REPL pools: about a minute on a 2-core box
def test_e2e_bench_cpu_smoke(tmp_path, monkeypatch):
    """bench/e2e_gpu.py end to end on CPU (transformers, tiny preset): all three parts run and agree on the work."""
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("SUBGOAL_LEAN__WORKERS", "1")
    result = _load("e2e_gpu").main(["--device", "cpu", "--preset", "tiny", "--problems", "1", "--samples", "2",
                                    "--max-tokens", "4", "--lean-latency", "0.2", "--lean-workers", "1",
                                    "--parts", "abc", "--workdir", str(tmp_path), "--out", str(tmp_path / "e2e.json")])
    a, b, c = result["rows"]
    assert not any("error" in r for r in (a, b, c)), result["rows"]
    assert a["sequences"] == b["sequences"] == c["sequences"] == 2
    assert all(r["completion_tokens"] > 0 and r["tokens_per_s"] > 0 for r in (a, b, c))
    assert c["proofs_checked"] == 2 and c["lean_s"] == 0.4  # both proofs reached the latency-bound fake Lean
    assert c["seconds"] >= 0.4
    assert {"b_over_a", "b_requests_over_a", "max_s", "sum_s", "c_wall_s"} <= set(result["summary"])
    assert 0 < b["requests_s"] <= b["seconds"] and b["setup_after_ready_s"] >= 0  # the window's phases


def test_run_tail_bench_cpu_smoke(tmp_path):
    """bench/run_tail.py through `subgoal eval`'s path: every attempt recorded, the FAKE engine's close begun once
    the burst was answered (before the run's end) and never followed by a request."""
    result = _load("run_tail").main(["--problems", "2", "--samples", "3", "--close-s", "0.3", "--lean-workers", "1",
                                     "--out", str(tmp_path / "tail.json")])
    assert [r["kind"] for r in result["rows"]] == ["random", "proof"]
    for r in result["rows"]:
        assert r["attempts"] == 6 and r["requests_after_close"] == 0
        assert 0 <= r["close_start_s"] < r["to_report_s"] <= r["to_done_s"]
        assert r["close_end_s"] - r["close_start_s"] >= 0.3
    assert json.loads((tmp_path / "tail.json").read_text())["rows"] == result["rows"]
