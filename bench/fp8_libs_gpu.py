"""GPU benchmark: which FP8 library runs this model's GEMMs faster on the H200, torchao or Transformer Engine
(issue 21 item 1 asks for whichever is faster).

    PYTHONPATH=/tmp/site:. python bench/fp8_libs_gpu.py --preset medium    # torchao and TE carried (bench/carry.py)
    PYTHONPATH=. python bench/fp8_libs_gpu.py --preset tiny --device cpu --iters 1   # smoke test: bf16 rows only

For a preset, every distinct dense linear shape that `prover.model.fp8` converts (with how many of it a training
step runs) and the routed experts' two grouped GEMMs at the step's token count, forward + backward, in:
- `bf16`: nn.Linear / torch._grouped_mm, the yardstick;
- `torchao-blockwise`: DeepSeek-V3's 1x128 / 128x128 scaling, the trainer's own row-padded linear, compiled as the
  trainer compiles it; `torchao-rowwise`: torchao's Float8Linear, compiled; experts: torchao's rowwise grouped GEMM
  (what `--fp8` runs);
- `te-blockwise`: Transformer Engine's te.Linear / te.GroupedLinear under `te.autocast` with `Float8BlockScaling`
  (the same 1x128 / 128x128 tiles); `te-current`: with `Float8CurrentScaling` (one scale per tensor).
Each cell: ms per forward + backward (wall, mean after warm-up, the first call's compile and autotuning excluded),
on a GPU also its GPU busy time from torch.profiler (`gpu_ms`: what the op costs inside a step whose host work runs
ahead of the GPU, where wall time alone charges a small shape its launch overhead), and the relative error of the
output and the input gradient against fp32. Each TE call enters its own `te.autocast` (a model enters one a step):
a little more host time per call, which shows only where a shape is host-bound. The "per step" rows sum each
library's shapes weighted by their count, by wall and by GPU time. Every cell catches its own failure and the run
goes on. Prints a table; writes JSON to $OUT/fp8_libs_gpu.json (or --out).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.model_gpu import sync, timed  # noqa: E402
from bench.profiling import profile_steps  # noqa: E402
from prover.errors import ProverError  # noqa: E402
from prover.model import DeepSeekV3, ModelConfig  # noqa: E402
from prover.model.fp8 import check_fp8, fp8_plan  # noqa: E402

LINEAR_LIBS = ("bf16", "torchao-blockwise", "torchao-rowwise", "te-blockwise", "te-current")
GROUPED_LIBS = ("bf16", "torchao-rowwise", "te-blockwise", "te-current")


def linear_shapes(cfg: ModelConfig) -> collections.Counter:
    """(in, out) -> how many linears of that shape a step runs: those the FP8 plan converts (MTP included)."""
    with torch.device("meta"):
        model = DeepSeekV3(cfg)
    plan = fp8_plan(model, "blockwise")
    return collections.Counter((model.get_submodule(n).in_features, model.get_submodule(n).out_features)
                               for n, how in plan.convert.items() if how.endswith("linear"))


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.float() - want.float()).norm() / want.float().norm())


def te_recipe(lib: str):
    """Transformer Engine and the recipe a `te-*` library name asks for; one ProverError where TE cannot run."""
    try:
        import transformer_engine.pytorch as te
        from transformer_engine.common import recipe
    except Exception as e:  # ImportError, or TE's own check of its compiled extension
        raise ProverError(f"Transformer Engine is not importable here ({type(e).__name__}: {str(e)[:120]})") from e
    if lib == "te-blockwise":
        ok, why = te.is_fp8_block_scaling_available(return_reason=True)
        if not ok:
            raise ProverError(f"TE's FP8 block scaling cannot run here: {why}")
        return te, recipe.Float8BlockScaling()
    ok, why = te.is_fp8_available(return_reason=True)
    if not ok:
        raise ProverError(f"TE's FP8 cannot run here: {why}")
    return te, recipe.Float8CurrentScaling()


def make_linear(lib: str, weight: torch.Tensor, device: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A forward for `lib` with this bf16 weight [out, in], trained (its gradient computed) like the model's."""
    out_f, in_f = weight.shape
    if lib == "bf16":  # a weight that takes a gradient, as the FP8 modules' do: three GEMMs each way
        w = weight.detach().clone().requires_grad_(True)
        return lambda x: F.linear(x, w)
    if lib.startswith("torchao"):
        from prover.model.fp8 import (
            narrow_torchao_autotuning,
            row_padded_blockwise_linear,
            row_padded_float8_linear,
        )

        check_fp8(torch.device(device), lib.split("-")[1])
        lin = nn.Linear(in_f, out_f, bias=False, device=device, dtype=torch.bfloat16)
        lin.weight = nn.Parameter(weight)
        if lib == "torchao-blockwise":
            mod = row_padded_blockwise_linear().from_float(lin)
        else:
            from torchao.float8 import Float8LinearConfig

            mod = row_padded_float8_linear().from_float(lin, config=Float8LinearConfig.from_recipe_name("rowwise"))
        narrow_torchao_autotuning()
        return torch.compile(mod, dynamic=False)
    te, rec = te_recipe(lib)
    mod = te.Linear(in_f, out_f, bias=False, params_dtype=torch.bfloat16, device=device)
    with torch.no_grad():
        mod.weight.copy_(weight)

    def fwd(x: torch.Tensor) -> torch.Tensor:
        with te.autocast(enabled=True, recipe=rec):
            return mod(x)
    return fwd


