"""`transformers` backend: batched sampling with left padding and a KV cache (the CPU default).

Own decoding loop rather than `model.generate`, so that every backend has the same semantics: temperature 0 is
greedy, nucleus sampling with `top_p`, stop strings end each sequence on its own (and are cut from its text),
the log-probability of each sampled token under the model's unmodified distribution is returned (as vLLM
does by default), and with a seed, sample j of every prompt draws from its own generator seeded `seed + j`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prover.errors import ProverError
from prover.generate.base import Completion, Prompt, SamplingParams, chat_turn, first_stop


class TransformersBackend:
    def __init__(self, model: str | Path | Any, tokenizer: Any = None, device: str = "auto", dtype: str = "auto",
                 batch_size: int = 32, model_id: str | None = None, ignore_eos: bool = False):
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
        self.model_id = model_id or type(model).__name__
        self.gen_seconds = 0.0  # time spent in generate, for cost accounting
        self.ignore_eos = ignore_eos  # benchmarks: always generate max_tokens

    def format_chat(self, text: str) -> str:
        return chat_turn(self.tokenizer, text)

    def close(self) -> None:
        self.model = None

    def generate(self, prompts: list[Prompt], params: SamplingParams, n: int = 1) -> list[list[Completion]]:
        if self.model is None:
            raise ProverError("the transformers backend was closed")
        t0 = time.perf_counter()
        rows = [(i, j) for i in range(len(prompts)) for j in range(n)]
        encoded = [self._encode(p) for p in prompts]
        out: list[list[Completion | None]] = [[None] * n for _ in prompts]
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start:start + self.batch_size]
            done = self._generate_rows([encoded[i] for i, _ in chunk], [j for _, j in chunk], params)
            for (i, j), completion in zip(chunk, done, strict=True):
                out[i][j] = completion
        self.gen_seconds += time.perf_counter() - t0
        return out  # type: ignore[return-value]

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

    def _generate_rows(self, prompts: list[list[int]], sample_index: list[int],
                       params: SamplingParams) -> list[Completion]:
        import torch

        dev = self.device
        pad = self._pad_id()
        eos = set() if self.ignore_eos else self._eos_ids()
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=dev)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=dev)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        gens = None
        if params.seed is not None and params.temperature > 0:
            gens = [torch.Generator(device=dev).manual_seed(params.seed + j) for j in sample_index]
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
    return torch.stack([torch.multinomial(probs[r], 1, generator=g)[0] for r, g in enumerate(gens)])


def _load(path: str | Path, tokenizer: Any, device: str, dtype: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32,
                   "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
                   "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}.get(dtype)
    if torch_dtype is None:
        raise ProverError(f"unknown dtype {dtype!r} (auto, bfloat16, float16, float32)")
    from transformers.utils import logging as hf_logging

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
