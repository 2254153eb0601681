"""GPU benchmark of prover.model (DeepSeek-V3 architecture) against transformers' DeepseekV3ForCausalLM.

    PYTHONPATH=. python bench/model_gpu.py                       # H100: `small` preset, batch 8 x 2048
    PYTHONPATH=. python bench/model_gpu.py --preset tiny --device cpu --batch 2 --seq 64 --steps 2   # smoke test

Rows: the device's two ceilings (bf16 matmul, device-to-device copy); bf16 training-step throughput
(tokens/s, MFU from active-parameter FLOPs over the bf16 peak, peak memory) of transformers and of this model
(eager, torch.compile'd blocks, with the MTP loss, with FP8 GEMMs: `prover.model.fp8`, blockwise / rowwise;
skipped with the reason where FP8 cannot run); the MoE layer alone (grouped GEMM bf16 / FP8 / batched fallback /
reference loop, QuACK's fused grouped GEMMs; eager and compiled; forward + backward, with the errors of the output
and of every gradient against the reference); decoding tokens/s with the latent
KV cache. Speed variants (item 4 of issue 21): FlexAttention, fused q_a/kv_a and gate/up GEMMs, one forced SDPA
kernel each (cuDNN / flash with v padded / mem-efficient), the fused blocks as CUDA graphs or with inductor's
GEMM autotuning, the routed experts on QuACK's fused GEMMs (`quack`), attention on FlashAttention-4's kernels
(`fa4`, `fa4-quack`), the head and loss fused on QuACK's linear cross-entropy (`*-lce-cg`), the whole step (forward,
backward, AdamW, bias update) as one CUDA graph (`step-graph`, `fa4-quack-lce-step-graph`; `*-overlap`: AdamW per
block inside the backward, on a side stream), and FlexAttention,
fusions and FP8 together ("best"). `attn`: one layer's attention alone, SDPA against FlashAttention-4; `loss`: the
head and loss alone, plain against QuACK's fused; `adamw`: the optimizer's step alone, torch's fused AdamW against
a compiled one (`--optimizers fused,compiled` runs every training row, transformers' too, under each).
`--preset medium --batch 4` for DeepSeek-V3's widths.
Every row catches its own failure (OOM included) and the run goes on. Prints a table; writes JSON to
$OUT/model_gpu.json (or --out).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.profiling import profile_steps
from bench.step_graph import BackwardOptimizer, block_groups, graph_step
from prover.errors import ProverError
from prover.model import DeepSeekV3, ModelConfig
from prover.model.attention_fa4 import causal_attention, check_fa4
from prover.model.balance import update_bias
from prover.model.fp8 import check_fp8, convert_to_fp8
from prover.model.loss_quack import check_fused_loss, next_token_loss
from prover.model.moe import MoE

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_flops(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def timed(fn: Callable[[], Any], device: str, warmup: int, steps: int) -> float:
    """Median-free simple mean over `steps` after `warmup` calls (each call is one full step)."""
    for _ in range(warmup):
        fn()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - t) / steps


def free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def train_flops_per_token(cfg: ModelConfig, model: DeepSeekV3, seq: int) -> tuple[float, float]:
    """6 x active parameters (input embedding excluded, head included), and the same plus causal attention."""
    n = model.num_active_parameters(include_embedding=False, include_mtp=False)
    attn = 3 * cfg.num_hidden_layers * seq * cfg.num_attention_heads * (cfg.qk_head_dim + cfg.v_head_dim)
    return 6.0 * n, 6.0 * n + attn


# ------------------------------------------------------------------------------------------------ rows
def row_ceilings(args) -> list[dict]:
    if not args.device.startswith("cuda"):
        return []
    n = 8192
    a = torch.randn(n, n, device=args.device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=args.device, dtype=torch.bfloat16)
    t = timed(lambda: a @ b, args.device, 3, 20)
    x = torch.randn(2**28, device=args.device, dtype=torch.bfloat16)  # 512 MiB
    y = torch.empty_like(x)
    tc = timed(lambda: y.copy_(x), args.device, 3, 20)
    return [{"row": "ceiling: bf16 matmul 8192^3", "tflops": 2 * n**3 / t / 1e12},
            {"row": "ceiling: d2d copy 512 MiB", "gbps": 2 * x.numel() * 2 / tc / 1e9}]


def make_batch(cfg: ModelConfig, args, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.vocab_size, (args.batch, args.seq), generator=g).to(args.device)


def train_row(name: str, model: torch.nn.Module, step_loss: Callable[[torch.Tensor], torch.Tensor], cfg: ModelConfig,
              ours: DeepSeekV3, args, after_step: Callable[[], None] | None = None,
              profile: Callable[[Callable[[], None]], dict] | None = None, whole_graph: bool = False,
              overlap: bool = False) -> dict:
    """Train steps of `model` (loss, backward, AdamW as `--optimizer` says, `after_step`) timed after warm-up;
    `profile`, if given, is called with the step afterwards and its dict joins the row. whole_graph: the step
    captured as one CUDA graph (`bench.step_graph`; its first step holds the warm-up steps and the capture);
    overlap: AdamW per decoder block inside the backward, on a side stream (`BackwardOptimizer`)."""
    if overlap:
        if args.optimizer == "compiled":  # one compiled AdamW.step per block: a recompile each, over dynamo's 8
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        opt_step = BackwardOptimizer(block_groups(model), lambda group: make_adamw(
            group, args.optimizer, args.device, capturable=whole_graph)).join
    else:
        opt_step = make_adamw(model.parameters(), args.optimizer, args.device, capturable=whole_graph)
    ids = make_batch(cfg, args)

    def body() -> torch.Tensor:
        loss = step_loss(ids)
        loss.backward()
        opt_step()
        if after_step:
            after_step()
        return loss.detach()

    def step() -> None:
        body()
        model.zero_grad(set_to_none=True)

    t0 = time.perf_counter()
    if whole_graph:
        step = graph_step(body, lambda: model.zero_grad(set_to_none=True), warmup=2)
    step()  # first step: compilation, allocator warm-up
    sync(args.device)
    first = time.perf_counter() - t0
    dt = timed(step, args.device, args.warmup, args.steps)
    tokens = args.batch * args.seq
    f_params, f_attn = train_flops_per_token(cfg, ours, args.seq)
    peak = peak_flops(args.device)
    r = {"row": name + OPTIMIZER_LABEL[args.optimizer], "optimizer": args.optimizer, "step_s": dt,
         "tokens_per_s": tokens / dt, "first_step_s": first, "peak_mem_gib": peak_gib(args.device)}
    if peak:
        r["mfu"] = f_params * tokens / dt / peak
        r["mfu_with_attn"] = f_attn * tokens / dt / peak
    if profile is not None:
        r["profile"] = profile(step)
    return r


OPTIMIZER_LABEL = {"fused": "", "compiled": " [compiled AdamW]"}  # how a row's name says its optimizer


def make_adamw(params, kind: str, device: str, capturable: bool = False) -> Callable[[], object]:
    """The rows' AdamW (lr 1e-5, torch's defaults otherwise), as its step: "fused", torch's fused
    multi-tensor kernel on GPU, or "compiled", torch's foreach AdamW through torch.compile (PyTorch's
    compiled-optimizer recipe: inductor makes the update one pass per tensor; the rows' lr never changes, so a float
    constant). The same math either way; alone on the H200 the compiled one moves 3.6 TB/s against 2.7.
    capturable: step counters on the device, for a step captured in a CUDA graph."""
    params = list(params)
    if kind == "fused":
        return torch.optim.AdamW(params, lr=1e-5, fused=device.startswith("cuda"), capturable=capturable).step
    if kind == "compiled":
        return torch.compile(torch.optim.AdamW(params, lr=1e-5, foreach=True, capturable=capturable).step)
    raise ValueError(f"unknown optimizer {kind!r}: fused or compiled")


BLOCK_COMPILE = {  # ours_row's compiled-blocks modes: torch.compile's arguments for each block and the loss
    "blocks": {},
    "blocks-cg": {"mode": "reduce-overhead"},
    "blocks-at": {"mode": "max-autotune-no-cudagraphs"},
    "blocks-gemm": {"options": {"max_autotune_gemm": True}},
    "blocks-cd": {"options": {"coordinate_descent_tuning": True}},
    "blocks-step-graph": {},  # the blocks compiled as "blocks"; the whole step captured as one CUDA graph
    "blocks-step-graph-overlap": {},  # the same, AdamW per block inside the backward on a side stream
}


def rows_train(args, cfg: ModelConfig) -> list[dict]:
    out: list[dict] = []
    dtype = bench_dtype(args)
    with torch.device("meta"):
        counter = DeepSeekV3(cfg)  # for FLOP counts only

    def guarded(name: str, fn: Callable[[], dict]) -> None:
        name += OPTIMIZER_LABEL[args.optimizer]
        free(args.device)
        try:
            out.append(fn())
        except ProverError as e:  # FP8 where it cannot run: the reason, no numbers
            out.append({"row": name, "skipped": str(e)})
        except Exception as e:  # OOM or anything else: record, keep going
            out.append({"row": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})
            if args.verbose:
                traceback.print_exc()
        print(json.dumps(out[-1]), file=sys.stderr, flush=True)
        free(args.device)

    def hf_row() -> dict:
        from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

        hcfg = DeepseekV3Config.from_dict(cfg.to_dict())
        torch.manual_seed(0)
        with torch.device(args.device):
            hf = DeepseekV3ForCausalLM(hcfg).to(dtype)
        hf.train()
        r = train_row("train: transformers DeepseekV3ForCausalLM", hf, lambda ids: hf(input_ids=ids, labels=ids).loss,
                      cfg, counter, args)
        r["experts_impl"] = getattr(hf.config, "_experts_implementation", None)
        r["attn_impl"] = getattr(hf.config, "_attn_implementation", None)
        return r

    def ours_row(name: str, mode: str, mtp: bool, pad_v: bool = True, fp8: str | None = None,
                 attention: str = "sdpa", fused: bool = False, sdpa_backend: str | None = None,
                 moe_impl: str = "auto", loss_impl: str = "auto") -> Callable[[], dict]:
        """mode: "eager" | "blocks" (each block + the loss compiled) | "blocks-cg" (the same as CUDA graphs,
        torch.compile's "reduce-overhead": the host launches each block's kernels as one replay) | "blocks-at" (the
        same with inductor's GEMM autotuning, "max-autotune-no-cudagraphs": Triton templates against cuBLAS, the
        grouped GEMM's included) | "blocks-gemm" (GEMM autotuning alone, no tuning of inductor's own kernels) |
        "blocks-cd" (coordinate-descent tuning of inductor's fused Triton kernels alone: norms, routing, casts,
        the loss; GEMMs stay cuBLAS's) | "blocks-step-graph" (compiled as "blocks", and the whole training step
        captured as one CUDA graph) | "blocks-step-graph-overlap" (the same, with AdamW per block launched inside
        the backward on a side stream) | "full" (the whole forward compiled);
        fp8: a `prover.model.fp8` recipe (FP8 GEMMs, before compiling) or None; attention: "sdpa" | "flex" | "fa4";
        fused: q_a/kv_a and gate/up GEMMs fused; sdpa_backend: force one SDPA kernel (cudnn, flash, efficient);
        moe_impl: the routed experts' path (`ModelConfig.moe_impl`); loss_impl: `DeepSeekV3.set_loss_impl`'s."""
        def run() -> dict:
            if sdpa_backend is None:
                return build_and_time()
            from torch.nn.attention import SDPBackend, sdpa_kernel

            kernel = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                      "efficient": SDPBackend.EFFICIENT_ATTENTION}[sdpa_backend]
            with sdpa_kernel([kernel]):
                return build_and_time()

        def build_and_time() -> dict:
            c = cfg.replace(mtp_loss_weight=0.3 if mtp else 0.0, moe_impl=moe_impl)
            if fp8:
                check_fp8(torch.device(args.device), fp8)
            if attention == "fa4":
                check_fa4(torch.device(args.device))
            if loss_impl == "quack":
                check_fused_loss(torch.device(args.device))
            torch.manual_seed(0)
            with torch.device(args.device):
                m = DeepSeekV3(c).to(dtype)
            m.train()
            for mod in m.modules():
                if hasattr(mod, "pad_v"):
                    mod.pad_v = pad_v
            if fp8:
                convert_to_fp8(m, fp8)
            m.set_attention(attention)
            m.set_fusions(fused)
            m.set_loss_impl(loss_impl)
            fwd = m
            if mode in BLOCK_COMPILE:
                m.compile_blocks(dynamic=False, **BLOCK_COMPILE[mode])
            elif mode == "full":
                fwd = torch.compile(m, dynamic=False)

            def loss(ids: torch.Tensor) -> torch.Tensor:
                if mode == "blocks-cg":  # a new step: the previous step's graph outputs may be overwritten
                    torch.compiler.cudagraph_mark_step_begin()
                return fwd(ids, labels=ids).loss

            prof = None
            if args.profile_rows:
                prof = lambda step: profile_steps(name, step, torch.device(args.device))  # noqa: E731
            return train_row(name, m, loss, c, counter, args, after_step=lambda: update_bias(m, 1e-3), profile=prof,
                             whole_graph=mode.startswith("blocks-step-graph"), overlap=mode.endswith("-overlap"))
        return run

    def profile_row() -> dict:
        """Top kernels of two eager training steps of this model: where the time goes."""
        from torch.profiler import ProfilerActivity, profile

        torch.manual_seed(0)
        with torch.device(args.device):
            m = DeepSeekV3(cfg.replace(mtp_loss_weight=0.0)).to(dtype)
        m.train()
        if args.profile_compiled:
            m.compile_blocks(dynamic=False)
        ids = make_batch(cfg, args)
        for _ in range(3):
            m(ids, labels=ids).loss.backward()
        sync(args.device)
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
        with profile(activities=acts) as prof:
            for _ in range(2):
                m(ids, labels=ids).loss.backward()
            sync(args.device)
        key = "self_cuda_time_total" if args.device.startswith("cuda") else "self_cpu_time_total"
        table = prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=60)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "profile.txt").write_text(table)
        print(table, file=sys.stderr)
        del m
        return {"row": f"profile: ours {'compiled' if args.profile_compiled else 'eager'} (see profile.txt)"}

    if "profile" in args.rows:
        guarded("profile", profile_row)
    if "hf" in args.rows:
        guarded("train: transformers", hf_row)
    variants = {
        "eager": ("train: ours (eager, fast MoE)", "eager", False, True),
        "compiled": ("train: ours (compiled blocks + loss)", "blocks", False, True),
        "nopad": ("train: ours (compiled blocks, v not padded)", "blocks", False, False),
        "full": ("train: ours (whole forward compiled)", "full", False, True),
        "mtp": ("train: ours (compiled blocks, + MTP loss)", "blocks", True, True),
        "fp8": ("train: ours (compiled blocks, fp8 blockwise)", "blocks", False, True, "blockwise"),
        "fp8-rowwise": ("train: ours (compiled blocks, fp8 rowwise)", "blocks", False, True, "rowwise"),
        "fp8-eager": ("train: ours (eager, fp8 blockwise)", "eager", False, True, "blockwise"),
        "flex": ("train: ours (compiled blocks, FlexAttention)", "blocks", False, True, None, "flex"),
        "fused": ("train: ours (compiled blocks, fused q_a/kv_a + gate/up)", "blocks", False, True, None, "sdpa", True),
        "fused-nopad": ("train: ours (compiled blocks, fused q_a/kv_a + gate/up, v not padded)", "blocks", False,
                        False, None, "sdpa", True),
        "flex-fused": ("train: ours (compiled blocks, FlexAttention + fusions, bf16)", "blocks", False, True, None,
                       "flex", True),
        "cudnn": ("train: ours (compiled blocks, SDPA cuDNN only)", "blocks", False, False, None, "sdpa", False, "cudnn"),
        "flash": ("train: ours (compiled blocks, SDPA flash only, v padded)", "blocks", False, True, None, "sdpa", False,
                  "flash"),
        "efficient": ("train: ours (compiled blocks, SDPA mem-efficient only)", "blocks", False, False, None, "sdpa",
                      False, "efficient"),
        "cudagraphs": ("train: ours (CUDA-graphed compiled blocks, fused q_a/kv_a + gate/up, v not padded)",
                       "blocks-cg", False, False, None, "sdpa", True),
        "autotune": ("train: ours (compiled blocks with GEMM autotuning, fused q_a/kv_a + gate/up, v not padded)",
                     "blocks-at", False, False, None, "sdpa", True),
        "autotune-gemm": ("train: ours (compiled blocks, GEMM autotuning alone, fused q_a/kv_a + gate/up, v not padded)",
                          "blocks-gemm", False, False, None, "sdpa", True),
        "cdtune": ("train: ours (compiled blocks, inductor kernels coordinate-descent tuned, fused q_a/kv_a + gate/up, "
                   "v not padded)", "blocks-cd", False, False, None, "sdpa", True),
        "quack": ("train: ours (compiled blocks, fused q_a/kv_a + gate/up, v not padded, QuACK fused MoE GEMMs)",
                  "blocks", False, False, None, "sdpa", True, None, "quack"),
        "quack-cg": ("train: ours (CUDA-graphed compiled blocks, fused q_a/kv_a + gate/up, v not padded, QuACK fused "
                     "MoE GEMMs)", "blocks-cg", False, False, None, "sdpa", True, None, "quack"),
        "fa4": ("train: ours (compiled blocks, fused q_a/kv_a + gate/up, FlashAttention-4)", "blocks", False, False,
                None, "fa4", True),
        "fa4-quack": ("train: ours (compiled blocks, fused q_a/kv_a + gate/up, FlashAttention-4, QuACK fused MoE GEMMs)",
                      "blocks", False, False, None, "fa4", True, None, "quack"),
        "fa4-quack-cg": ("train: ours (CUDA-graphed compiled blocks, fused q_a/kv_a + gate/up, FlashAttention-4, QuACK "
                         "fused MoE GEMMs)", "blocks-cg", False, False, None, "fa4", True, None, "quack"),
        "quack-lce-cg": ("train: ours (CUDA-graphed compiled blocks, fused q_a/kv_a + gate/up, v not padded, QuACK "
                         "fused MoE GEMMs and linear cross-entropy)", "blocks-cg", False, False, None, "sdpa", True,
                         None, "quack", "quack"),
        "fa4-quack-lce-cg": ("train: ours (CUDA-graphed compiled blocks, fused q_a/kv_a + gate/up, FlashAttention-4, "
                             "QuACK fused MoE GEMMs and linear cross-entropy)", "blocks-cg", False, False, None, "fa4",
                             True, None, "quack", "quack"),
        "step-graph": ("train: ours (the whole step one CUDA graph: compiled blocks, fused q_a/kv_a + gate/up, v "
                       "not padded)", "blocks-step-graph", False, False, None, "sdpa", True),
        "quack-step-graph": ("train: ours (the whole step one CUDA graph: compiled blocks, fused q_a/kv_a + gate/up, "
                             "v not padded, QuACK fused MoE GEMMs)", "blocks-step-graph", False, False, None, "sdpa",
                             True, None, "quack"),
        "quack-step-graph-overlap": ("train: ours (the whole step one CUDA graph, AdamW per block beside the backward: "
                                     "compiled blocks, fused q_a/kv_a + gate/up, v not padded, QuACK fused MoE GEMMs)",
                                     "blocks-step-graph-overlap", False, False, None, "sdpa", True, None, "quack"),
        "fa4-quack-lce-step-graph": ("train: ours (the whole step one CUDA graph: compiled blocks, fused q_a/kv_a + "
                                     "gate/up, FlashAttention-4, QuACK fused MoE GEMMs and linear cross-entropy)",
                                     "blocks-step-graph", False, False, None, "fa4", True, None, "quack", "quack"),
        "fa4-quack-lce-step-graph-overlap": (
            "train: ours (the whole step one CUDA graph, AdamW per block beside the backward: compiled blocks, fused "
            "q_a/kv_a + gate/up, FlashAttention-4, QuACK fused MoE GEMMs and linear cross-entropy)",
            "blocks-step-graph-overlap", False, False, None, "fa4", True, None, "quack", "quack"),
        "best": ("train: ours (compiled blocks, FlexAttention + fusions + fp8 blockwise)", "blocks", False, True,
                 "blockwise", "flex", True),
    }
    for key, (name, *how) in variants.items():
        if key in args.rows:
            guarded(name, ours_row(name, *how))
    return out


def bench_dtype(args) -> torch.dtype:
    return torch.bfloat16 if args.device.startswith("cuda") else torch.float32


def build_seeded(args, build):
    """`build()` seeded and made directly on the device, in the bench dtype; returns (module, dtype)."""
    dtype = bench_dtype(args)
    torch.manual_seed(0)
    with torch.device(args.device):
        return build().to(dtype), dtype


def rows_moe(args, cfg: ModelConfig) -> list[dict]:
    out: list[dict] = []
    layer, dtype = build_seeded(args, lambda: MoE(cfg))
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.02)
    layer.train()
    T = args.batch * args.seq
    x0 = torch.randn(1, T, cfg.hidden_size, device=args.device, dtype=dtype)
    ref_out = None
    cuda = args.device.startswith("cuda")
    # "+compile": the layer under torch.compile, as the model's compiled blocks run it
    impls = (["grouped", "grouped+compile", "quack", "quack+compile", "grouped_fp8", "batched", "reference"] if cuda
             else ["batched", "reference"])
    results = {}
    for impl in impls:
        free(args.device)
        try:
            layer.impl = impl.removesuffix("+compile")
            fwd = torch.compile(layer, dynamic=False) if impl.endswith("+compile") else layer
            x = x0.clone().requires_grad_(True)

            def fwd_bwd(x: torch.Tensor = x, fwd=fwd) -> torch.Tensor:
                y, _ = fwd(x)
                y.float().pow(2).mean().backward()
                return y

            layer.zero_grad(set_to_none=True)  # the previous impl's timed steps accumulated into .grad
            y = fwd_bwd()
            results[impl] = (y.detach().float(), x.grad.detach().float().clone(),
                             {n: p.grad.detach().float().clone() for n, p in layer.named_parameters()
                              if p.grad is not None})
            x.grad = None
            layer.zero_grad(set_to_none=True)
            dt = timed(fwd_bwd, args.device, 2, max(3, args.steps))
            active = 3 * cfg.hidden_size * cfg.moe_intermediate_size * (cfg.num_experts_per_tok + cfg.n_shared_experts)
            r = {"row": f"moe layer fwd+bwd: {impl}", "ms": dt * 1e3, "tokens": T,
                 "tflops": 6 * active * T / dt / 1e12}
            out.append(r)
        except Exception as e:
            out.append({"row": f"moe layer fwd+bwd: {impl}", "error": f"{type(e).__name__}: {str(e)[:200]}"})
        print(json.dumps(out[-1]), file=sys.stderr, flush=True)
    if "reference" in results:
        ref_out, ref_grad, ref_params = results["reference"]
        for r in out:
            impl = r["row"].split(": ")[1]
            if impl in results and impl != "reference" and "error" not in r:
                y, g, params = results[impl]
                r["rel_err_out"] = float((y - ref_out).norm() / ref_out.norm())
                r["rel_err_grad"] = float((g - ref_grad).norm() / ref_grad.norm())
                # the parameters' gradients too: the weight-gradient GEMMs and the routing weights' gradient
                r["rel_err_param_grad"] = max(float((params[n] - ref_params[n]).norm() / ref_params[n].norm())
                                              for n in ref_params)
                r["speedup_vs_reference"] = next(
                    (q["ms"] for q in out if q["row"].endswith("reference") and "ms" in q), float("nan")) / r["ms"]
    return out


def fwd_bwd_rows(args, title: str, inputs: list[torch.Tensor], impls: dict[str, tuple[Callable, Callable | None]],
                 reference: Callable, flops: float, grad_out: torch.Tensor | None = None) -> list[dict]:
    """Forward + backward of each of `impls` (name -> (fn, check or None)) on fresh leaf copies of `inputs`: ms,
    TFLOP/s of `flops`, the extra peak memory, and the relative errors of the output and of every input's gradient
    against `reference` in fp32. A check that raises ProverError (the kernels cannot run here) skips the row."""
    cuda = args.device.startswith("cuda")

    def fwd_bwd(fn, leaves):
        o = fn(*leaves)
        o.backward(grad_out)
        return o.detach()

    leaves32 = [t.detach().float().requires_grad_(True) for t in inputs]
    ref = [fwd_bwd(reference, leaves32)] + [t.grad for t in leaves32]
    del leaves32
    out: list[dict] = []
    for name, (fn, check) in impls.items():
        free(args.device)
        row = f"{title}: {name}"
        try:
            if check is not None:
                check(torch.device(args.device))
            leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
            got = [fwd_bwd(fn, leaves)] + [t.grad for t in leaves]
            errs = [float((a.float() - b).norm() / b.norm()) for a, b in zip(got, ref, strict=True)]

            def step(fn=fn, leaves=leaves):
                for t in leaves:
                    t.grad = None
                fwd_bwd(fn, leaves)

            if cuda:
                torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated() if cuda else 0
            dt = timed(step, args.device, 2, max(3, args.steps))
            r = {"row": row, "ms": dt * 1e3, "tflops": flops / dt / 1e12, "rel_err_out": errs[0],
                 "rel_err_grad": max(errs[1:])}
            if cuda:
                r["extra_mem_gib"] = (torch.cuda.max_memory_allocated() - base) / 2**30
            out.append(r)
        except ProverError as e:
            out.append({"row": row, "skipped": str(e)})
        except Exception as e:
            out.append({"row": row, "error": f"{type(e).__name__}: {str(e)[:200]}"})
        print(json.dumps(out[-1]), file=sys.stderr, flush=True)
    return out


def rows_attention(args, cfg: ModelConfig) -> list[dict]:
    """One layer's training attention alone at the preset's heads (MLA: qk nope + rope, v), causal, forward +
    backward: torch's SDPA (what it picks: cuDNN on Hopper for unequal head dims) against FlashAttention-4, eager
    and compiled; TFLOP/s of the causal half; errors against fp32 SDPA."""
    B, S, H = args.batch, args.seq, cfg.num_attention_heads
    dqk, dv = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim, cfg.v_head_dim
    dtype = bench_dtype(args)
    g = torch.Generator(device=args.device).manual_seed(0)
    q, k = (torch.randn(B, S, H, dqk, device=args.device, dtype=dtype, generator=g) for _ in range(2))
    v = torch.randn(B, S, H, dv, device=args.device, dtype=dtype, generator=g)
    dout = torch.randn(B, S, H, dv, device=args.device, dtype=dtype, generator=g)
    scale = cfg.softmax_scale

    def sdpa(q, k, v):
        return torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True, scale=scale).transpose(1, 2)

    def fa4(q, k, v):
        return causal_attention(q, k, v, scale)

    flops = 3.5 * 2 * B * H * S * S * (dqk + dv) / 2  # forward 1 + backward 2.5; causal: half the scores
    impls = {"sdpa": (sdpa, None), "fa4": (fa4, check_fa4),
             "fa4+compile": (torch.compile(fa4, fullgraph=True), check_fa4)}
    return fwd_bwd_rows(args, f"attention fwd+bwd ({B} x {S}, {H} heads, qk {dqk} / v {dv})", [q, k, v], impls,
                        sdpa, flops, grad_out=dout)


def rows_loss(args, cfg: ModelConfig) -> list[dict]:
    """The output head and the next-token loss alone at the preset's shapes (batch x seq tokens, hidden, vocab),
    forward + backward (the gradients of the hidden states and of the head's weight): the model's plain path
    (bf16 logits, then the compiled fp32 cross-entropy) against QuACK's fused linear cross-entropy; errors against
    the plain path in fp32."""
    from prover.model.model import causal_lm_loss

    dtype = bench_dtype(args)
    g = torch.Generator(device=args.device).manual_seed(0)
    hidden = torch.randn(args.batch, args.seq, cfg.hidden_size, device=args.device, dtype=dtype, generator=g)
    weight = 0.02 * torch.randn(cfg.vocab_size, cfg.hidden_size, device=args.device, dtype=dtype, generator=g)
    labels = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), device=args.device, generator=g)
    compiled_loss = torch.compile(causal_lm_loss, dynamic=False)

    def plain(h, w):
        return compiled_loss(torch.nn.functional.linear(h, w), labels)

    def fused(h, w):
        return next_token_loss(h, w, labels)

    def reference(h, w):
        return causal_lm_loss(torch.nn.functional.linear(h, w), labels)

    flops = 3 * 2 * args.batch * args.seq * cfg.hidden_size * cfg.vocab_size  # the head's three GEMMs
    impls = {"plain (logits + compiled cross-entropy)": (plain, None), "quack fused": (fused, check_fused_loss)}
    return fwd_bwd_rows(args, f"head + loss fwd+bwd ({args.batch} x {args.seq} tokens, vocab {cfg.vocab_size})",
                        [hidden, weight], impls, reference, flops)


def rows_adamw(args, cfg: ModelConfig) -> list[dict]:
    """One AdamW step alone over the preset's parameters (bf16, those a step without MTP updates; gradients
    random), each optimizer kind: ms, and GB/s of the 14 bytes a parameter that the step must move (the parameter,
    gradient and two moments read, the parameter and moments written, all bf16)."""
    out: list[dict] = []
    m, _ = build_seeded(args, lambda: DeepSeekV3(cfg))
    params = [p for n, p in m.named_parameters() if not n.startswith("mtp.")]
    for p in params:
        p.grad = torch.randn_like(p)
    n = sum(p.numel() for p in params)
    for kind in ("fused", "compiled"):
        free(args.device)
        name = f"AdamW step alone ({len(params)} tensors, {n / 1e6:,.0f}M parameters, bf16): {kind}"
        try:
            opt_step = make_adamw(params, kind, args.device)
            t0 = time.perf_counter()
            opt_step()  # first step: the states made, the compiled step compiled
            sync(args.device)
            first = time.perf_counter() - t0
            dt = timed(opt_step, args.device, 2, args.steps)
            out.append({"row": name, "ms": dt * 1e3, "gbps": 14 * n / dt / 1e9, "first_step_s": first})
        except Exception as e:
            out.append({"row": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})
        print(json.dumps(out[-1]), file=sys.stderr, flush=True)
    return out


def rows_decode(args, cfg: ModelConfig) -> list[dict]:
    out: list[dict] = []
    m, dtype = build_seeded(args, lambda: DeepSeekV3(cfg))
    m.eval()
    prompt, new = args.decode_prompt, args.decode_new
    for bs in args.decode_batches:
        free(args.device)
        try:
            g = torch.Generator().manual_seed(bs)
            ids = torch.randint(0, cfg.vocab_size, (bs, prompt), generator=g).to(args.device)
            m.generate(ids, max_new_tokens=4, eos_token_id=[])  # warm-up
            sync(args.device)
            t = time.perf_counter()
            res = m.generate(ids, max_new_tokens=new, eos_token_id=[])
            sync(args.device)
            dt = time.perf_counter() - t
            n_new = (res.shape[1] - prompt) * bs
            out.append({"row": f"decode: ours latent cache, batch {bs}", "tokens_per_s": n_new / dt, "s": dt,
                        "cache_bytes_per_token": m.new_cache(1, 1).nbytes_per_token(), "peak_mem_gib": peak_gib(args.device)})
        except Exception as e:
            out.append({"row": f"decode: ours, batch {bs}", "error": f"{type(e).__name__}: {str(e)[:200]}"})
        print(json.dumps(out[-1]), file=sys.stderr, flush=True)
    del m
    if args.decode_hf:
        free(args.device)
        try:
            from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

            with torch.device(args.device):
                hf = DeepseekV3ForCausalLM(DeepseekV3Config.from_dict(cfg.to_dict())).to(dtype).eval()
            bs = args.decode_batches[0]
            ids = torch.randint(0, cfg.vocab_size, (bs, prompt)).to(args.device)
            kw = dict(do_sample=False, eos_token_id=None, pad_token_id=0)
            hf.generate(ids, max_new_tokens=4, min_new_tokens=4, **kw)
            sync(args.device)
            t = time.perf_counter()
            res = hf.generate(ids, max_new_tokens=new, min_new_tokens=new, **kw)
            sync(args.device)
            dt = time.perf_counter() - t
            out.append({"row": f"decode: transformers generate, batch {bs}",
                        "tokens_per_s": (res.shape[1] - prompt) * bs / dt, "s": dt})
            del hf
        except Exception as e:
            out.append({"row": "decode: transformers", "error": f"{type(e).__name__}: {str(e)[:200]}"})
        print(json.dumps(out[-1]), file=sys.stderr, flush=True)
    return out


def fmt(r: dict) -> str:
    if "error" in r:
        return f"| {r['row']} | FAILED: {r['error']} |"
    if "skipped" in r:
        return f"| {r['row']} | skipped: {r['skipped']} |"
    keys = [k for k in ("tokens_per_s", "mfu", "mfu_with_attn", "step_s", "ms", "tflops", "gbps", "peak_mem_gib",
                        "extra_mem_gib",
                        "speedup_vs_reference", "rel_err_out", "rel_err_grad", "rel_err_param_grad", "first_step_s") if r.get(k) is not None]
    def v(k: str) -> str:
        x = r[k]
        if k.startswith("mfu"):
            return f"{k}={100 * x:.1f}%"
        if k.startswith("rel_err"):
            return f"{k}={x:.1e}"
        return f"{k}={x:,.3g}" if x < 1000 else f"{k}={x:,.0f}"
    return f"| {r['row']} | " + ", ".join(v(k) for k in keys) + " |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rows", default="ceilings,hf,eager,compiled,nopad,mtp,fp8,fp8-rowwise,flex,fused,cudnn,flash,"
                    "efficient,best,moe,decode",
                    help="of ceilings, profile, hf, eager, compiled, nopad, full, mtp, fp8, fp8-rowwise, fp8-eager, "
                         "flex, fused, fused-nopad, flex-fused, cudnn, flash, efficient, cudagraphs, autotune, autotune-gemm, "
                         "cdtune, quack, quack-cg, fa4, fa4-quack, fa4-quack-cg, quack-lce-cg, fa4-quack-lce-cg, step-graph, "
                         "quack-step-graph, quack-step-graph-overlap, fa4-quack-lce-step-graph, "
                         "fa4-quack-lce-step-graph-overlap, "
                         "best, moe, attn, loss, adamw, "
                         "decode")
    ap.add_argument("--decode-batches", default="32,256")
    ap.add_argument("--decode-prompt", type=int, default=128)
    ap.add_argument("--decode-new", type=int, default=128)
    ap.add_argument("--decode-hf", action="store_true", help="also time transformers generate (first batch size)")
    ap.add_argument("--out", default=os.environ.get("OUT", "bench_out"))
    ap.add_argument("--profile-compiled", action="store_true", help="profile row: compiled blocks, not eager")
    ap.add_argument("--profile-rows", action="store_true",
                    help="each of our training rows also profiled over 3 more steps: GPU time by kernel kind, top kernels")
    ap.add_argument("--optimizers", default="fused",
                    help="comma-separated: each training row (transformers' included) runs once with each AdamW: "
                         "fused (torch's fused kernel) or compiled (torch's foreach AdamW under torch.compile)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    args.rows = set(args.rows.split(","))
    args.optimizers = args.optimizers.split(",")
    for kind in args.optimizers:
        if kind not in OPTIMIZER_LABEL:
            ap.error(f"--optimizers: unknown {kind!r}; of {', '.join(OPTIMIZER_LABEL)}")
    args.decode_batches = [int(b) for b in args.decode_batches.split(",")]
    torch.backends.cuda.matmul.allow_tf32 = True
    cfg = ModelConfig.preset(args.preset)
    rows: list[dict] = []
    if "ceilings" in args.rows:
        try:
            rows += row_ceilings(args)
        except Exception as e:
            rows.append({"row": "ceilings", "error": str(e)[:200]})
    for kind in args.optimizers:
        args.optimizer = kind
        rows += rows_train(args, cfg)
    if "moe" in args.rows:
        rows += rows_moe(args, cfg)
    if "attn" in args.rows:
        rows += rows_attention(args, cfg)
    if "loss" in args.rows:
        rows += rows_loss(args, cfg)
    if "adamw" in args.rows:
        rows += rows_adamw(args, cfg)
    if "decode" in args.rows:
        rows += rows_decode(args, cfg)
    hf = {r["optimizer"]: r for r in rows if r["row"].startswith("train: transformers") and "tokens_per_s" in r}
    for r in rows:  # against transformers with the same optimizer
        if r.get("optimizer") in hf and r["row"].startswith("train: ours") and "tokens_per_s" in r:
            r["speedup_vs_transformers"] = r["tokens_per_s"] / hf[r["optimizer"]]["tokens_per_s"]
    meta = {"preset": args.preset, "batch": args.batch, "seq": args.seq, "steps": args.steps, "device": args.device,
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    try:
        import transformers

        meta["transformers"] = transformers.__version__
    except ImportError:
        pass
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_gpu.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"\n{meta}\n| row | numbers |\n| --- | --- |")
    for r in rows:
        line = fmt(r)
        if "speedup_vs_transformers" in r:
            line = line[:-2] + f", speedup_vs_transformers={r['speedup_vs_transformers']:.2f}x |"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
