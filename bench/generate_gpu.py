"""Generation throughput of the prover's backends on one checkpoint: vLLM (its async engine) vs transformers.

    PYTHONPATH=. python bench/generate_gpu.py                       # GPU: `small` preset, random weights, bf16
    PYTHONPATH=. python bench/generate_gpu.py --checkpoint DIR      # an existing HF-format checkpoint
    PYTHONPATH=. python bench/generate_gpu.py --backends transformers --preset tiny --device cpu \\
        --batches 2 4 --prompt-len 16 --new-tokens 8                # CPU smoke test

Both backends get the same token-id prompts (random ids, `--prompt-len` long; no tokenizer needed: vLLM runs
with `skip_tokenizer_init=True`), sample at temperature 1 and generate exactly `--new-tokens` tokens per
sequence (EOS ignored), through `prover.generate`'s `Backend.generate`, i.e. what the search strategies call.
Each (backend, batch) is timed after one warm-up call. transformers runs first and is freed before vLLM
starts (vLLM wants most of the GPU memory at start). Prints a table; writes JSON to $OUT/generate_gpu.json
(or --out).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from prover.errors import ProverError
from prover.generate.base import SamplingParams


def make_checkpoint(preset: str, directory: Path, seed: int) -> Path:
    """A random-weight checkpoint of `preset`, saved by prover.model in HF DeepSeek-V3 layout (bf16)."""
    from prover.model import DeepSeekV3, ModelConfig

    torch.manual_seed(seed)
    model = DeepSeekV3(ModelConfig.preset(preset))
    path = model.save_pretrained(directory, dtype=torch.bfloat16 if preset != "tiny" else None)
    del model
    gc.collect()
    return Path(path)


def vocab_size(checkpoint: Path) -> int:
    return int(json.loads((checkpoint / "config.json").read_text())["vocab_size"])


def prompts(n: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, vocab) for _ in range(length)] for _ in range(n)]


def build(kind: str, checkpoint: Path, args: argparse.Namespace, batch: int) -> Any:
    if kind == "transformers":
        from prover.generate.hf import TransformersBackend

        return TransformersBackend(str(checkpoint), device=args.device, dtype=args.dtype, batch_size=batch,
                                   ignore_eos=True)
    from prover.generate.vllm_engine import VLLMBackend

    return VLLMBackend(checkpoint, tensor_parallel_size=args.tp, dtype=args.dtype, skip_tokenizer_init=True,
                       max_model_len=args.prompt_len + args.new_tokens + 16,
                       gpu_memory_utilization=args.gpu_memory_utilization, extra_sampling={"ignore_eos": True})


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure(kind: str, checkpoint: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    backend = None
    try:
        backend = build(kind, checkpoint, args, max(args.batches))
        params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=args.new_tokens, logprobs=False)
        vocab = vocab_size(checkpoint)
        backend.generate(prompts(min(4, max(args.batches)), args.prompt_len, vocab, 1),
                         SamplingParams(temperature=1.0, max_tokens=min(8, args.new_tokens), logprobs=False))
        for batch in args.batches:
            if kind == "transformers":
                backend.batch_size = batch
            batch_prompts = prompts(batch, args.prompt_len, vocab, batch)
            backend.generate(batch_prompts[: min(batch, 8)], params)  # warm-up at this shape
            sync()
            t0 = time.perf_counter()
            out = backend.generate(batch_prompts, params)
            sync()
            seconds = time.perf_counter() - t0
            generated = sum(c.completion_tokens for row in out for c in row)
            rows.append({"backend": kind, "batch": batch, "prompt_len": args.prompt_len, "new_tokens": args.new_tokens,
                         "seconds": round(seconds, 4), "generated_tokens": generated,
                         "tokens_per_s": round(generated / seconds, 1),
                         "ms_per_step": round(1000 * seconds / max(1, args.new_tokens), 2), "error": None})
            print(f"  {kind} batch {batch}: {rows[-1]['tokens_per_s']} tokens/s", file=sys.stderr)
    except Exception as e:  # one backend failing (vLLM absent, OOM) must not lose the other's numbers
        if not isinstance(e, ProverError):
            traceback.print_exc()
        print(f"  {kind}: {e}", file=sys.stderr)
        rows.append({"backend": kind, "batch": None, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})
    finally:
        if backend is not None:
            backend.close()
        del backend
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return rows


def environment(args: argparse.Namespace, checkpoint: Path) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else
                           platform.processor() or "cpu", "checkpoint": str(checkpoint), "preset": args.preset}
    for dist in ("transformers", "vllm"):
        try:
            env[dist] = version(dist)
        except PackageNotFoundError:
            env[dist] = None
    return env


def table(rows: list[dict[str, Any]]) -> str:
    head = "| backend | batch | prompt | new | seconds | tokens | tokens/s | ms/step |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    lines = [head]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['backend']} | error: {r['error']} | | | | | | |")
        else:
            lines.append(f"| {r['backend']} | {r['batch']} | {r['prompt_len']} | {r['new_tokens']} | {r['seconds']} "
                         f"| {r['generated_tokens']} | {r['tokens_per_s']:,} | {r['ms_per_step']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, help="HF-format checkpoint dir (default: save a random `--preset`)")
    ap.add_argument("--preset", default="small", help="prover.model preset for the random checkpoint")
    ap.add_argument("--backends", nargs="+", default=["transformers", "vllm"], choices=["transformers", "vllm"])
    ap.add_argument("--batches", nargs="+", type=int, default=[32, 256])
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--tp", type=int, default=1, help="vLLM tensor parallel size")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    ap.add_argument("--workdir", type=Path, help="where the random checkpoint is written (default: a temp dir)")
    ap.add_argument("--out", type=Path, help="JSON output (default $OUT/generate_gpu.json, else ./generate_gpu.json)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.device == "cpu" and args.dtype == "bfloat16":
        args.dtype = "float32"
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    checkpoint = args.checkpoint
    if checkpoint is None:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="generate-gpu-"))
        print(f"saving a random `{args.preset}` checkpoint to {workdir}", file=sys.stderr)
        checkpoint = make_checkpoint(args.preset, workdir, args.seed)
    rows: list[dict[str, Any]] = []
    for kind in args.backends:
        print(f"{kind}:", file=sys.stderr)
        rows += measure(kind, checkpoint, args)
    result = {"benchmark": "generate_gpu", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "environment": environment(args, checkpoint), "rows": rows}
    print(table(rows))
    out = args.out or Path(os.environ.get("OUT", ".")) / "generate_gpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
