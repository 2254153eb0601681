"""The one interface every generation backend implements (vLLM, OpenAI-compatible HTTP, transformers)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

Prompt = str | list[int]  # text, or token ids (benchmarks; checkpoints without a tokenizer)

SEED_BITS = 63  # derived seeds fit a signed 64-bit int (vLLM, torch and the OpenAI API all take one)


def derive_seed(*parts: int | str) -> int:
    """A seed mixed from `parts` (ints, or strings such as a problem name) by `numpy.random.SeedSequence`:
    nearby inputs give unrelated seeds, so runs with base seeds 0 and 1 share no samples (with `seed + j`
    they would share all but one per attempt). Strings enter through sha256, stable across processes."""
    words: list[int] = []  # each part as a tagged, fixed-width run of uint32 words: no two inputs collide
    for p in parts:
        if isinstance(p, str):
            digest = hashlib.sha256(p.encode()).digest()
            words += [1, *(int.from_bytes(digest[i:i + 4], "little") for i in range(0, 32, 4))]
        else:
            v = int(p) % (1 << 64)  # negatives wrap (SeedSequence takes non-negative entropy)
            words += [0, v & 0xFFFFFFFF, v >> 32]
    hi, lo = np.random.SeedSequence(words).generate_state(2, np.uint32)
    return ((int(hi) << 32) | int(lo)) & ((1 << SEED_BITS) - 1)


@dataclass(frozen=True)
class SamplingParams:
    """Same meaning on every backend.

    temperature 0 = greedy (top_p ignored); `stop` strings end a sequence and are not part of its text; with a
    `seed`, sample j of every prompt is drawn with seed `sample_seed(seed, j)` (so one sample is reproducible
    whatever the batch it runs in), without one sampling is unseeded.
    """

    temperature: float = 1.0
    top_p: float = 0.95
    max_tokens: int = 2048
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = True  # return the sampled tokens' log-probabilities


def sample_seed(seed: int, j: int) -> int:
    """The seed sample j of a request with `seed` is drawn with, on every backend (the one place the rule lives):
    mixed, not `seed + j`, so requests with neighbouring seeds share no sample."""
    return derive_seed(seed, j)


def sample_seeds(params: SamplingParams, n: int) -> list[int | None]:
    """Per-sample seeds of a request for n samples: `sample_seed(seed, j)`, or None for each when unseeded."""
    return [None] * n if params.seed is None else [sample_seed(params.seed, j) for j in range(n)]


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    token_logprobs: list[float] = field(default_factory=list)  # one per generated token
    finish_reason: str = "stop"  # "stop" | "length"
    token_ids: list[int] = field(default_factory=list)  # the generated token ids, where the backend has them

    @property
    def logprob(self) -> float:
        """Sum of the sampled tokens' log-probabilities (tree search scores candidates by it)."""
        return float(sum(self.token_logprobs))


def chat_turn(tokenizer: Any, text: str) -> str:
    """`text` as one user turn through the tokenizer's chat template; the text itself when there is none."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return text
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True)


def first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    """Where the earliest stop string begins in `text`, or None."""
    hits = [i for s in stops if s and (i := text.find(s)) >= 0]
    return min(hits) if hits else None


@runtime_checkable
class Backend(Protocol):
    """prompts + sampling parameters + n samples -> n completions per prompt, in prompt order."""

    model_id: str

    def generate(self, prompts: list[Prompt], params: SamplingParams, n: int = 1) -> list[list[Completion]]: ...

    def close(self) -> None: ...


@runtime_checkable
class StreamingBackend(Protocol):
    """The streaming runner's view of a backend: many concurrent callers each ask for their own completions and
    the backend batches whatever is pending (vLLM's async engine, an HTTP client with many requests in flight,
    transformers batching the queue). `max_in_flight` is how many sequences it can usefully hold at once: the
    runner's backpressure bound on generation."""

    model_id: str
    max_in_flight: int

    async def agenerate(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> list[Completion]: ...

    def close(self) -> None: ...


class ThreadedStreaming:
    """Any blocking `Backend` as a `StreamingBackend`: each request runs `generate` on a worker thread. Correct
    but unbatched; backends that can batch concurrent requests implement `agenerate` themselves."""

    def __init__(self, backend: Backend, max_in_flight: int = 1):
        self.backend, self.max_in_flight = backend, max_in_flight
        self.model_id = backend.model_id

    async def agenerate(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> list[Completion]:
        import asyncio

        return (await asyncio.to_thread(self.backend.generate, [prompt], params, n))[0]

    def close(self) -> None:
        self.backend.close()


def as_streaming(backend: Any) -> StreamingBackend:
    """`backend` itself when it streams, else wrapped so that it does."""
    return backend if isinstance(backend, StreamingBackend) else ThreadedStreaming(backend)
