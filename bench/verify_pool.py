"""REPL pool and verifier throughput: the pool's own overhead per proof, and how it scales with workers.

    PYTHONPATH=. python bench/verify_pool.py [--requests 300] [--max-workers 4] [--delay-ms 50] [--out verify_pool.json]

With the FAKE REPL (tests/fakes/fake_repl.py, no Lean needed):
- `repl`: one `Repl`, sequential commands: the floor (client + pipe + the fake's own parsing);
- `pool seq`: the same commands through a 1-worker `ReplPool`, one at a time: pool overhead = this - `repl`;
- `pool`: all commands queued at once, 1..N workers, with a per-command service time (`--delay-ms`) standing in
  for Lean's elaboration, so that scaling is visible even on a 2-core machine;
- `verify`: `Verifier.verify_many` of honest proofs (soundness scan + proof command + `#print axioms`/type check
  + a cached reference), 1..N workers, with the same service time.
With a real Lean (`lean_env.toolchain.locate` finds one): miniF2F-style proofs through the pool (header imported
once per REPL) against one fresh `lake env lean` process per proof. Prints a table; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from lean_env import ReplPool, Verifier
from lean_env.repl import Repl

ROOT = Path(__file__).resolve().parent.parent
FAKE = [sys.executable, str(ROOT / "tests" / "fakes" / "fake_repl.py")]
sys.path.insert(0, str(ROOT / "tests"))

HEADER = "import Mathlib\nimport Aesop\n\nset_option maxHeartbeats 400000\n\nopen BigOperators Real Nat Topology Rat\n\n"
PROOFS = [  # miniF2F-style: statement + a short tactic proof
    ("mathd_algebra_10", "theorem mathd_algebra_10 (x : ℝ) (h₀ : x = 2) : x ^ 2 = 4 := by\n  subst h₀\n  norm_num\n"),
    ("mathd_numbertheory_3", "theorem mathd_numbertheory_3 : (∑ x in Finset.range 10, (x + 1) ^ 2) % 10 = 5 := by\n"
     "  decide\n"),
    ("amc_quad", "theorem amc_quad (a b : ℝ) : a ^ 2 + b ^ 2 ≥ 2 * a * b := by\n  nlinarith [sq_nonneg (a - b)]\n"),
    ("induction_nat", "theorem induction_nat (n : ℕ) : 2 ∣ n * (n + 1) := by\n"
     "  exact Nat.even_mul_succ_self n |>.two_dvd\n"),
]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else 0.0


def row(rows: list[dict], what: str, workers: int, n: int, seconds: float, lat: list[float], **extra) -> None:
    r = {"what": what, "workers": workers, "n": n, "seconds": round(seconds, 3), "per_s": round(n / seconds, 1),
         "p50_ms": round(1000 * pct(lat, 0.5), 2), "p99_ms": round(1000 * pct(lat, 0.99), 2), **extra}
    rows.append(r)
    print(f"{what:28s} workers={workers:<2d} n={n:<5d} {r['per_s']:>8.1f}/s  p50 {r['p50_ms']:>8.2f} ms  "
          f"p99 {r['p99_ms']:>8.2f} ms", flush=True)


def bench_fake(args, rows: list[dict]) -> None:
    from fakes.repl_rules import PROBLEMS, lean_rules

    tmp = Path(tempfile.mkdtemp())
    rules = tmp / "rules.json"
    problem = PROBLEMS["mini"]
    rules.write_text(json.dumps(lean_rules(problem.name, {"body": "ok", "axioms": "propext", "type": "same"}),
                                ensure_ascii=False))
    os.environ["FAKE_REPL_RULES"] = str(rules)
    n = args.requests

    os.environ["FAKE_REPL_DELAY_MS"] = "0"
    with Repl(FAKE, timeout_s=30) as repl:
        repl.run_cmd("def warm := 0")
        lat = []
        t0 = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            repl.run_cmd(f"def d{i} := {i}", 0)
            lat.append(time.perf_counter() - t)
        row(rows, "repl (floor)", 1, n, time.perf_counter() - t0, lat)
    raw_p50 = pct(lat, 0.5)

    with ReplPool(FAKE, workers=1, timeout_s=30) as pool:
        pool.run_cmd("def warm := 0", HEADER)
        lat = []
        t0 = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            pool.run_cmd(f"def d{i} := {i}", HEADER)
            lat.append(time.perf_counter() - t)
        row(rows, "pool seq (overhead)", 1, n, time.perf_counter() - t0, lat,
            overhead_ms=round(1000 * (pct(lat, 0.5) - raw_p50), 3))

    os.environ["FAKE_REPL_DELAY_MS"] = str(args.delay_ms)
    for w in range(1, args.max_workers + 1):
        with ReplPool(FAKE, workers=w, timeout_s=30, queue_size=4 * w) as pool:
            for f in [pool.submit(lambda s: s.repl.run_cmd("def warm := 0", s.env), HEADER) for _ in range(2 * w)]:
                f.result()  # every worker has its header
            t0 = time.perf_counter()
            futs = [pool.submit(lambda s, i=i: s.repl.run_cmd(f"def d{i} := {i}", s.env), HEADER) for i in range(n)]
            for f in futs:
                f.result()
            seconds = time.perf_counter() - t0
            m = pool.metrics()
            row(rows, f"pool ({args.delay_ms:g} ms/cmd)", w, n, seconds, list(pool._latencies)[-n:],
                restarts=m.restarts)

    honest = "theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by\n  subst h₀\n  norm_num\n"
    os.environ["FAKE_REPL_DELAY_MS"] = "0"  # the verifier's own cost per proof: scan, text checks, 2 round trips
    with Verifier(ReplPool(FAKE, workers=1, timeout_s=30)) as v:
        v.verify(problem, honest)
        lat = []
        t0 = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            assert v.verify(problem, honest + f"-- {i}\n").proved  # distinct texts: no cache hits
            lat.append(time.perf_counter() - t)
        row(rows, "verify seq (0 ms/cmd)", 1, n, time.perf_counter() - t0, lat)
    os.environ["FAKE_REPL_DELAY_MS"] = str(args.delay_ms)
    for w in range(1, args.max_workers + 1):
        with Verifier(ReplPool(FAKE, workers=w, timeout_s=30)) as v:
            v.verify_many([(problem, honest)] * (2 * w))  # warm: headers + reference
            t0 = time.perf_counter()
            verdicts = v.verify_many([(problem, honest + f"-- {i}\n") for i in range(n // 2)])
            seconds = time.perf_counter() - t0
            assert all(x.proved for x in verdicts), verdicts[0].reasons
            row(rows, f"verify ({args.delay_ms:g} ms/cmd)", w, len(verdicts), seconds,
                [x.wall_time for x in verdicts])


def bench_real(args, rows: list[dict]) -> None:
    from lean_env import make_verifier
    from lean_env.errors import LeanNotFound
    from lean_env.toolchain import locate

    try:
        tc = locate(None)
    except LeanNotFound as e:
        print(f"real Lean: skipped ({str(e)[:80]}...)")
        rows.append({"what": "real lean", "skipped": "no Lean toolchain found"})
        return
    from types import SimpleNamespace

    problems = [SimpleNamespace(name=name, header=HEADER, formal_statement=src.split(":= by")[0] + ":= by\n", extra={})
                for name, src in PROOFS]
    items = [(p, src) for p, (_, src) in zip(problems, PROOFS, strict=True)] * args.real_rounds
    for w in sorted({1, args.max_workers}):
        v = make_verifier(SimpleNamespace(workers=w, timeout_s=300.0, memory_mb=8192, max_proofs_per_repl=200))
        try:
            t0 = time.perf_counter()
            v.verify_many(items[: w])  # imports the header in each worker
            warm = time.perf_counter() - t0
            t0 = time.perf_counter()
            verdicts = v.verify_many(items)
            row(rows, "real: pool, header reused", w, len(items), time.perf_counter() - t0,
                [x.wall_time for x in verdicts], warmup_s=round(warm, 2),
                proved=sum(x.proved for x in verdicts))
        finally:
            v.close()
    lat = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i, (_, src) in enumerate(PROOFS * max(1, args.real_rounds // 2)):
            f = Path(tmp) / f"P{i}.lean"
            f.write_text(HEADER + src)
            t = time.perf_counter()
            subprocess.run([str(tc.lake), "env", "lean", str(f)], cwd=tc.project_dir, capture_output=True)
            lat.append(time.perf_counter() - t)
    row(rows, "real: fresh `lake env lean`", 1, len(lat), time.perf_counter() - t0, lat)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--max-workers", type=int, default=4)
    ap.add_argument("--delay-ms", type=float, default=50.0, help="service time per command of the fake REPL")
    ap.add_argument("--real-rounds", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("verify_pool.json"))
    args = ap.parse_args()
    rows: list[dict] = []
    bench_fake(args, rows)
    bench_real(args, rows)
    meta = {"date": datetime.now(UTC).isoformat(timespec="minutes"), "python": platform.python_version(),
            "cpus": os.cpu_count(), "load_avg": os.getloadavg(), "args": vars(args) | {"out": str(args.out)},
            "median_per_s": statistics.median(r["per_s"] for r in rows if "per_s" in r)}
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
