"""A FAKE `vllm` module for CPU tests (vLLM needs a GPU and is not installed here). It mimics exactly the API
surface `prover.generate.vllm_engine` uses: `AsyncEngineArgs`, `AsyncLLMEngine.from_engine_args`,
`SamplingParams`, `sampling_params.RequestOutputKind`, `usage.usage_lib.UsageContext`, and on the engine `generate` (an async generator per
request id), `get_tokenizer`, `collective_rpc`, `reset_prefix_cache`, `shutdown`, `vllm_config`.

Like the real engine it is bound to the event loop its first request ran on (vLLM's output handler is a task
of that loop) and fails loudly when used from another one; a cancelled request is recorded as aborted. Its
"model" writes `s{seed}` (or `u{k}` unseeded) as text, with token ids drawn from the seed.
"""

from __future__ import annotations

import asyncio
import enum
import random
import sys
import types
from dataclasses import dataclass, field
from typing import Any


class RequestOutputKind(enum.Enum):
    CUMULATIVE = 0
    DELTA = 1
    FINAL_ONLY = 2


class UsageContext(enum.Enum):
    UNKNOWN_CONTEXT = "UNKNOWN_CONTEXT"
    LLM_CLASS = "LLM_CLASS"
    API_SERVER = "API_SERVER"
    OPENAI_API_SERVER = "OPENAI_API_SERVER"
    ENGINE_CONTEXT = "ENGINE_CONTEXT"


class SamplingParams:
    def __init__(self, **kw: Any):
        self.kw = kw
        self.n = kw.get("n", 1)
        self.seed = kw.get("seed")
        self.max_tokens = kw.get("max_tokens", 16)
        self.output_kind = kw.get("output_kind", RequestOutputKind.CUMULATIVE)


class AsyncEngineArgs:
    def __init__(self, **kw: Any):
        self.kw = kw


@dataclass
class Logprob:
    logprob: float


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool


@dataclass
class FakeEngine:
    args: dict[str, Any]
    step_s: float = 0.01  # one "decode step": how long a request stays in flight
    max_num_seqs: int = 64
    loop: Any = None
    requests: list[tuple[str, Any, SamplingParams]] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    rpcs: list[tuple[str, tuple]] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    prefix_resets: int = 0
    shut_down: bool = False
    unseeded: int = 0
    usage_context: UsageContext = UsageContext.ENGINE_CONTEXT

    @property
    def vllm_config(self) -> Any:
        return types.SimpleNamespace(scheduler_config=types.SimpleNamespace(max_num_seqs=self.max_num_seqs))

    def get_tokenizer(self) -> Any:
        return types.SimpleNamespace(chat_template=None)

    def _bound(self) -> None:
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = loop
        elif loop is not self.loop:
            raise RuntimeError("FAKE vLLM: engine used from a second event loop (its output handler lives on the first)")

    async def generate(self, prompt: Any, sampling_params: SamplingParams, request_id: str):
        self._bound()
        if self.shut_down:
            raise RuntimeError("FAKE vLLM: engine is shut down")
        if any(r[0] == request_id for r in self.requests):
            raise ValueError(f"FAKE vLLM: request id {request_id} reused")
        self.requests.append((request_id, prompt, sampling_params))
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.step_s)
            prompt_ids = prompt["prompt_token_ids"] if isinstance(prompt, dict) else [ord(c) % 50 for c in prompt]
            outs = [self._sample(i, sampling_params) for i in range(sampling_params.n)]
            final = RequestOutput(request_id, list(prompt_ids), outs, finished=True)
            if sampling_params.output_kind is not RequestOutputKind.FINAL_ONLY:
                yield RequestOutput(request_id, list(prompt_ids), [], finished=False)  # a partial, first
            yield final
        except asyncio.CancelledError:
            self.aborted.append(request_id)
            raise
        finally:
            self.in_flight -= 1

    def _sample(self, index: int, sp: SamplingParams) -> CompletionOutput:
        if sp.seed is None:
            self.unseeded += 1
            label, rng = f"u{self.unseeded}", random.Random()
        else:
            label, rng = f"s{sp.seed}", random.Random(sp.seed)
        count = min(sp.max_tokens, 3)
        ids = [rng.randrange(3, 50) for _ in range(count)]
        lps = [{t: Logprob(-0.5)} for t in ids] if sp.kw.get("logprobs") is not None else None
        return CompletionOutput(index, label, ids, lps, "length" if count == sp.max_tokens else "stop")

    async def collective_rpc(self, method: str, timeout: float | None = None, args: tuple = (),
                             kwargs: dict | None = None) -> list[Any]:
        self._bound()
        self.rpcs.append((method, args))
        if method == "apply_model":
            return [args[0]("fake-model")]
        return [None]

    async def reset_prefix_cache(self) -> bool:
        self._bound()
        self.prefix_resets += 1
        return True

    def shutdown(self, timeout: float | None = None) -> None:  # vLLM 0.25's signature (None: its 5 s grace)
        self.shut_down = True
        self.shutdown_timeout = timeout


class AsyncLLMEngine:
    made: list[FakeEngine] = []
    fail_with: BaseException | None = None  # set to make the next engine start fail

    @classmethod
    def from_engine_args(cls, engine_args: AsyncEngineArgs, start_engine_loop: bool = True,
                         usage_context: UsageContext = UsageContext.ENGINE_CONTEXT) -> FakeEngine:
        if cls.fail_with is not None:
            raise cls.fail_with
        engine = FakeEngine(dict(engine_args.kw), usage_context=usage_context)
        cls.made.append(engine)
        return engine


def install(monkeypatch: Any) -> type[AsyncLLMEngine]:
    """Put the FAKE `vllm` (and its submodules used) in sys.modules for one test; returns the engine class."""

    class Engines(AsyncLLMEngine):
        made: list[FakeEngine] = []
        fail_with = None

    module = types.ModuleType("vllm")
    module.AsyncEngineArgs, module.AsyncLLMEngine, module.SamplingParams = AsyncEngineArgs, Engines, SamplingParams
    sub = types.ModuleType("vllm.sampling_params")
    sub.RequestOutputKind, sub.SamplingParams = RequestOutputKind, SamplingParams
    module.sampling_params = sub
    usage, usage_lib = types.ModuleType("vllm.usage"), types.ModuleType("vllm.usage.usage_lib")
    usage_lib.UsageContext, usage.usage_lib, module.usage = UsageContext, usage_lib, usage
    for name, mod in (("vllm", module), ("vllm.sampling_params", sub), ("vllm.usage", usage),
                      ("vllm.usage.usage_lib", usage_lib)):
        monkeypatch.setitem(sys.modules, name, mod)
    return Engines
