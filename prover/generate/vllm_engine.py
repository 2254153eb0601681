"""vLLM through its asynchronous engine (`vllm.AsyncLLMEngine`, v1's `AsyncLLM`): continuous batching of every
request in flight, tensor parallelism, prefix caching (every sample of a prompt shares its KV blocks). vLLM is
imported only when this backend is built; where it is not installed the error says how to get it.

The engine lives on an event loop of its own (`loop.BackgroundLoop`): vLLM's output handler is an asyncio task
bound to the loop it first ran on, so one fixed loop lets any caller use it (the streaming runner's loops through
`agenerate`, blocking code through `generate`, GRPO's weight sync) without ever crossing loops. With a seed,
sample j is its own request with seed `sample_seed(seed, j)` (prefix caching makes the repeated prompt free).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from prover.errors import ProverError
from prover.generate.base import Completion, Prompt, SamplingParams, chat_turn, sample_seeds
from prover.generate.loop import BackgroundLoop

T = TypeVar("T")


def import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise ProverError(
            f"the vllm backend needs vLLM, which is not importable here ({e}); install it with "
            "`pip install 'subgoal[vllm]'` on a CUDA machine, or use --backend transformers / openai"
        ) from None
    return vllm


class VLLMBackend:
    device = "cuda"  # generation time is our GPUs' time (prover.search.core counts it as GPU-seconds)

    def __init__(self, model: str | Path, tensor_parallel_size: int = 1, dtype: str = "auto",
                 enable_prefix_caching: bool = True, skip_tokenizer_init: bool = False,
                 gpu_memory_utilization: float = 0.85, max_model_len: int | None = None, seed: int = 0,
                 max_in_flight: int | None = None, extra_sampling: dict[str, Any] | None = None, **engine_args: Any):
        vllm = import_vllm()
        self._vllm = vllm
        self._final_only = importlib.import_module("vllm.sampling_params").RequestOutputKind.FINAL_ONLY
        self.model_id = str(model)
        self.skip_tokenizer_init = skip_tokenizer_init
        self.extra_sampling = dict(extra_sampling or {})  # e.g. {"ignore_eos": True} for benchmarks
        args = dict(model=str(model), tensor_parallel_size=tensor_parallel_size, dtype=dtype,
                    enable_prefix_caching=enable_prefix_caching, skip_tokenizer_init=skip_tokenizer_init,
                    gpu_memory_utilization=gpu_memory_utilization, seed=seed, trust_remote_code=False,
                    disable_log_stats=True, **engine_args)
        if max_model_len is not None:
            args["max_model_len"] = max_model_len
        self._ids = itertools.count()
        self._loop = BackgroundLoop("vllm-engine-loop")
        self.engine: Any = None
        try:
            self.engine, self.tokenizer = self._loop.call(self._start(args))
        except (OSError, ValueError, RuntimeError) as e:
            self._loop.stop()
            reason = str(e).splitlines()[0] if str(e) else repr(e)
            raise ProverError(f"vLLM cannot load {model!r}: {reason}") from None
        except BaseException:
            self._loop.stop()
            raise
        # Keep the scheduler's queue full: twice the sequences it runs at once, so the next batch is always waiting.
        running = int(getattr(getattr(self.engine.vllm_config, "scheduler_config", None), "max_num_seqs", 0) or 256)
        self.max_in_flight = max_in_flight or 2 * running
        self.gen_seconds = 0.0

    async def _start(self, args: dict[str, Any]) -> tuple[Any, Any]:
        """Build the engine on its loop (so the output handler starts there) and fetch its tokenizer."""
        # The offline LLM's usage context: its batch defaults (1024 sequences, 16384 batched tokens on an H100/H200);
        # the async engine's own context falls back to the scheduler's 128 and 2048, a fraction of the GPU.
        batch_job = importlib.import_module("vllm.usage.usage_lib").UsageContext.LLM_CLASS
        engine = self._vllm.AsyncLLMEngine.from_engine_args(self._vllm.AsyncEngineArgs(**args), usage_context=batch_job)
        tokenizer = None
        if not self.skip_tokenizer_init:
            tokenizer = engine.get_tokenizer()
            if inspect.isawaitable(tokenizer):  # a coroutine in some vLLM releases, a plain call in others
                tokenizer = await tokenizer
        return engine, tokenizer

    def format_chat(self, text: str) -> str:
        return text if self.skip_tokenizer_init else chat_turn(self.tokenizer, text)

    def close(self) -> None:
        if self.engine is None:
            return
        engine, self.engine = self.engine, None
        try:
            self._loop.call(_shutdown(engine))
        finally:
            self._loop.stop()

    def sampling_params(self, params: SamplingParams, n: int, seed: int | None):
        if params.stop and self.skip_tokenizer_init:
            raise ProverError("stop strings need a tokenizer; this engine was started with skip_tokenizer_init")
        return self._vllm.SamplingParams(
            n=n, temperature=params.temperature, top_p=1.0 if params.temperature <= 0 else params.top_p,
            max_tokens=params.max_tokens, seed=seed, stop=list(params.stop) or None,
            logprobs=0 if params.logprobs else None, detokenize=not self.skip_tokenizer_init,
            output_kind=self._final_only, **self.extra_sampling)

    async def agenerate(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> list[Completion]:
        """n completions of one prompt; callable from any event loop (cancelling it aborts the requests)."""
        self._check_open()
        return await self._loop.run(self._samples(prompt, params, n))

    def generate(self, prompts: list[Prompt], params: SamplingParams, n: int = 1) -> list[list[Completion]]:
        self._check_open()
        t0 = time.perf_counter()

        async def every_prompt() -> list[list[Completion]]:
            return list(await asyncio.gather(*(self._samples(p, params, n) for p in prompts)))

        result = self._loop.call(every_prompt())  # an interrupt cancels it: vLLM aborts the requests
        self.gen_seconds += time.perf_counter() - t0
        return result

    def apply_model(self, fn: Callable[[Any], T]) -> list[T]:
        """`fn(model)` in every worker (GRPO pushes the policy's weights this way), as `LLM.apply_model` does."""
        self._check_open()
        return self._loop.call(self.engine.collective_rpc("apply_model", args=(fn,)))

    def reset_prefix_cache(self) -> None:
        self._check_open()
        self._loop.call(self.engine.reset_prefix_cache())

    def _check_open(self) -> None:
        if self.engine is None:
            raise ProverError("the vllm backend was closed")

    async def _samples(self, prompt: Prompt, params: SamplingParams, n: int) -> list[Completion]:
        """On the engine loop: unseeded, one request with n; seeded, one request per sample with its own seed."""
        if params.seed is None:
            final = await self._final(prompt, self.sampling_params(params, n, None))
            return [_completion(final, o, params.logprobs) for o in sorted(final.outputs, key=_index)]
        finals = await asyncio.gather(*(self._final(prompt, self.sampling_params(params, 1, s))
                                        for s in sample_seeds(params, n)))
        return [_completion(f, f.outputs[0], params.logprobs) for f in finals]

    async def _final(self, prompt: Prompt, sampling: Any) -> Any:
        final = None
        async for out in self.engine.generate(_prompt(prompt), sampling, f"subgoal-{next(self._ids)}"):
            final = out  # FINAL_ONLY: one output, the finished request
        if final is None:
            raise ProverError("vLLM finished a request without an output")
        return final


# vLLM's `shutdown` sends its engine-core process SIGTERM, then waits `timeout` (5 s by default) before it kills the
# process tree. The core leaves its busy loop at once, but on the H200 its resource teardown outlasted the 5 s on
# every close ("exiting busy loop", then "force killing remaining processes" 5 s later in vLLM 0.25's log), so the
# wait only delayed the same kill; GPU memory and CUDA state go with the process. A short grace keeps a fast
# teardown possible and ends the run 4 s sooner.
ENGINE_SHUTDOWN_GRACE_S = 1.0


async def _shutdown(engine: Any) -> None:
    if "timeout" in inspect.signature(engine.shutdown).parameters:  # vLLM >= 0.2x; older ones wait their own way
        engine.shutdown(timeout=ENGINE_SHUTDOWN_GRACE_S)
    else:
        engine.shutdown()


def _index(o: Any) -> int:
    return int(getattr(o, "index", 0))


def _prompt(p: Prompt) -> Any:
    return {"prompt_token_ids": list(p)} if isinstance(p, list) else p  # a `vllm.TokensPrompt`


def _completion(ro: Any, o: Any, want_logprobs: bool) -> Completion:
    ids = list(o.token_ids)
    lps: list[float] = []
    if want_logprobs and o.logprobs:
        for tok, entry in zip(ids, o.logprobs, strict=False):
            lp = entry.get(tok)
            lps.append(float(getattr(lp, "logprob", lp)) if lp is not None else 0.0)
    return Completion(text=o.text or "", prompt_tokens=len(ro.prompt_token_ids or []), completion_tokens=len(ids),
                      token_logprobs=lps, finish_reason="length" if o.finish_reason == "length" else "stop",
                      token_ids=ids)
