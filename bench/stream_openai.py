"""Samples in flight and wall time of the OpenAI-compatible backend, today's pattern versus the streaming runner's.

    PYTHONPATH=. python bench/stream_openai.py                        # 16 problems x 32 samples, 0.25 s/request
    PYTHONPATH=. python bench/stream_openai.py --latency 0.1 --problems 4 --samples 16 --in-flight 8 64

The server is a STAND-IN for `vllm serve` (a stdlib HTTP server in a child process, answering /v1/completions
after a fixed latency per request whatever the load, as a batching server below its capacity does); nothing is
generated. "today": one problem's `--group` samples per `generate` call, one call after the other (what a job of
`LocalExecutor` sends: at most 8 in flight). "after": one asyncio task per sample calling `agenerate`, at most
`--in-flight` at once (the runner's backpressure over one shared connection pool). Prints a table; writes JSON
to $OUT/stream_openai.json (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prover.generate.base import SamplingParams
from prover.generate.openai_http import OpenAIBackend


def serve_standin(port_box: Any, latency_s: float) -> None:
    """Child process: the stand-in server. GET /stats -> {"peak_in_flight", "requests"}; POST /stats/reset."""
    state = {"in_flight": 0, "peak": 0, "requests": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as vllm serve (uvicorn) does

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            with lock:
                self._send({"peak_in_flight": state["peak"], "requests": state["requests"]})

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path.endswith("/stats/reset"):
                with lock:
                    state.update(peak=0, requests=0)
                self._send({})
                return
            with lock:
                state["in_flight"] += 1
                state["requests"] += 1
                state["peak"] = max(state["peak"], state["in_flight"])
            time.sleep(latency_s)
            with lock:
                state["in_flight"] -= 1
            tokens = int(body.get("max_tokens", 16))
            choices = [{"index": j, "text": "x" * tokens, "finish_reason": "length",
                        "logprobs": {"tokens": ["x"] * tokens, "token_logprobs": [-1.0] * tokens}}
                       for j in range(int(body.get("n", 1)))]
            self._send({"id": "standin", "object": "text_completion", "choices": choices,
                        "usage": {"prompt_tokens": 8, "completion_tokens": tokens * len(choices)}})

        def _send(self, obj: dict[str, Any]) -> None:
            data = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    class Server(ThreadingHTTPServer):
        request_queue_size = 2048  # hundreds of connections open at once
        daemon_threads = True

    httpd = Server(("127.0.0.1", 0), Handler)
    port_box.value = httpd.server_address[1]
    httpd.serve_forever()


def stats(base: str, reset: bool = False) -> dict[str, Any]:
    req = urllib.request.Request(f"{base}/stats/reset", data=b"{}", method="POST") if reset else f"{base}/stats"
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def params(seed: int, max_tokens: int) -> SamplingParams:
    return SamplingParams(temperature=1.0, top_p=0.95, max_tokens=max_tokens, seed=seed)


def today(backend: OpenAIBackend, problems: int, samples: int, group: int, max_tokens: int) -> int:
    """One problem's `group` samples per call, one call after the other."""
    done = 0
    for p in range(problems):
        for start in range(0, samples, group):
            out = backend.generate([f"problem {p}"], params(1000 * p + start, max_tokens), n=group)
            done += len(out[0])
    return done


async def after(backend: OpenAIBackend, problems: int, samples: int, in_flight: int, max_tokens: int) -> int:
    """Every sample its own task; at most `in_flight` at once (the runner's backpressure)."""
    slots = asyncio.Semaphore(in_flight)

    async def attempt(p: int, j: int) -> int:
        async with slots:
            return len(await backend.agenerate(f"problem {p}", params(1000 * p + j, max_tokens), n=1))

    return sum(await asyncio.gather(*(attempt(p, j) for p in range(problems) for j in range(samples))))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--samples", type=int, default=32, help="samples per problem")
    ap.add_argument("--group", type=int, default=8, help="today: samples per call (a job's group)")
    ap.add_argument("--in-flight", type=int, nargs="+", default=[64, 256, 512], help="after: requests at once")
    ap.add_argument("--latency", type=float, default=0.25, help="stand-in server: seconds per request")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    port = multiprocessing.Value("i", 0)
    server = multiprocessing.Process(target=serve_standin, args=(port, args.latency), daemon=True)
    server.start()
    try:
        while port.value == 0:
            time.sleep(0.01)
        base = f"http://127.0.0.1:{port.value}/v1"
        total = args.problems * args.samples
        rows: list[dict[str, Any]] = []

        def record(mode: str, bound: int, run: Any) -> None:
            stats(base, reset=True)
            t0 = time.perf_counter()
            got = run()
            wall = time.perf_counter() - t0
            seen = stats(base)
            assert got == total == seen["requests"], (got, total, seen)
            rows.append({"mode": mode, "client_in_flight": bound, "peak_in_flight": seen["peak_in_flight"],
                         "samples": got, "wall_s": round(wall, 3), "samples_per_s": round(got / wall, 1)})
            print(f"  {mode} ({bound} in flight): {wall:.2f}s", flush=True)

        for mode, bound in [("today", args.group)] + [("after", n) for n in args.in_flight]:
            backend = OpenAIBackend(base, "standin", max_in_flight=bound)
            try:
                if mode == "today":
                    record(mode, bound, lambda b=backend: today(b, args.problems, args.samples, args.group,
                                                                 args.max_tokens))
                else:
                    record(mode, bound, lambda b=backend, n=bound: asyncio.run(
                        after(b, args.problems, args.samples, n, args.max_tokens)))
            finally:
                backend.close()
    finally:
        server.terminate()
        server.join()
    base_wall = rows[0]["wall_s"]
    for r in rows:
        r["speedup_vs_today"] = round(base_wall / r["wall_s"], 2)
    result = {"benchmark": "stream_openai", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
              "latency_s": args.latency, "problems": args.problems, "samples_per_problem": args.samples,
              "rows": rows}
    print("| mode | client in flight | peak at server | samples | wall s | samples/s | vs today |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['mode']} | {r['client_in_flight']} | {r['peak_in_flight']} | {r['samples']} | {r['wall_s']} "
              f"| {r['samples_per_s']} | {r['speedup_vs_today']}x |")
    out = args.out or Path(os.environ.get("OUT", ".")) / "stream_openai.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