def make_grouped(lib: str, w: torch.Tensor, splits: list[int], device: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A forward for `lib` over expert-sorted rows, expert e's weight w[e] [out, in], `splits` rows each."""
    E, out_f, in_f = w.shape
    offs = torch.tensor(splits, device=device).cumsum(0).to(torch.int32)
    w = w.detach().clone().requires_grad_(True)  # the weight gradient's GEMM is timed too
    if lib == "bf16":
        return lambda x: torch._grouped_mm(x, w.transpose(-2, -1), offs=offs)
    if lib == "torchao-rowwise":
        from prover.model.fp8 import fp8_grouped_mm

        check_fp8(torch.device(device), "rowwise")
        return lambda x: fp8_grouped_mm(x, w.transpose(-2, -1), offs)
    te, rec = te_recipe(lib)
    mod = te.GroupedLinear(E, in_f, out_f, bias=False, params_dtype=torch.bfloat16, device=device)
    with torch.no_grad():
        for e in range(E):
            getattr(mod, f"weight{e}").copy_(w[e])

    def fwd(x: torch.Tensor) -> torch.Tensor:
        with te.autocast(enabled=True, recipe=rec):
            return mod(x, splits)
    return fwd


def cell(fwd_of: Callable[[], Callable[[torch.Tensor], torch.Tensor]], x0: torch.Tensor, g: torch.Tensor,
         ref: tuple[torch.Tensor, torch.Tensor], args) -> dict:
    """Time forward + backward of one library's op; its error against the fp32 reference (output, input grad)."""
    try:
        fwd = fwd_of()
        x = x0.detach().clone().requires_grad_(True)

        def step() -> torch.Tensor:
            out = fwd(x)
            out.backward(g)
            return out

        t = time.perf_counter()
        out = step()  # compile, autotuning
        sync(args.device)
        first = time.perf_counter() - t
        err = {"rel_err_out": rel_err(out.detach(), ref[0]), "rel_err_grad": rel_err(x.grad, ref[1])}
        result = {"ms": timed(step, args.device, args.warmup, args.iters) * 1e3, "first_s": first, **err}
        if args.device.startswith("cuda"):
            prof = profile_steps("cell", step, torch.device(args.device), n=args.iters)
            result |= {"gpu_ms": prof["gpu_busy_ms"], "gpu_by_kind_ms": prof["by_kind_ms"]}
        return result
    except ProverError as e:
        return {"skipped": str(e)}
    except Exception as e:  # a library that fails on a shape: recorded, the run goes on
        if args.verbose:
            traceback.print_exc()
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}


def rows_linear(cfg: ModelConfig, args) -> list[dict]:
    rows = []
    M = args.batch * args.seq
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    for (in_f, out_f), count in sorted(linear_shapes(cfg).items()):
        g = torch.Generator(device=args.device).manual_seed(in_f * 7 + out_f)
        weight = (torch.randn(out_f, in_f, device=args.device, generator=g) * in_f ** -0.5).to(dtype)
        x0 = torch.randn(M, in_f, device=args.device, generator=g).to(dtype)
        grad = torch.randn(M, out_f, device=args.device, generator=g).to(dtype)
        xr = x0.detach().float().clone().requires_grad_(True)
        out_ref = F.linear(xr, weight.float())
        out_ref.backward(grad.float())
        ref = (out_ref.detach(), xr.grad)
        row = {"row": f"linear {in_f} -> {out_f}", "tokens": M, "count": count, "libs": {}}
        for lib in args.libs:
            if lib in LINEAR_LIBS:
                row["libs"][lib] = cell(lambda lib=lib, weight=weight: make_linear(lib, weight, args.device), x0, grad,
                                        ref, args)
                print(json.dumps({"row": row["row"], lib: row["libs"][lib]}), file=sys.stderr, flush=True)
        rows.append(row)
        torch._dynamo.reset()  # each shape's compiled modules go; the autotuned kernels stay cached
    return rows


