"""Verification service throughput and latency: `subgoal lean serve` over HTTP against the in-process Verifier.

    PYTHONPATH=. python bench/serve.py [--requests 1000] [--concurrency 64] [--workers 2] [--delay-ms 0] [--out serve.json]

Both sides check the same honest proofs with the same number of REPL workers, behind which runs the FAKE Lean
REPL (tests/fakes/fake_lean.py, no Lean needed; ~1 ms per command, plus `--delay-ms` standing in for Lean's elaboration
time, via FAKE_LEAN_DELAY_S), so the rows measure what the service adds:
- `in-process`: `Verifier.submit` from `--concurrency` threads in this process (the local checker);
- `server verdict`: `POST /api/check` with the problem's statement (our verdict), `--concurrency` clients, to a
  `subgoal lean serve` started as its own process, as users run it;
- `server raw`: the same proofs as plain snippets (kimina's semantics: Lean's answer only);
- `remote checker`: `RemoteVerifier.verify_many` (what prove/eval/GRPO use with `--checker remote`).
Latency is per request, submit to answer, queueing included. Prints a table; writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
FAKE_LEAN = ROOT / "tests" / "fakes" / "fake_lean.py"
HEADER = "import Mathlib\nimport Aesop\n\nset_option maxHeartbeats 400000\n\nopen BigOperators Real Nat Topology Rat\n\n"


def proofs(n: int, start: int = 0) -> list[tuple[str, str]]:
    """(statement, proof) pairs, all different (no row profits from another's cached reference), all proved by
    the fake's fragment."""
    out = []
    for i in range(start, start + n):
        stmt = f"theorem t{i} (a b : ℕ) : a + b + {i} = b + a + {i} := by"
        out.append((stmt, HEADER + stmt + "\n  ring"))
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else 0.0


def row(rows: list[dict], what: str, n: int, seconds: float, lat: list[float], ok: int) -> None:
    r = {"what": what, "n": n, "ok": ok, "seconds": round(seconds, 3), "per_s": round(n / seconds, 1),
         "p50_ms": round(1000 * pct(lat, 0.5), 2), "p99_ms": round(1000 * pct(lat, 0.99), 2)}
    rows.append(r)
    print(f"{what:18s} n={n:<5d} ok={ok:<5d} {r['per_s']:>8.1f}/s  p50 {r['p50_ms']:>8.2f} ms  "
          f"p99 {r['p99_ms']:>8.2f} ms", flush=True)


def bench_in_process(items: list[tuple[str, str]], workers: int, concurrency: int) -> tuple[float, list[float], int]:
    from data.config import LeanSettings
    from data.problem import Problem
    from lean_env import make_verifier

    verifier = make_verifier(LeanSettings(repl_path=FAKE_LEAN, workers=workers, timeout_s=60))
    try:
        verifier.verify(Problem("w", *items[0][:1], HEADER), items[0][1])  # warm: header imported
        lat: list[float] = []
        ok = 0
        lock = threading.Lock()
        todo = list(items)

        def caller() -> None:
            nonlocal ok
            while True:
                with lock:
                    if not todo:
                        return
                    stmt, proof = todo.pop()
                t0 = time.perf_counter()
                v = verifier.submit(Problem(stmt.split()[1], stmt, HEADER), proof).result()
                with lock:
                    lat.append(time.perf_counter() - t0)
                    ok += v.proved

        t0 = time.perf_counter()
        threads = [threading.Thread(target=caller) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - t0, lat, ok
    finally:
        verifier.close()


async def bench_http(url: str, items: list[tuple[str, str]], concurrency: int, verdict: bool):
    lat: list[float] = []
    ok = 0
    queue = list(enumerate(items))

    async def client() -> None:
        nonlocal ok
        async with httpx.AsyncClient(base_url=url, timeout=300) as http:
            while queue:
                i, (stmt, proof) = queue.pop()
                snippet = {"id": str(i), "code": proof, **({"statement": stmt, "header": HEADER} if verdict else {})}
                t0 = time.perf_counter()
                r = (await http.post("/api/check", json={"snippets": [snippet], "timeout": 60})).json()["results"][0]
                lat.append(time.perf_counter() - t0)
                good = r.get("verdict", {}).get("status") == "proved" if verdict else \
                    "response" in r and not r["response"].get("messages")
                ok += good

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return time.perf_counter() - t0, lat, ok


def bench_remote(url: str, items: list[tuple[str, str]], concurrency: int) -> tuple[float, list[float], int]:
    from data.problem import Problem
    from lean_env.remote import RemoteVerifier

    with RemoteVerifier(url, concurrency=concurrency, timeout_s=60) as remote:
        starts: dict[int, float] = {}
        ends: dict[int, float] = {}
        futures = []
        t0 = time.perf_counter()
        for i, (stmt, proof) in enumerate(items):  # all submitted at once, as verify_many does
            starts[i] = time.perf_counter()
            fut = remote.submit(Problem(stmt.split()[1], stmt, HEADER), proof)
            fut.add_done_callback(lambda _f, i=i: ends.__setitem__(i, time.perf_counter()))
            futures.append(fut)
        ok = sum(f.result().proved for f in futures)
        seconds = time.perf_counter() - t0
        while len(ends) < len(items):  # callbacks run just after the result is set
            time.sleep(0.001)
        return seconds, [ends[i] - starts[i] for i in starts], ok


def start_server(workers: int, queue: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SUBGOAL_LEAN__REPL_PATH": str(FAKE_LEAN), "SUBGOAL_LEAN__WORKERS": str(workers),
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", "from eval.cli import main; main()", "lean", "serve", "--port",
                             str(port), "--queue", str(queue), "--log-level", "warning"], env=env,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health").status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the server did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--delay-ms", type=float, default=0.0, help="extra time per REPL command (Lean stand-in)")
    ap.add_argument("--out", type=Path, default=Path("serve.json"))
    a = ap.parse_args()
    os.environ["FAKE_LEAN_DELAY_S"] = str(a.delay_ms / 1000)  # read by every fake REPL, here and in the server
    items = proofs(a.requests)
    rows: list[dict] = []
    row(rows, "in-process", a.requests, *bench_in_process(items, a.workers, a.concurrency))
    # the server admits every concurrent request (no 429s in a throughput run)
    proc, url = start_server(a.workers, queue=max(4, a.concurrency // a.workers))
    try:
        n = a.requests
        asyncio.run(bench_http(url, proofs(50, 4 * n), a.concurrency, True))  # warm the headers and connections
        row(rows, "server verdict", n, *asyncio.run(bench_http(url, proofs(n, n), a.concurrency, True)))
        row(rows, "server raw", n, *asyncio.run(bench_http(url, proofs(n, 2 * n), a.concurrency, False)))
        row(rows, "remote checker", n, *bench_remote(url, proofs(n, 3 * n), a.concurrency))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.processor() or
            platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "load_avg": os.getloadavg(), "requests": a.requests, "concurrency": a.concurrency,
            "workers": a.workers, "delay_ms": a.delay_ms, "repl": "tests/fakes/fake_lean.py (FAKE Lean)"}
    a.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
