"""Generation backends behind one protocol (`base.Backend`, blocking, and `base.StreamingBackend`, which each of
them implements natively for the streaming runner): vLLM's async engine, an OpenAI-compatible HTTP client for
`vllm serve`, and `transformers` (the CPU default). Heavy libraries load only when a backend is made.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from prover.errors import ProverError
from prover.generate.base import Backend, Completion, Prompt, SamplingParams, StreamingBackend

if TYPE_CHECKING:
    from data.config import ModelSettings

BACKENDS = ("transformers", "vllm", "openai")


def make_backend(model_settings: ModelSettings, **options: Any) -> Backend:
    """The backend `model_settings` names (model, backend, base_url, api_key, tensor_parallel_size, dtype, device,
    max_in_flight). `options` go to the backend's constructor."""
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


def check_model(model_settings: ModelSettings) -> None:
    """`ProverError` unless the model can be had: a checkpoint directory, a Hugging Face id in the local cache or
    on a reachable hub, or (openai) a server that accepts connections. One quick look, no retries: run before
    anything loads or a run directory exists, so a wrong --model costs seconds, not a model load."""
    model = model_settings.model
    if not model:
        raise ProverError("no model given: pass --model (an HF id or checkpoint directory) or set "
                          "SUBGOAL_MODEL__MODEL")
    if model_settings.backend == "openai":
        _check_server(model_settings.base_url)
        return
    path = Path(str(model)).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ProverError(f"--model {model}: a directory without config.json is not a checkpoint")
        return
    from huggingface_hub import constants, model_info, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(str(model))
    except HFValidationError:
        raise ProverError(f"--model {model}: no such checkpoint directory, and not a Hugging Face model id") from None
    if isinstance(try_to_load_from_cache(str(model), "config.json"), str):
        return  # cached: loads offline
    if constants.HF_HUB_OFFLINE:
        raise ProverError(f"--model {model}: not a directory, not in the Hugging Face cache, and HF_HUB_OFFLINE is set")
    try:
        model_info(str(model), timeout=10)
    except RepositoryNotFoundError:
        raise ProverError(f"--model {model}: no such directory, and no such model on the Hugging Face hub "
                          "(a private one needs HF_TOKEN)") from None
    except Exception as e:  # noqa: BLE001 - any network failure means the same to the user
        raise ProverError(f"--model {model}: not a directory and not in the Hugging Face cache, and the hub "
                          f"cannot be reached ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                          ) from None


def _check_server(base_url: str) -> None:
    url = urlsplit(base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "localhost", port), timeout=5).close()
    except OSError as e:
        raise ProverError(f"no server answers at {base_url} ({e.strerror or e}); start `vllm serve` there or "
                          "pass --base-url") from None


def format_chat(backend: Backend | StreamingBackend, text: str) -> str:
    """`text` as one chat user turn, when the backend's model has a chat template."""
    fmt = getattr(backend, "format_chat", None)
    return fmt(text) if fmt is not None else text


__all__ = ["BACKENDS", "Backend", "Completion", "Prompt", "SamplingParams", "check_model", "format_chat",
           "make_backend"]
