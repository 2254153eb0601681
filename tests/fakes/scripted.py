"""FAKE model servers and backends, scripted: a random tiny model writes no proofs, so strategies and the CLI are
driven with given text (the real tiny model runs through the same paths in other tests).

- `ScriptedBackend`: a `Backend` returning completions chosen by rules on the prompt.
- `SlowStreamingBackend`: the same as a `StreamingBackend` that takes time per request.
- `ScriptedServer`: a real HTTP server on a local socket speaking the OpenAI `/v1/completions` protocol with
  scripted completions (rules: prompt substring -> completion), optional failures (status codes to answer
  first) and delays; it records every request. It stands in for `vllm serve`, which needs a GPU.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prover.generate.base import Completion, SamplingParams

# (substring of the prompt, or a tuple of substrings that must all occur; completion, or completions cycled
# over the samples drawn for that prompt)
Rule = tuple[str | tuple[str, ...], str | list[str]]


def pick(rules: list[Rule], prompt: str, j: int) -> str:
    for needle, text in rules:
        needles = needle if isinstance(needle, tuple) else (needle,)
        if all(n in prompt for n in needles):
            return text[j % len(text)] if isinstance(text, list) else text
    return ""


class ScriptedBackend:
    """TEST backend: completions chosen by rules on the prompt (first rule whose substring occurs)."""

    model_id = "scripted-test-backend"

    def __init__(self, rules: list[Rule]):
        self.rules = rules
        self.calls: list[tuple[list[str], SamplingParams, int]] = []
        self._count: dict[str, int] = {}

    def generate(self, prompts: list[Any], params: SamplingParams, n: int = 1) -> list[list[Completion]]:
        self.calls.append((list(prompts), params, n))
        out = []
        for p in prompts:
            row = []
            for _ in range(n):
                j = self._count.get(p, 0)
                self._count[p] = j + 1
                text = pick(self.rules, p, j)
                row.append(Completion(text, len(p) // 4, max(1, len(text) // 4), [-0.1] * max(1, len(text) // 4)))
            out.append(row)
        return out

    def close(self) -> None:
        pass


class SlowStreamingBackend(ScriptedBackend):
    """TEST `StreamingBackend`: the scripted completions, each request answered after `delay_s` seconds of
    asyncio sleep (a model that takes time), up to `max_in_flight` sequences at once; it logs every request's
    start and end, so a test can see which requests overlapped."""

    def __init__(self, rules: list[Rule], delay_s: float = 0.05, max_in_flight: int = 64):
        super().__init__(rules)
        self.delay_s, self.max_in_flight = delay_s, max_in_flight
        self.log: list[tuple[str, str]] = []  # ("start" | "end", prompt)

    async def agenerate(self, prompt: Any, params: SamplingParams, n: int = 1) -> list[Completion]:
        import asyncio

        self.log.append(("start", prompt))
        await asyncio.sleep(self.delay_s)
        self.log.append(("end", prompt))
        return self.generate([prompt], params, n)[0]


class ScriptedServer:
    """OpenAI-compatible completions over real HTTP, scripted. `fail_first`: status codes answered before the
    first success; `delay_s`: sleep before answering (a number, or a function of (request count, request body));
    `hold_until`: every request waits (at most `hold_timeout_s`) until that many are at the server at once, so a
    test of concurrency does not depend on how fast a loaded machine opens connections."""

    def __init__(self, rules: list[Rule], fail_first: list[int] | None = None,
                 delay_s: float | Callable[[int, dict], float] = 0.0, hold_until: int = 0,
                 hold_timeout_s: float = 10.0):
        self.rules = rules
        self.hold_until, self.hold_timeout_s = hold_until, hold_timeout_s
        self._held = threading.Event()
        self.fail_first = list(fail_first or [])
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.in_flight = self.peak_in_flight = 0  # requests being answered at once
        self._lock = threading.Lock()
        self._count: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append(body)
                    count = len(server.requests)
                    status = server.fail_first.pop(0) if server.fail_first else 200
                    server.in_flight += 1
                    server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
                    if server.in_flight >= server.hold_until:
                        server._held.set()
                if server.hold_until:
                    server._held.wait(server.hold_timeout_s)
                delay = server.delay_s(count, body) if callable(server.delay_s) else server.delay_s
                if delay:
                    time.sleep(delay)
                with server._lock:
                    server.in_flight -= 1
                server.statuses.append(status)
                if status != 200:
                    self._send(status, {"error": {"message": "scripted failure"}})
                    return
                prompt = body["prompt"] if isinstance(body["prompt"], str) else json.dumps(body["prompt"])
                choices = []
                for j in range(int(body.get("n", 1))):
                    with server._lock:
                        c = server._count.get(prompt, 0)
                        server._count[prompt] = c + 1
                    text = pick(server.rules, prompt, c)
                    for stop in body.get("stop") or []:
                        text = text.split(stop, 1)[0]
                    tokens = text.split() or [""]
                    choices.append({"index": j, "text": text, "finish_reason": "stop",
                                    "logprobs": {"tokens": tokens, "token_logprobs": [-0.25] * len(tokens)}})
                usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": sum(
                    len(c["logprobs"]["tokens"]) for c in choices)}
                self._send(200, {"id": "cmpl-test", "object": "text_completion", "model": body.get("model"),
                                 "choices": choices, "usage": usage})

            def _send(self, status: int, obj: dict[str, Any]) -> None:
                data = json.dumps(obj).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # hundreds of clients connect at once; the default backlog of 5 drops them

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---- tests of the helpers themselves ----------------------------------------------------------------------------


