"""OpenAI-compatible HTTP client for a running `vllm serve` (or any `/v1/completions` server).

aiohttp with up to `max_in_flight` requests at once (default 256: `vllm serve` batches what it is sent, so
the client must keep its batch full), one connection pool for every caller, kept on a loop of its own
(`loop.BackgroundLoop`) so it outlives the streaming runner's per-run loops.
Retries with exponential backoff on 429, 5xx, timeouts and connection errors (honouring `Retry-After`); other
4xx are the user's to fix and fail at once. With a seed, sample j of a prompt is its own request with seed
`sample_seed(seed, j)` (the shared sampling semantics); without one, the n samples are one request with `n`.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from typing import Any

import aiohttp

from prover.errors import ProverError
from prover.generate.base import Completion, Prompt, SamplingParams, sample_seeds
from prover.generate.loop import BackgroundLoop

RETRY_STATUS = {408, 409, 425, 429}


class OpenAIBackend:
    device = "remote"  # the GPU is the server's: waiting on HTTP is not our GPU-seconds

    def __init__(self, base_url: str, model: str, api_key: str = "EMPTY", max_in_flight: int = 256,
                 timeout_s: float = 600.0, max_retries: int = 5, backoff_s: float = 1.0, max_backoff_s: float = 30.0):
        if max_in_flight < 1:
            raise ProverError(f"max_in_flight must be >= 1, not {max_in_flight}")
        self.base_url = base_url.rstrip("/")
        self.model_id = model
        self.api_key = api_key
        self.max_in_flight = max_in_flight  # requests at once (one per seeded sample); vllm serve batches them
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.gen_seconds = 0.0
        self.retries = 0  # how many requests were retried, over the backend's life
        self._loop: BackgroundLoop | None = None  # started on first use; the pool lives there
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            loop.call(self._close_session())
        finally:
            loop.stop()

    def format_chat(self, text: str) -> str:
        return text  # the server applies no template to /v1/completions; models served here take raw text

    async def agenerate(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> list[Completion]:
        """n completions of one prompt, through the connection pool every caller shares, from any loop."""
        return await self._background().run(self._samples(prompt, params, n))

    def generate(self, prompts: list[Prompt], params: SamplingParams, n: int = 1) -> list[list[Completion]]:
        t0 = time.perf_counter()

        async def every_prompt() -> list[list[Completion]]:
            return list(await asyncio.gather(*(self._samples(p, params, n) for p in prompts)))

        result = self._background().call(every_prompt())
        self.gen_seconds += time.perf_counter() - t0
        return result

    def _background(self) -> BackgroundLoop:
        with self._lock:
            if self._loop is None:
                self._loop = BackgroundLoop("openai-client-loop")
            return self._loop

    async def _pool(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        """The one session and its in-flight bound, made on the background loop on first use."""
        if self._session is None or self._slots is None:
            # aiohttp, as vLLM's own serving benchmark uses: httpx's pool rescans every connection per request
            # (measured: most of the client's CPU at 256 in flight). Its default of 100 connections is sized up.
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                                                  connector=aiohttp.TCPConnector(limit=self.max_in_flight),
                                                  headers={"Authorization": f"Bearer {self.api_key}"})
            self._slots = asyncio.Semaphore(self.max_in_flight)
        return self._session, self._slots

    async def _close_session(self) -> None:
        session, self._session, self._slots = self._session, None, None
        if session is not None:
            await session.close()

    async def _samples(self, prompt: Prompt, params: SamplingParams, n: int) -> list[Completion]:
        """Unseeded: one request with n; seeded: one request per sample, seed `sample_seed(seed, j)`."""
        session, slots = await self._pool()

        async def one(seed: int | None, count: int) -> list[Completion]:
            async with slots:
                data = await self._post(session, self._body(prompt, params, seed, count))
            return _parse(data, count)

        if params.seed is None:
            return await one(None, n)
        flat = await asyncio.gather(*(one(seed, 1) for seed in sample_seeds(params, n)))
        return [row[0] for row in flat]

    def _body(self, prompt: Prompt, params: SamplingParams, seed: int | None, n: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_id,
            "prompt": prompt,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": 1.0 if params.temperature <= 0 else params.top_p,
            "n": n,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if seed is not None:
            body["seed"] = seed
        if params.logprobs:
            body["logprobs"] = 1  # the sampled token's log-probability (plus the top-1)
        return body

    async def _post(self, client: aiohttp.ClientSession, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/completions"
        last = ""
        for attempt in range(self.max_retries + 1):
            delay = min(self.max_backoff_s, self.backoff_s * 2**attempt) * (0.75 + 0.5 * random.random())
            try:
                async with client.post(url, json=body) as r:
                    status, text, after = r.status, await r.text(), r.headers.get("retry-after")
            except TimeoutError:  # aiohttp's timeouts are TimeoutErrors (its ServerTimeoutError too)
                last = f"no answer within {self.timeout_s:g}s"
            except aiohttp.ClientError as e:
                last = f"connection failed ({type(e).__name__}: {e})"
            else:
                if status < 400:
                    try:
                        return json.loads(text)
                    except ValueError:
                        raise ProverError(f"{url} answered non-JSON: {text[:120]!r}") from None
                last = f"HTTP {status}: {text[:200]}"
                if status < 500 and status not in RETRY_STATUS:
                    raise ProverError(f"{url} rejected the request: {last}")
                if after and after.replace(".", "", 1).isdigit():
                    delay = min(self.max_backoff_s, float(after))
            if attempt < self.max_retries:
                self.retries += 1
                await asyncio.sleep(delay)
        raise ProverError(f"{url}: gave up after {self.max_retries + 1} tries; last error: {last}")


def _parse(data: dict[str, Any], n: int) -> list[Completion]:
    try:
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        usage = data.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens", 0))
        total = int(usage.get("completion_tokens", 0))
        out = []
        for c in choices:
            lp = c.get("logprobs") or {}
            token_lps = [float(x) for x in (lp.get("token_logprobs") or []) if x is not None]
            count = len(lp.get("tokens") or []) or (total // max(1, len(choices)))
            reason = c.get("finish_reason") or "stop"
            out.append(Completion(text=c.get("text") or "", prompt_tokens=prompt_tokens, completion_tokens=count,
                                  token_logprobs=token_lps, finish_reason="length" if reason == "length" else "stop"))
    except (KeyError, TypeError, ValueError) as e:
        raise ProverError(f"malformed completion response ({e!r}): {str(data)[:160]}") from None
    if len(out) != n:
        raise ProverError(f"the server returned {len(out)} completions, {n} were asked for")
    return out
