"""OpenAI-compatible HTTP client for a running `vllm serve` (or any `/v1/completions` server).

aiohttp with up to `max_in_flight` requests at once (default 256: `vllm serve` batches what it is sent, so
the client must keep its batch full); the streaming runner's callers share one connection pool on their loop.
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
from dataclasses import dataclass
from typing import Any

import aiohttp

from prover.errors import ProverError
from prover.generate.base import Completion, Prompt, SamplingParams, sample_seeds

RETRY_STATUS = {408, 409, 425, 429}


@dataclass
class _Session:
    """One connection pool and its in-flight bound, on the event loop they belong to."""

    loop: asyncio.AbstractEventLoop
    client: aiohttp.ClientSession
    slots: asyncio.Semaphore


class OpenAIBackend:
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
        self._shared: _Session | None = None  # the streaming caller's client, on its loop

    def close(self) -> None:
        shared, self._shared = self._shared, None
        if shared is None or shared.loop.is_closed():
            return  # a closed loop took its connections with it
        if shared.loop.is_running():
            shared.loop.call_soon_threadsafe(lambda: shared.loop.create_task(shared.client.close()))
        else:
            shared.loop.run_until_complete(shared.client.close())

    async def aclose(self) -> None:
        shared, self._shared = self._shared, None
        if shared is not None:
            await shared.client.close()

    def format_chat(self, text: str) -> str:
        return text  # the server applies no template to /v1/completions; models served here take raw text

    async def agenerate(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> list[Completion]:
        """n completions of one prompt, through one connection pool shared by every caller on this loop."""
        loop = asyncio.get_running_loop()
        if self._shared is None or self._shared.loop is not loop:  # first call, or a new loop (the old one ended)
            self._shared = _Session(loop, self._client(), asyncio.Semaphore(self.max_in_flight))
        return await self._samples(self._shared, prompt, params, n)

    def generate(self, prompts: list[Prompt], params: SamplingParams, n: int = 1) -> list[list[Completion]]:
        t0 = time.perf_counter()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            result = asyncio.run(self._generate(prompts, params, n))
        else:  # called from inside an event loop (a notebook): run ours on a thread
            box: dict[str, Any] = {}

            def run() -> None:
                try:
                    box["out"] = asyncio.run(self._generate(prompts, params, n))
                except BaseException as e:  # re-raised in the caller's thread
                    box["err"] = e

            thread = threading.Thread(target=run)
            thread.start()
            thread.join()
            if "err" in box:
                raise box["err"]
            result = box["out"]
        self.gen_seconds += time.perf_counter() - t0
        return result

    async def _generate(self, prompts: list[Prompt], params: SamplingParams, n: int) -> list[list[Completion]]:
        async with self._client() as client:
            session = _Session(asyncio.get_running_loop(), client, asyncio.Semaphore(self.max_in_flight))
            return list(await asyncio.gather(*(self._samples(session, p, params, n) for p in prompts)))

    def _client(self) -> aiohttp.ClientSession:
        # aiohttp, as vLLM's own serving benchmark uses: httpx's pool rescans every connection per request
        # (measured: most of the client's CPU at 256 in flight). Its default of 100 connections is sized up here.
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                                     connector=aiohttp.TCPConnector(limit=self.max_in_flight),
                                     headers={"Authorization": f"Bearer {self.api_key}"})

    async def _samples(self, session: _Session, prompt: Prompt, params: SamplingParams, n: int) -> list[Completion]:
        """Unseeded: one request with n; seeded: one request per sample, seed `sample_seed(seed, j)`."""

        async def one(seed: int | None, count: int) -> list[Completion]:
            async with session.slots:
                data = await self._post(session.client, self._body(prompt, params, seed, count))
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
