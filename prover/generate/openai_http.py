"""OpenAI-compatible HTTP client for a running `vllm serve` (or any `/v1/completions` server).

Async httpx with a bounded number of requests in flight; retries with exponential backoff on 429, 5xx,
timeouts and connection errors (honouring `Retry-After`); other 4xx are the user's to fix and fail at once.
With a seed, sample j of a prompt is its own request with seed `seed + j` (the shared sampling semantics);
without one, the n samples of a prompt are one request with `n`.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

import httpx

from prover.errors import ProverError
from prover.generate.base import Completion, Prompt, SamplingParams

RETRY_STATUS = {408, 409, 425, 429}


class OpenAIBackend:
    def __init__(self, base_url: str, model: str, api_key: str = "EMPTY", concurrency: int = 32,
                 timeout_s: float = 600.0, max_retries: int = 5, backoff_s: float = 1.0, max_backoff_s: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.model_id = model
        self.api_key = api_key
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.gen_seconds = 0.0
        self.retries = 0  # how many requests were retried, over the backend's life

    def close(self) -> None:
        pass

    def format_chat(self, text: str) -> str:
        return text  # the server applies no template to /v1/completions; models served here take raw text

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
        sem = asyncio.Semaphore(self.concurrency)
        headers = {"Authorization": f"Bearer {self.api_key}"}
        async with httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s), headers=headers) as client:

            async def one(prompt: Prompt, seed: int | None, count: int) -> list[Completion]:
                async with sem:
                    data = await self._post(client, self._body(prompt, params, seed, count))
                return _parse(data, count)

            if params.seed is None:
                jobs = [one(p, None, n) for p in prompts]
                groups = await asyncio.gather(*jobs)
                return [list(g) for g in groups]
            jobs = [one(p, params.seed + j, 1) for p in prompts for j in range(n)]
            flat = await asyncio.gather(*jobs)
            return [[flat[i * n + j][0] for j in range(n)] for i in range(len(prompts))]

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

    async def _post(self, client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/completions"
        last = ""
        for attempt in range(self.max_retries + 1):
            delay = min(self.max_backoff_s, self.backoff_s * 2**attempt) * (0.75 + 0.5 * random.random())
            try:
                r = await client.post(url, json=body)
            except httpx.TimeoutException:
                last = f"no answer within {self.timeout_s:g}s"
            except httpx.TransportError as e:
                last = f"connection failed ({type(e).__name__}: {e})"
            else:
                if r.status_code < 400:
                    try:
                        return r.json()
                    except ValueError:
                        raise ProverError(f"{url} answered non-JSON: {r.text[:120]!r}") from None
                last = f"HTTP {r.status_code}: {r.text[:200]}"
                if r.status_code < 500 and r.status_code not in RETRY_STATUS:
                    raise ProverError(f"{url} rejected the request: {last}")
                after = r.headers.get("retry-after")
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
