"""Multi-GPU MoE training throughput: tokens/s per GPU at 1, 2, 4... processes with expert parallelism
(experts split over all processes, FSDP2 for the rest), scaling efficiency, and the share of the step time
spent in the dispatch/combine all-to-alls (CUDA events around each exchange, forward and backward).

    python bench/multi_gpu.py --preset small --nproc 1,2,4            # GPUs (NCCL)
    python bench/multi_gpu.py --device cpu --preset tiny --nproc 1,2  # anywhere (gloo), a smoke test

Each process count is one `torchrun --standalone` launch of this file in worker mode; one process runs the
plain model (no EP, no FSDP: the honest single-GPU baseline). A run that does not fit is reported as "oom".
Training steps are real (AdamW, bf16 autocast on GPU, MTP loss, bias update) on random tokens, from a random
initialization built on the meta device and materialized shard by shard (no rank ever holds the full model).
Prints a table; writes JSON to --out (default $OUT/multi_gpu.json, else bench/multi_gpu.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# NVLink SHARP / multicast stay off (the lent machines do not allow it); children inherit these.
NCCL_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
os.environ.update(NCCL_ENV)

# Presets beyond prover.model's: `large` does not fit one H200 for training (~10B parameters: fp32 weights +
# grads + AdamW = 16 B/param = ~160 GB), but does on 2 or more with experts split over them.
EXTRA_PRESETS = {
    "large": dict(base="small", hidden_size=2048, intermediate_size=5632, moe_intermediate_size=1024,
                  n_routed_experts=128, num_experts_per_tok=8, n_group=8, topk_group=4, n_shared_experts=1,
                  num_attention_heads=16, num_key_value_heads=16),
}


def model_config(preset: str):
    from prover.model import ModelConfig

    if preset in EXTRA_PRESETS:
        spec = dict(EXTRA_PRESETS[preset])
        return ModelConfig.preset(spec.pop("base"), **spec)
    return ModelConfig.preset(preset)


# ------------------------------------------------------------------------------------------- worker
def worker(args: argparse.Namespace) -> None:
    import torch
    import torch.distributed as dist

    from prover.model import DeepSeekV3
    from prover.model.balance import update_bias
    from prover.model.checkpoint import materialize_buffers
    from prover.parallel import CommTimer, clip_grad_norm_, parallelize, set_comm_timer

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    cuda = args.device == "cuda"
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(max(1, args.threads))
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    result = {"nproc": world, "ep": world if world > 1 else 1, "preset": args.preset}
    try:
        torch.manual_seed(0)
        cfg = model_config(args.preset)
        with torch.device("meta"):
            model = DeepSeekV3(cfg)
        result["params"] = sum(p.numel() for p in model.parameters())
        if world > 1:
            parallelize(model, ep=world, device=device)  # shards on meta: nothing full is ever allocated
        for router in (m.gate for m in model.moe_layers()):  # Router._apply cannot move a meta bias
            router.e_score_correction_bias = torch.zeros(cfg.n_routed_experts, device=device)
        model.to_empty(device=device)
        torch.manual_seed(0)  # the same seed everywhere: DTensor's RNG tracker expects it
        model.reset_parameters()
        materialize_buffers(model, device)
        model.train()
        timer = CommTimer()
        set_comm_timer(model, timer)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=cuda or None)
        g = torch.Generator().manual_seed(1000 + rank)
        dtype_ctx = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
        step_s, a2a_s = [], []
        for step in range(args.warmup + args.steps):
            ids = torch.randint(2, cfg.vocab_size, (args.micro_batch, args.seq_len), generator=g).to(device)
            sync(device)
            timer.reset()
            t0 = time.perf_counter()
            with dtype_ctx:
                loss = model(ids, labels=ids).loss
            loss.backward()
            clip_grad_norm_(model, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            update_bias(model, 1e-3, process_group=dist.group.WORLD if world > 1 else None)
            sync(device)
            if step >= args.warmup:
                step_s.append(time.perf_counter() - t0)
                a2a_s.append(timer.seconds())
        mean_step = sum(step_s) / len(step_s)
        tokens = args.micro_batch * args.seq_len
        result.update(status="ok", step_s=mean_step, a2a_s=sum(a2a_s) / len(a2a_s),
                      tokens_per_s_per_gpu=tokens / mean_step, tokens_per_step_per_gpu=tokens)
        result["a2a_share"] = result["a2a_s"] / mean_step
        if cuda:
            result["max_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    except torch.OutOfMemoryError:
        result.update(status="oom")
    # every rank's numbers: the slowest rank sets the pace
    rows = [result]
    if world > 1 and dist.is_initialized():
        rows = [None] * world
        dist.all_gather_object(rows, result)
        dist.destroy_process_group()
    if rank == 0:
        Path(args.worker_out).write_text(json.dumps(rows))


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------- driver
def launch(args: argparse.Namespace, nproc: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               __file__, "--worker", "--worker-out", str(out), "--device", args.device, "--preset", args.preset,
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--seq-len", str(args.seq_len),
               "--micro-batch", str(args.micro_batch), "--threads", str(args.threads)]
        env = {**os.environ, **NCCL_ENV, "OMP_NUM_THREADS": str(args.threads)}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
        if proc.returncode != 0 or not out.is_file():
            text = proc.stdout + proc.stderr
            tail = text[text.find("Traceback"):][:3000] if "Traceback" in text else text[-3000:]
            print(f"nproc={nproc}: failed (exit {proc.returncode})\n{tail}", file=sys.stderr)
            return {"nproc": nproc, "status": "failed", "ep": nproc if nproc > 1 else 1, "preset": args.preset}
        rows = json.loads(out.read_text())
    if any(r.get("status") != "ok" for r in rows):
        return {**rows[0], "status": next(r["status"] for r in rows if r.get("status") != "ok")}
    slowest = max(rows, key=lambda r: r["step_s"])
    return {**slowest, "a2a_share_max": max(r["a2a_share"] for r in rows),
            "a2a_share": sum(r["a2a_share"] for r in rows) / len(rows)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--preset", default="small", help="tiny | small | large (see EXTRA_PRESETS) | deepseek-v3")
    p.add_argument("--nproc", default="1,2,4", help="comma-separated process counts (GPUs)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--micro-batch", type=int, default=4, help="sequences per GPU per step")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per process (gloo runs)")
    p.add_argument("--timeout", type=int, default=1200, help="seconds per launch")
    p.add_argument("--out", default=None)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    rows = [launch(args, int(n)) for n in args.nproc.split(",")]
    ok = [r for r in rows if r["status"] == "ok"]
    base = ok[0] if ok else None  # efficiency relative to the smallest count that ran (1 unless it did not fit)
    for r in rows:
        if r["status"] == "ok" and base is not None:
            r["scaling_efficiency"] = r["tokens_per_s_per_gpu"] / base["tokens_per_s_per_gpu"]
            r["baseline_nproc"] = base["nproc"]
    print_table(args, rows)
    out = Path(args.out or (Path(os.environ["OUT"]) / "multi_gpu.json" if os.environ.get("OUT")
                            else Path(__file__).with_suffix(".json")))
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"device": args.device, "preset": args.preset, "seq_len": args.seq_len, "micro_batch": args.micro_batch,
            "steps": args.steps, "warmup": args.warmup, "env": NCCL_ENV, "machine": machine(args.device),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out.write_text(json.dumps({**meta, "results": rows}, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0 if ok else 1


def print_table(args: argparse.Namespace, rows: list[dict]) -> None:
    print(f"preset={args.preset} device={args.device} seq_len={args.seq_len} micro_batch={args.micro_batch}")
    print(f"{'procs':>5} {'EP':>3} {'status':>7} {'tokens/s/GPU':>13} {'step ms':>9} {'scaling':>8} "
          f"{'a2a ms':>8} {'a2a share':>9} {'mem GiB':>8}")
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['nproc']:>5} {r['ep']:>3} {r['status']:>7}")
            continue
        mem = f"{r['max_mem_gib']:.1f}" if "max_mem_gib" in r else "-"
        print(f"{r['nproc']:>5} {r['ep']:>3} {'ok':>7} {r['tokens_per_s_per_gpu']:>13.1f} {1e3 * r['step_s']:>9.1f} "
              f"{r['scaling_efficiency']:>8.2f} {1e3 * r['a2a_s']:>8.1f} {r['a2a_share']:>9.1%} {mem:>8}")


def machine(device: str) -> str:
    import platform

    import torch

    if device == "cuda" and torch.cuda.is_available():
        return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores), torch {torch.__version__}"


if __name__ == "__main__":
    sys.exit(main())
