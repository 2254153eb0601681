"""`transformers` backend: batched sampling with left padding and a KV cache (the CPU default).

Own decoding loop rather than `model.generate`, so that every backend has the same semantics: temperature 0 is
greedy, nucleus sampling with `top_p`, stop strings end each sequence on its own (and are cut from its text),
the log-probability of each sampled token under the model's unmodified distribution is returned (as vLLM
does by default), and with a seed, sample j of every prompt draws from its own generator seeded
`sample_seed(seed, j)`. Streaming callers (`agenerate`) are queued; one worker thread batches whatever is
pending, so concurrent attempts share padded forward passes instead of taking turns.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from prover.errors import ProverError
from prover.generate.base import Completion, Prompt, SamplingParams, chat_turn, first_stop, sample_seeds


@dataclass
class _Request:
    """One caller's prompt and its n samples (one row each), waiting for a batch."""

    prompt: list[int]
    params: SamplingParams
    seeds: list[int | None]  # per sample: `sample_seed(seed, j)`, or None unseeded
    future: Future = field(default_factory=Future)


class TransformersBackend:
    def __init__(self, model: str | Path | Any, tokenizer: Any = None, device: str = "auto", dtype: str = "auto",
                 batch_size: int = 32, model_id: str | None = None, ignore_eos: bool = False,
                 max_in_flight: int | None = None):
        import torch

        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        if isinstance(model, (str, Path)):
            model_id = model_id or str(model)
            model, tokenizer = _load(model, tokenizer, self.device, dtype)
        else:
            model = model.to(self.device)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight or batch_size  # what one padded batch holds: more would only queue
        self.model_id = model_id or type(model).__name__
        self.gen_seconds = 0.0  # time spent in generate, for cost accounting
        self.ignore_eos = ignore_eos  # benchmarks: always generate max_tokens
        self.batches = 0  # padded batches run, over the backend's life
        self._model_lock = threading.Lock()  # one batch on the model at a time, whoever runs it
        self._queue: queue.SimpleQueue[list[_Request] | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None

    def format_chat(self, text: str) -> str:
        return chat_turn(self.tokenizer, text)

    def close(self) -> None:
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join()
            self._worker = None
        self.model = None

    def generate(self, prompts: list[Prompt], params: SamplingParams, n: int = 1) -> list[list[Completion]]:
        self._check_open()
        t0 = time.perf_counter()
        requests = [_Request(self._encode(p), params, sample_seeds(params, n)) for p in prompts]
        with self._model_lock:
            self._run_batches(requests)
        self.gen_seconds += time.perf_counter() - t0
        return [r.future.result() for r in requests]

    async def agenerate(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> list[Completion]:
        """Queued for the batching worker: requests pending together run as one padded batch per group of equal
        sampling parameters (seeds aside: those are per row), so N concurrent callers cost about one call."""
        import asyncio

        self._check_open()
        request = _Request(self._encode(prompt), params, sample_seeds(params, n))
        if self._worker is None:
            self._worker = threading.Thread(target=self._drain, name="transformers-batcher", daemon=True)
            self._worker.start()
        self._queue.put([request])
        return await asyncio.wrap_future(request.future)

    def _drain(self) -> None:
        """The worker: take everything pending, batch it by sampling parameters, answer each caller."""
        while True:
            item = self._queue.get()
            with self._model_lock:  # drain only once the model is free: whatever queued meanwhile joins the batch
                pending: list[_Request] = []
                while item is not None:
                    pending += item
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                live = [r for r in pending if r.future.set_running_or_notify_cancel()]  # drop cancelled callers
                self._run_batches(live)
            if item is None:
                for r in self._pending_after_close():
                    r.future.set_exception(ProverError("the transformers backend was closed"))
                return

    def _pending_after_close(self) -> list[_Request]:
        out: list[_Request] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return [r for r in out if r.future.set_running_or_notify_cancel()]
            out += item or []

    def _run_batches(self, requests: list[_Request]) -> None:
        """Every request's rows, grouped by sampling parameters (without the seed), in padded batches of at most
        `batch_size` rows; each request's future gets its n completions (or the batch's error)."""
        groups: dict[SamplingParams, list[_Request]] = {}
        for r in requests:
            groups.setdefault(replace(r.params, seed=None), []).append(r)
        done: dict[int, list[Completion | None]] = {id(r): [None] * len(r.seeds) for r in requests}
        left = {id(r): len(r.seeds) for r in requests}

        def finished(row: tuple[_Request, int], completion: Completion) -> None:
            """A request is answered once its own rows are in, not when its whole batch ends."""
            r, j = row
            done[id(r)][j] = completion
            left[id(r)] -= 1
            if not left[id(r)]:
                r.future.set_result(done[id(r)])

        for params, members in groups.items():
            rows = [(r, j) for r in members for j in range(len(r.seeds))]
            try:
                for start in range(0, len(rows), self.batch_size):
                    chunk = rows[start:start + self.batch_size]
                    self.batches += 1  # counted first: its callers may be answered (and read it) before it returns
                    self._generate_rows([r.prompt for r, _ in chunk], [r.seeds[j] for r, j in chunk], params,
                                        on_row=lambda k, c, chunk=chunk: finished(chunk[k], c))
            except Exception as e:  # every caller of the failed group not yet answered hears of it
                for r in members:
                    if not r.future.done():
                        r.future.set_exception(e)
        for r in requests:
            if not r.seeds:  # n = 0: nothing to wait for
                r.future.set_result([])

    def _check_open(self) -> None:
        if self.model is None:
            raise ProverError("the transformers backend was closed")

    def _encode(self, prompt: Prompt) -> list[int]:
        if isinstance(prompt, list):
            return list(prompt)
        if self.tokenizer is None:
            raise ProverError("text prompts need a tokenizer; this checkpoint has none (pass token ids)")
        return list(self.tokenizer(prompt)["input_ids"])

    def _decode(self, ids: list[int]) -> str:
        if self.tokenizer is None:
            return ""
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _generate_rows(self, prompts: list[list[int]], seeds: list[int | None], params: SamplingParams,
                       on_row: Callable[[int, Completion], None] | None = None) -> list[Completion]:
        """The rows' completions; `on_row(i, completion)` hears of each row as it is done (here: at the end)."""
        import torch

        dev = self.device
        pad = self._pad_id()
        eos = set() if self.ignore_eos else self._eos_ids()
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=dev)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=dev)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        gens = None  # one generator per seeded row (None rows draw from the global generator)
        if params.temperature > 0 and any(s is not None for s in seeds):
            gens = [None if s is None else torch.Generator(device=dev).manual_seed(s) for s in seeds]
        batch = len(prompts)
        tokens: list[list[int]] = [[] for _ in range(batch)]
        logps: list[list[float]] = [[] for _ in range(batch)]
        finish = [None] * batch
        texts: list[str | None] = [None] * batch  # set when a stop string ended the sequence
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
            for _ in range(params.max_tokens):
                logits = out.logits[:, -1, :].float()
                nxt = _sample(logits, params, gens)
                lp = torch.log_softmax(logits, dim=-1).gather(1, nxt[:, None])[:, 0].tolist()
                chosen = nxt.tolist()
                for r in range(batch):
                    if finish[r] is not None:
                        continue
                    tokens[r].append(chosen[r])
                    logps[r].append(lp[r])
                    if chosen[r] in eos:
                        finish[r] = "stop"
                    elif params.stop:
                        text = self._decode(tokens[r])
                        cut = first_stop(text, params.stop)
                        if cut is not None:
                            finish[r], texts[r] = "stop", text[:cut]
                if all(f is not None for f in finish):
                    break
                nxt = torch.where(torch.tensor([f is None for f in finish], device=dev), nxt, pad)
                mask = torch.cat([mask, torch.ones(batch, 1, dtype=mask.dtype, device=dev)], dim=1)
                positions = positions[:, -1:] + 1
                out = self.model(input_ids=nxt[:, None], attention_mask=mask, position_ids=positions,
                                 past_key_values=out.past_key_values, use_cache=True)
        results = []
        for r, p in enumerate(prompts):
            text = texts[r]
            if text is None:
                text = self._decode([t for t in tokens[r] if t not in eos])
            results.append(Completion(text=text, prompt_tokens=len(p), completion_tokens=len(tokens[r]),
                                      token_logprobs=logps[r] if params.logprobs else [],
                                      finish_reason=finish[r] or "length", token_ids=tokens[r]))
        for i, completion in enumerate(results if on_row is not None else []):
            on_row(i, completion)
        return results

    def _pad_id(self) -> int:
        tok = self.tokenizer
        for cand in (getattr(tok, "pad_token_id", None), getattr(tok, "eos_token_id", None),
                     getattr(self.model.config, "pad_token_id", None)):
            if isinstance(cand, int):
                return cand
        return 0

    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        for cand in (getattr(self.tokenizer, "eos_token_id", None), getattr(self.model.config, "eos_token_id", None),
                     getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)):
            if isinstance(cand, int):
                ids.add(cand)
            elif isinstance(cand, (list, tuple)):
                ids.update(c for c in cand if isinstance(c, int))
        return ids


def _sample(logits, params: SamplingParams, gens):
    import torch

    if params.temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        before = sorted_p.cumsum(-1) - sorted_p  # mass strictly before each token: keep while < top_p
        sorted_p = sorted_p.masked_fill(before >= params.top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    if gens is None:
        return torch.multinomial(probs, 1)[:, 0]
    return torch.stack([torch.multinomial(probs[r], 1, generator=g)[0] for r, g in enumerate(gens)])  # g may be None


def _load(path: str | Path, tokenizer: Any, device: str, dtype: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32,
                   "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
                   "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}.get(dtype)
    if torch_dtype is None:
        raise ProverError(f"unknown dtype {dtype!r} (auto, bfloat16, float16, float32)")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_default_handler()  # its handler holds the raw stderr and writes across a live view;
    hf_logging.enable_propagation()  # propagated, records reach the application's handlers (the CLI's console)
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report lists the MTP layer as unused: expected, not news
    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype)
    except (OSError, ValueError) as e:
        raise ProverError(f"cannot load model {path!r}: {str(e).splitlines()[0]}") from None
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()
    if tokenizer is None:
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
        except (OSError, ValueError, TypeError):
            tokenizer = None  # token-id prompts still work
    return model.to(device), tokenizer
