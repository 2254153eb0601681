"""Run-store write and read throughput (SQLite, WAL, synchronous=FULL) on this machine's disk.

    PYTHONPATH=. python bench/store_throughput.py [--attempts 2000] [--batch 500] [--dir /tmp] [--out store.json]

Rows: `record` (one transaction and one fsync per attempt), `record_many` (one per batch), `done()`,
`attempts()` (read back, decoded) and the JSONL / Parquet exports. Attempts carry a verdict with a few
messages and a small trace, about the size a real attempt has. Prints a table; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet  # noqa: F401  (imported up front: the export_parquet row times the export, not the import)

from data.store import Attempt, RunStore


def attempt(i: int) -> Attempt:
    return Attempt(
        problem=f"problem_{i % 250:04d}",
        index=i // 250,
        text="theorem t (n : ℕ) (h : 0 < n) : n ^ 2 > 0 := by\n  positivity\n" * 4,
        status="proved" if i % 5 == 0 else "failed",
        verdict={"status": "failed", "messages": [{"severity": "error", "data": "unsolved goals " * 20}] * 3},
        strategy="sample",
        model="tiny",
        sampling={"temperature": 1.0, "top_p": 0.95, "max_tokens": 2048},
        seed=i,
        prompt_tokens=300,
        completion_tokens=800,
        timings={"wall_s": 3.0, "gen_s": 2.0, "gpu_s": 2.0, "lean_wall_s": 1.0, "lean_cpu_s": 0.9},
        trace={"steps": list(range(20))},
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--attempts", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--dir", type=Path, default=None, help="where the store goes (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=Path("store_throughput.json"))
    args = ap.parse_args()
    rows: list[dict] = []

    def row(name: str, n: int, seconds: float) -> None:
        rows.append({"op": name, "items": n, "seconds": round(seconds, 4), "per_s": round(n / seconds, 1),
                     "ms_each": round(1000 * seconds / n, 3)})  # fmt: skip

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        singles = min(args.attempts, 500)  # one fsync each: keep this row short
        with RunStore(Path(tmp) / "a") as store:
            run = store.start_run("bench", {})
            start = time.perf_counter()
            for i in range(singles):
                store.record(run, attempt(i))
            row("record (1 tx each)", singles, time.perf_counter() - start)
        with RunStore(Path(tmp) / "b") as store:
            run = store.start_run("bench", {})
            items = [attempt(i) for i in range(args.attempts)]
            start = time.perf_counter()
            for k in range(0, len(items), args.batch):
                store.record_many(run, items[k : k + args.batch])
            row(f"record_many (batch {args.batch})", len(items), time.perf_counter() - start)
            start = time.perf_counter()
            done = store.done(run)
            row("done()", len(done), time.perf_counter() - start)
            start = time.perf_counter()
            got = store.attempts(run)
            row("attempts() read + decode", len(got), time.perf_counter() - start)
            start = time.perf_counter()
            n = store.export_jsonl(run, Path(tmp) / "x.jsonl")
            row("export_jsonl", n, time.perf_counter() - start)
            store.export_parquet(run, Path(tmp) / "warmup.parquet")  # pyarrow's first table is slow to build
            start = time.perf_counter()
            n = store.export_parquet(run, Path(tmp) / "x.parquet")
            row("export_parquet", n, time.perf_counter() - start)

    print(f"{'op':<28} {'items':>7} {'seconds':>9} {'per s':>10} {'ms each':>9}")
    for r in rows:
        print(f"{r['op']:<28} {r['items']:>7} {r['seconds']:>9.3f} {r['per_s']:>10.1f} {r['ms_each']:>9.3f}")
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.platform(),
            "python": platform.python_version(), "dir": str(args.dir or tempfile.gettempdir()),
            "load_avg_1m": os.getloadavg()[0]}  # fmt: skip
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
