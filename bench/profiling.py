"""Where a step's time goes: torch.profiler over a few steps, GPU time by kernel kind, the top kernels and host ops
(bench/train_gpu.py's `--profile`, bench/model_gpu.py's `--profile-rows`, bench/fp8_libs_gpu.py's cells)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import torch

KERNEL_KINDS = (  # first match wins: where a step's GPU time goes, by kernel name
    ("attention", ("fmha", "flash", "cudnn", "attention", "sdpa")),
    # CUTLASS's grouped GEMMs (torch._grouped_mm, FP8 too); QuACK's, which only the MoE's `quack` path runs
    ("grouped GEMM", ("grouped", "groupproblemshape", "quack")),
    ("dense GEMM", ("gemm", "nvjet", "cutlass", "xmma", "cublas", "matmul", "triton_tem_")),  # tem: inductor's GEMM templates
    ("fused (inductor / triton)", ("triton",)),
)


def kernel_kind(name: str) -> str:
    low = name.lower()
    return next((kind for kind, marks in KERNEL_KINDS if any(m in low for m in marks)), "other")


def profile_steps(name: str, step: Callable[[], object], device: torch.device, n: int = 3) -> dict:
    """torch.profiler over `n` steps: wall and GPU-busy time per step, host syncs per step, GPU time by kernel kind,
    the top kernels, and the ops that launched GPU work themselves, with their input shapes (`top_ops`: eager ops;
    kernels inside CUDA graphs are the graph launch's)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    sync()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
        t = time.perf_counter()
        for _ in range(n):
            step()
        sync()
        wall = (time.perf_counter() - t) / n
    events = prof.key_averages()
    kernels = sorted((e for e in events if e.device_type == DeviceType.CUDA), key=lambda e: -e.self_device_time_total)
    syncs = sum(e.count for e in events if "Synchronize" in e.key or e.key in ("cudaMemcpy", "aten::item")) / n
    # Ranges, not kernels (they would count their kernels twice): the optimizer's, and inductor's "## Call
    # CompiledFxGraph ... ##" around each compiled graph (on the GPU's timeline once shapes are recorded)
    kernels = [e for e in kernels if not e.key.startswith(("Optimizer.", "## "))]
    busy = sum(e.self_device_time_total for e in kernels) / n / 1e3
    top = [{"kernel": e.key[:90], "ms_per_step": e.self_device_time_total / n / 1e3, "calls_per_step": e.count / n}
           for e in kernels[:20]]
    by_kind: dict[str, float] = {}
    for e in kernels:
        by_kind[kernel_kind(e.key)] = by_kind.get(kernel_kind(e.key), 0.0) + e.self_device_time_total / n / 1e3
    host_ops = sorted((e for e in events if e.device_type == DeviceType.CPU), key=lambda e: -e.self_cpu_time_total)
    top_host = [{"op": e.key[:90], "ms_per_step": e.self_cpu_time_total / n / 1e3, "calls_per_step": e.count / n}
                for e in host_ops[:25]]
    launchers = sorted((e for e in prof.key_averages(group_by_input_shape=True)
                        if e.device_type == DeviceType.CPU and e.self_device_time_total > 0),
                       key=lambda e: -e.self_device_time_total)
    top_ops = [{"op": e.key[:60], "shapes": str(e.input_shapes)[:120], "ms_per_step": e.self_device_time_total / n / 1e3,
                "calls_per_step": e.count / n} for e in launchers[:15]]
    print(f"--- profile: {name}: wall {wall * 1e3:.1f} ms/step, GPU busy {busy:.1f} ms ({busy / wall / 1e3:.0%}), "
          f"{syncs:.0f} host syncs/step", file=sys.stderr)
    kinds = sorted(by_kind.items(), key=lambda kv: -kv[1])
    print("  GPU time by kind: " + ", ".join(f"{k} {v:.1f} ms" for k, v in kinds), file=sys.stderr)
    for k in top:
        print(f"  {k['ms_per_step']:8.2f} ms {k['calls_per_step']:6.0f}x  {k['kernel']}", file=sys.stderr)
    print("  ops launching GPU work (self GPU time, input shapes):", file=sys.stderr)
    for k in top_ops:
        print(f"  {k['ms_per_step']:8.2f} ms {k['calls_per_step']:6.0f}x  {k['op']} {k['shapes']}", file=sys.stderr)
    print("  host (self CPU time):", file=sys.stderr)
    for k in top_host:
        print(f"  {k['ms_per_step']:8.2f} ms {k['calls_per_step']:6.0f}x  {k['op']}", file=sys.stderr)
    return {"wall_ms": wall * 1e3, "gpu_busy_ms": busy, "syncs_per_step": syncs, "by_kind_ms": by_kind, "top": top,
            "top_ops": top_ops, "top_host": top_host}
