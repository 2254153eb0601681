"""Generation backends behind one protocol (`base.Backend`, blocking, and `base.StreamingBackend`, which each of
them implements natively for the streaming runner): vLLM's async engine, an OpenAI-compatible HTTP client for
`vllm serve`, and `transformers` (the CPU default). Heavy libraries load only when a backend is made.
"""

from __future__ import annotations

from typing import Any

from prover.errors import ProverError
from prover.generate.base import Backend, Completion, Prompt, SamplingParams

BACKENDS = ("transformers", "vllm", "openai")


def make_backend(model_settings: Any, **options: Any) -> Backend:
    """The backend `model_settings` names (duck-typed `data.config.ModelSettings`: model, backend, base_url,
    api_key, tensor_parallel_size, dtype, device, max_in_flight). `options` go to the backend's constructor."""
    kind = model_settings.backend
    if getattr(model_settings, "max_in_flight", None) is not None:
        options.setdefault("max_in_flight", model_settings.max_in_flight)
    model = model_settings.model
    if not model:
        raise ProverError("no model given: pass --model (an HF id or checkpoint directory) or set "
                          "SUBGOAL_MODEL__MODEL")
    if kind == "transformers":
        from prover.generate.hf import TransformersBackend

        return TransformersBackend(model, device=model_settings.device, dtype=model_settings.dtype, **options)
    if kind == "vllm":
        from prover.generate.vllm_engine import VLLMBackend

        return VLLMBackend(model, tensor_parallel_size=model_settings.tensor_parallel_size,
                           dtype=model_settings.dtype, **options)
    if kind == "openai":
        from prover.generate.openai_http import OpenAIBackend

        return OpenAIBackend(model_settings.base_url, str(model), api_key=model_settings.api_key, **options)
    raise ProverError(f"unknown backend {kind!r} (choose from {', '.join(BACKENDS)})")


def format_chat(backend: Any, text: str) -> str:
    """`text` as one chat user turn, when the backend's model has a chat template."""
    fmt = getattr(backend, "format_chat", None)
    return fmt(text) if fmt is not None else text


__all__ = ["BACKENDS", "Backend", "Completion", "Prompt", "SamplingParams", "format_chat", "make_backend"]
