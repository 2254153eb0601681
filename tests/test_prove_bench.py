"""bench/generate_gpu.py runs on CPU with the transformers backend and a tiny random checkpoint (its GPU run,
with vLLM, is the lead's; see docs/prove.md)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

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
