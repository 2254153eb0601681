"""Where vLLM's close goes (GPU): `VLLMBackend.close()` timed, and what it leaves behind.

    PYTHONPATH=/tmp/site:. VLLM_USE_FLASHINFER_SAMPLER=0 python bench/vllm_close.py [--preset small] [--runs 2]

`AsyncLLM.shutdown()` ends its engine-core process with SIGTERM and then waits for it (a grace period of about
5 s, after which vLLM kills the process tree): bench/e2e_gpu.py measured 4.5-5.0 s for it. For each run this
starts a `VLLMBackend` on a random `--preset` checkpoint, answers one small batch, closes it, and reports the
close's wall time, the engine core's exit code (0 or a negative signal: -15 = it ended on SIGTERM by itself,
-9 = killed at the grace deadline), child processes and /dev/shm entries left after the close, and how long
until the GPU memory was back. Prints a table; writes JSON ($OUT/vllm_close.json or --out).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_gpu import GPU_MEMORY, GpuMemory, build_checkpoint  # noqa: E402
from results import write_result  # noqa: E402


def children(pid: int) -> set[int]:
    """Every descendant of `pid`, from /proc."""
    parent_of: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parent_of[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out, frontier = set(), {pid}
    while frontier:
        frontier = {c for c, p in parent_of.items() if p in frontier} - out
        out |= frontier
    return out


def shm() -> set[str]:
    try:
        return set(os.listdir("/dev/shm"))
    except OSError:
        return set()


def engine_processes(backend: Any) -> list[Any]:
    """The engine-core `multiprocessing` processes behind an AsyncLLM (names differ across vLLM releases)."""
    client = getattr(backend.engine, "engine_core", None)
    manager = getattr(getattr(client, "resources", None), "engine_manager", None)
    return list(getattr(manager, "processes", None) or [])


def one_run(checkpoint: Path, args: argparse.Namespace) -> dict[str, Any]:
    from prover.generate.base import SamplingParams
    from prover.generate.vllm_engine import VLLMBackend

    shm_before = shm()
    backend = VLLMBackend(checkpoint, dtype="bfloat16", gpu_memory_utilization=args.gpu_memory_utilization)
    procs = engine_processes(backend)
    backend.generate(["theorem t : 1 = 1 := by"] * 8, SamplingParams(max_tokens=32, seed=0))
    kids = children(os.getpid())
    t0 = time.perf_counter()
    backend.close()
    close_s = time.perf_counter() - t0
    left = children(os.getpid()) & kids
    t1 = time.perf_counter()
    GPU_MEMORY.wait_until_free(timeout_s=60)
    return {"close_s": round(close_s, 2), "engine_core_exitcodes": [p.exitcode for p in procs],
            "children_before_close": len(kids), "children_left": sorted(left),
            "shm_left": sorted(shm() - shm_before), "gpu_free_after_close_s": round(time.perf_counter() - t1, 1),
            "gpu_used_mib_after": GpuMemory.used_mib()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "vllm_close.json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vllm-close-") as tmp:
        checkpoint, _ = build_checkpoint(args.preset, Path(tmp) / "ckpt", "cuda", 0)
        rows = [one_run(checkpoint, args) for _ in range(args.runs)]
    print("| run | close s | engine core exit codes | children left | /dev/shm left | GPU free after s |")
    print("|---:|---:|---|---|---|---:|")
    for i, r in enumerate(rows):
        print(f"| {i} | {r['close_s']} | {r['engine_core_exitcodes']} | {r['children_left'] or '-'} "
              f"| {r['shm_left'] or '-'} | {r['gpu_free_after_close_s']} |")
    return write_result("vllm_close", vars(args), rows, args.out)


if __name__ == "__main__":
    main()
