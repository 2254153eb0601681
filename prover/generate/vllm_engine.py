"""vLLM offline engine (`vllm.LLM`): tensor parallelism, prefix caching (every sample of a prompt shares its
KV blocks), continuous batching. vLLM is imported only when this backend is built; where it is not installed
the error says how to get it.

Seeds follow the shared semantics: sample j of a prompt is its own request with seed `seed + j` (vLLM batches
them anyway, and prefix caching makes the repeated prompt free).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prover.errors import ProverError
from prover.generate.base import Completion, Prompt, SamplingParams, chat_turn


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
    def __init__(self, model: str | Path, tensor_parallel_size: int = 1, dtype: str = "auto",
                 enable_prefix_caching: bool = True, skip_tokenizer_init: bool = False,
                 gpu_memory_utilization: float = 0.85, max_model_len: int | None = None, seed: int = 0,
                 extra_sampling: dict[str, Any] | None = None, **engine_args: Any):
        vllm = import_vllm()
        self.model_id = str(model)
        self.skip_tokenizer_init = skip_tokenizer_init
        self.extra_sampling = dict(extra_sampling or {})  # e.g. {"ignore_eos": True} for benchmarks
        args = dict(model=str(model), tensor_parallel_size=tensor_parallel_size, dtype=dtype,
                    enable_prefix_caching=enable_prefix_caching, skip_tokenizer_init=skip_tokenizer_init,
                    gpu_memory_utilization=gpu_memory_utilization, seed=seed, trust_remote_code=False, **engine_args)
        if max_model_len is not None:
            args["max_model_len"] = max_model_len
        try:
            self.llm = vllm.LLM(**args)
        except (OSError, ValueError) as e:
            raise ProverError(f"vLLM cannot load {model!r}: {str(e).splitlines()[0] if str(e) else e!r}") from None
        self._vllm = vllm
        self.gen_seconds = 0.0

    def format_chat(self, text: str) -> str:
        return text if self.skip_tokenizer_init else chat_turn(self.llm.get_tokenizer(), text)

    def close(self) -> None:
        self.llm = None

    def sampling_params(self, params: SamplingParams, n: int, seed: int | None):
        if params.stop and self.skip_tokenizer_init:
            raise ProverError("stop strings need a tokenizer; this engine was started with skip_tokenizer_init")
        return self._vllm.SamplingParams(
            n=n, temperature=params.temperature, top_p=1.0 if params.temperature <= 0 else params.top_p,
            max_tokens=params.max_tokens, seed=seed, stop=list(params.stop) or None,
            logprobs=0 if params.logprobs else None, detokenize=not self.skip_tokenizer_init, **self.extra_sampling)

    def generate(self, prompts: list[Prompt], params: SamplingParams, n: int = 1) -> list[list[Completion]]:
        if self.llm is None:
            raise ProverError("the vllm backend was closed")
        t0 = time.perf_counter()
        if params.seed is None:
            requests = [(_prompt(p), self.sampling_params(params, n, None)) for p in prompts]
        else:
            requests = [(_prompt(p), self.sampling_params(params, 1, params.seed + j)) for p in prompts for j in range(n)]
        outputs = self.llm.generate([r[0] for r in requests], [r[1] for r in requests], use_tqdm=False)
        flat: list[list[Completion]] = [[_completion(ro, o, params.logprobs) for o in ro.outputs] for ro in outputs]
        if params.seed is None:
            result = flat
        else:
            result = [[flat[i * n + j][0] for j in range(n)] for i in range(len(prompts))]
        self.gen_seconds += time.perf_counter() - t0
        return result


def _prompt(p: Prompt) -> Any:
    return {"prompt_token_ids": list(p)} if isinstance(p, list) else p


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