def rows_grouped(cfg: ModelConfig, args) -> list[dict]:
    E, k, H, inter = cfg.n_routed_experts, cfg.num_experts_per_tok, cfg.hidden_size, cfg.moe_intermediate_size
    n_moe = cfg.num_hidden_layers - cfg.first_k_dense_replace + cfg.num_nextn_predict_layers
    rows_total = args.batch * args.seq * k
    splits = [rows_total // E + (e < rows_total % E) for e in range(E)]  # balanced, as the routing bias aims for
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    out = []
    for name, in_f, out_f in (("experts gate/up", H, 2 * inter), ("experts down", inter, H)):
        g = torch.Generator(device=args.device).manual_seed(in_f + out_f)
        w = (torch.randn(E, out_f, in_f, device=args.device, generator=g) * in_f ** -0.5).to(dtype)
        x0 = torch.randn(rows_total, in_f, device=args.device, generator=g).to(dtype)
        grad = torch.randn(rows_total, out_f, device=args.device, generator=g).to(dtype)
        xr = x0.detach().float().clone().requires_grad_(True)
        parts = torch.split(xr, splits)
        out_ref = torch.cat([p @ w[e].float().t() for e, p in enumerate(parts)])
        out_ref.backward(grad.float())
        ref = (out_ref.detach(), xr.grad)
        row = {"row": f"{name} {E} x {in_f} -> {out_f}", "tokens": rows_total, "count": n_moe, "libs": {}}
        for lib in args.libs:
            if lib in GROUPED_LIBS:
                row["libs"][lib] = cell(lambda lib=lib, w=w: make_grouped(lib, w, splits, args.device), x0, grad, ref,
                                        args)
                print(json.dumps({"row": row["row"], lib: row["libs"][lib]}), file=sys.stderr, flush=True)
        out.append(row)
    return out


def per_step(rows: list[dict], libs: list[str], label: str, key: str = "ms") -> dict:
    """Each library's `key` (ms or gpu_ms) for the rows' shapes weighted by their count; None where any shape has
    none."""
    total = {}
    for lib in libs:
        cells = [(r["count"], r["libs"].get(lib, {}).get(key)) for r in rows]
        total[lib] = None if not cells or any(ms is None for _, ms in cells) else sum(c * ms for c, ms in cells)
    return {"row": f"per step: {label}" + (", GPU busy" if key == "gpu_ms" else ""), "ms": total}


def fmt_table(rows: list[dict], totals: list[dict], libs: list[str]) -> str:
    head = "| shape | x | " + " | ".join(libs) + " |\n|---|---:|" + "---:|" * len(libs)
    lines = [head]
    for r in rows:
        key = "gpu_ms" if "gpu_ms" in r["libs"].get("bf16", {}) else "ms"  # speed-ups by GPU time where measured
        base = r["libs"].get("bf16", {}).get(key)
        cells = []
        for lib in libs:
            c = r["libs"].get(lib, {})
            if "ms" in c:
                speed = f" ({base / c[key]:.2f}x)" if base and lib != "bf16" and key in c else ""
                gpu = f" (GPU {c['gpu_ms']:.3f})" if "gpu_ms" in c else ""
                cells.append(f"{c['ms']:.3f} ms{gpu}{speed}, err {c['rel_err_out']:.1e}")
            else:
                cells.append(("skipped: " + c["skipped"][:40]) if "skipped" in c else
                             ("FAILED: " + c["error"][:60]) if "error" in c else "")
        lines.append(f"| {r['row']} | {r['count']} | " + " | ".join(cells) + " |")
    for t in totals:
        base = t["ms"].get("bf16")
        cells = [("" if t["ms"].get(lib) is None else
                  f"**{t['ms'][lib]:.1f} ms**" + (f" ({base / t['ms'][lib]:.2f}x)" if base and lib != "bf16" else ""))
                 for lib in libs]
        lines.append(f"| {t['row']} | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=None, help="sequences per step (default: 8 small, 4 medium, 2 else)")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--libs", default=",".join(LINEAR_LIBS), help=f"of {', '.join(LINEAR_LIBS)}")
    ap.add_argument("--no-grouped", action="store_true", help="dense linears only")
    ap.add_argument("--out", default=os.environ.get("OUT", "bench_out"))
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    args.libs = args.libs.split(",")
    unknown = set(args.libs) - set(LINEAR_LIBS)
    if unknown:
        ap.error(f"unknown --libs {sorted(unknown)} (of {', '.join(LINEAR_LIBS)})")
    args.batch = args.batch or {"small": 8, "medium": 4}.get(args.preset, 2)
    cfg = ModelConfig.preset(args.preset)
    linear = rows_linear(cfg, args)
    grouped = [] if args.no_grouped else rows_grouped(cfg, args)
    keys = ("ms", "gpu_ms") if args.device.startswith("cuda") else ("ms",)
    totals = [per_step(linear, args.libs, "dense linears", k) for k in keys]
    if grouped:
        totals += [per_step(grouped, args.libs, "routed experts", k) for k in keys]
    meta = {"preset": args.preset, "batch": args.batch, "seq": args.seq, "iters": args.iters, "device": args.device,
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    for name in ("torchao", "transformer_engine"):
        try:
            meta[name] = __import__(name).__version__
        except Exception:  # absent, or TE without its compiled extension
            meta[name] = None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fp8_libs_gpu.json").write_text(json.dumps({"meta": meta, "rows": linear + grouped, "per_step": totals},
                                                      indent=2))
    print(f"\n{meta}\n{fmt_table(linear + grouped, totals, args.libs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
