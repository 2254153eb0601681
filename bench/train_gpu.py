"""Training throughput of `prover.train`: the SFT trainer's step in bf16 and FP8 against the model's own step, an
FP8-vs-bf16 loss comparison, and one GRPO iteration split into phases.

    PYTHONPATH=. python bench/train_gpu.py                                  # H200: small + medium, ~8 min
    PYTHONPATH=. python bench/train_gpu.py --presets tiny --device cpu --batch 2 --seq 64 --steps 2 \
        --loss-steps 4 --grpo-problems 2 --group-size 2 --new-tokens 8     # CPU smoke test (FP8 rows skipped)

SFT rows, per preset (`--presets`), on random token sequences of `--seq` tokens (the first quarter a masked
prompt), `--batch` sequences per step, random-weight DeepSeek-V3, compiled blocks on CUDA (`--no-compile`: eager):
- `model`: the yardstick, bench/model_gpu.py's row (bf16 parameters, fused AdamW on them, loss + backward + step,
  bias update), with the same MTP weight as the trainer (`--mtp-weight`);
- `bf16`: the trainer's own step (`prover.train.sft`: prepare_model, make_optimizer, _train_step: masked token
  loss + MTP, grad clipping, fp32 master weights and moments, cosine schedule, bias update); `vs_model` = its
  tokens/s over the `model` row's;
- `bf16-fused`, `bf16-m16`, `bf16-pt` (ask for them in `--sft-rows`): the trainer's step with torch's fused AdamW
  on fp32 copies of the gradients (the update before the compiled one), with the compiled update on bf16 moments,
  or with the update compiled once for every size and called per tensor (a shorter first step; more host work);
- `fp8`: the same with `--fp8` (`--fp8-recipe`); `fp8-dense`: FP8 dense linears, the routed experts' grouped
  GEMM in bf16 (`SFTConfig.fp8_experts=False`); both skipped with a reason where FP8 cannot run;
- `quack`: the trainer's bf16 step with the routed experts on QuACK's fused kernels (`--moe-impl quack`,
  `prover.model.moe_quack`); skipped with the reason where they cannot run; `fa4-quack`: the same with attention
  on FlashAttention-4's kernels too (`--attention fa4`, `prover.model.attention_fa4`); `fa4-quack-lce`: and the
  head and loss fused on QuACK's linear cross-entropy (`--loss-impl quack`, `prover.model.loss_quack`).
`model-quack`, `model-fa4-quack`, `model-fa4-quack-lce`: the model row on the same kernels as the trainer row of that
name, which is then measured against it. `--step-graph` captures every step as one CUDA graph: the SFT rows as
`subgoal train sft --cuda-graph` runs them (`prover.train.step_graph`), the model rows as bench/model_gpu.py's
`*-step-graph` rows (`bench.step_graph`).
Each SFT row also gives the host's time per step: queueing the step (of it the optimizer's) and waiting for the
previous step's metrics. `--profile` adds, for the first preset, torch.profiler over 3 steps: GPU-busy time,
host syncs and the top kernels and host ops per step.
MFU = 6 x active parameters (input embedding and MTP excluded) x tokens/s over the bf16 dense peak (989 TFLOP/s on
H100/H200; FP8 rows too, so MFU compares time), `mfu_with_attn` adds causal attention; peak memory per row.

Loss comparison (`--loss-steps`, on the first preset): bf16 and FP8 trainers from the same initialization on the
same learnable data (a chain over `--loss-states` tokens, each followed by one of 4 fixed successors: the loss floor
is ln 4), the loss every 10 steps and the relative gap of the last 10 steps' mean.

GRPO (first preset; `--no-grpo` skips): one iteration on `--grpo-problems` x `--group-size` samples: generation
(latent-cache `generate`), scoring (old log-probabilities), verification, update (log-probs with grad, clipped
surrogate + k3 KL, backward, AdamW, bias update). Verification is NOT real Lean: `--verify fake` checks each
sample's candidate proof with the FAKE Lean REPL of tests/fakes/fake_lean.py (a lower bound on Lean's time), `--verify
none` skips it. Rewards are random bits (random weights prove nothing), so the update does real work.

Every row catches its own failure (OOM included) and the run goes on. Prints a table; writes JSON to
$OUT/train_gpu.json (or --out).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.model_gpu import peak_flops, train_flops_per_token, train_row  # noqa: E402
from bench.profiling import profile_steps  # noqa: E402
from prover.errors import ProverError  # noqa: E402
from prover.model import DeepSeekV3, ModelConfig  # noqa: E402
from prover.model.balance import update_bias  # noqa: E402
from prover.train.common import moe_after_step, read_metrics  # noqa: E402
from prover.train.distributed import DistEnv  # noqa: E402
from prover.train.grpo import completion_logprobs, group_advantages, grpo_token_loss  # noqa: E402
from prover.train.optim import MasterWeightAdamW  # noqa: E402
from prover.train.sft import (  # noqa: E402
    IGNORE,
    SFTConfig,
    _train_step,
    check_kernels,
    make_optimizer,
    make_scheduler,
    prepare_model,
    set_kernels,
    step_function,
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def free(device: torch.device) -> None:
    gc.collect()
    torch._dynamo.reset()  # compiled graphs of the previous row (other dtype, FP8 or not) go too
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def train_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def sft_config(args, device: torch.device, fp8: bool, lr: float | None = None,
               fp8_experts: bool = True, kernels: dict | None = None) -> SFTConfig:
    """`kernels`: SFTConfig's kernel choices (moe_impl, attention, loss_impl) other than the defaults."""
    return SFTConfig(model="", data="", out="", micro_batch_size=args.batch, max_length=args.seq, device=str(device),
                     cuda_graph=args.step_graph and not fp8,
                     compile=args.compile if device.type == "cuda" else False, fp8=fp8, fp8_recipe=args.fp8_recipe,
                     fp8_experts=fp8_experts, **(kernels or {}), **({} if lr is None else {"lr": lr}))


SETS = 8  # --seq-min: the sets of examples the steps cycle through


def random_examples(cfg: ModelConfig, n: int, seq: int, seed: int = 0,
                    lengths: tuple[int, int] | None = None) -> list[dict[str, list[int]]]:
    """`n` random token rows of `seq` tokens, or of lengths uniform in `lengths` (inclusive), the first quarter of
    each a masked prompt."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = lengths or (seq, seq)
    out = []
    for _ in range(n):
        length = lo if lo == hi else int(torch.randint(lo, hi + 1, (), generator=g))
        ids = torch.randint(2, cfg.vocab_size, (length,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE] * (length // 4) + ids[length // 4:]})
    return out


def markov_examples(cfg: ModelConfig, n: int, seq: int, seed: int = 0, states: int = 256) -> list[dict[str, list[int]]]:
    """Learnable data: a chain over `states` tokens, each followed by one of 4 fixed successors, uniformly (loss
    floor ln 4). A small chain can be learnt within the curve's 200 steps, so the curves compare FP8 and bf16 near
    convergence, not only on the way down."""
    states = min(states, cfg.vocab_size - 2)
    g = torch.Generator().manual_seed(seed)
    succ = torch.randint(2, 2 + states, (2 + states, 4), generator=g).tolist()
    out = []
    for _ in range(n):
        ids = [int(torch.randint(2, 2 + states, (1,), generator=g))]
        picks = torch.randint(0, 4, (seq,), generator=g).tolist()
        for k in picks[1:]:
            ids.append(succ[ids[-1]][k])
        out.append({"input_ids": ids, "labels": [IGNORE] * (seq // 4) + ids[seq // 4:]})
    return out


OPTIMIZERS = {  # SFT row variants: the trainer's step with another optimizer (None: the trainer's own)
    "bf16": None,
    "bf16-fused": dict(fused=True),  # before: torch's fused kernel on fp32 copies of the gradients
    "bf16-m16": dict(fused=True, compiled=True, moment_dtype=torch.bfloat16),  # DeepSeek-V3's bf16 moments
    "bf16-pt": dict(fused=True, compiled=True, per_tensor=True),  # the update compiled once, called per tensor
}


KERNELS = {  # SFT row variants: the trainer's bf16 step on other kernels (SFTConfig's choices)
    "quack": ("QuACK MoE kernels", {"moe_impl": "quack"}),
    "fa4-quack": ("FlashAttention-4 + QuACK MoE kernels", {"moe_impl": "quack", "attention": "fa4"}),
    "fa4-quack-lce": ("FlashAttention-4 + QuACK MoE kernels and linear cross-entropy",
                      {"moe_impl": "quack", "attention": "fa4", "loss_impl": "quack"}),
}


def trainer(cfg: ModelConfig, args, device: torch.device, fp8: bool, optimizer: dict | None = None,
            lr: float | None = None, fp8_experts: bool = True, kernels: dict | None = None):
    """The SFT trainer's model and optimizer exactly as `train_sft` makes them (random weights, seed 0);
    `optimizer`: MasterWeightAdamW's settings instead of `make_optimizer`'s; `lr`: instead of SFTConfig's."""
    scfg = sft_config(args, device, fp8, lr, fp8_experts, kernels)
    check_kernels(scfg, DistEnv(device=device))  # the trainer's own check (train_sft makes it before loading)
    if fp8:
        from prover.model.fp8 import check_fp8

        check_fp8(device, args.fp8_recipe)
    torch.manual_seed(0)
    with torch.device(device):
        model = DeepSeekV3(cfg).to(train_dtype(device))
    env = DistEnv(device=device)
    model = prepare_model(model, scfg, env)
    opt = (make_optimizer(model, scfg, env) if optimizer is None else
           MasterWeightAdamW(model.parameters(), lr=scfg.lr, weight_decay=scfg.weight_decay, betas=(0.9, 0.95),
                             **optimizer))
    return model, opt, make_scheduler(opt, "cosine", 0, 1000, 0.1), scfg, env


def sft_step_row(name: str, cfg: ModelConfig, args, device: torch.device, fp8: bool,
                 optimizer: dict | None = None, fp8_experts: bool = True, kernels: dict | None = None) -> dict:
    model, opt, sched, scfg, env = trainer(cfg, args, device, fp8, optimizer, fp8_experts=fp8_experts,
                                           kernels=kernels)
    if args.cudagraphs:  # the compiled blocks and loss again, as CUDA graphs: one replay per block, little host work
        model.compile_blocks(mode="reduce-overhead")
    # --seq-min: lengths drawn from [seq_min, seq], a new set of examples each step (of SETS), so steps vary in shape
    sets = SETS if args.seq_min < args.seq else 1
    examples = random_examples(cfg, args.batch * sets, args.seq, lengths=(args.seq_min, args.seq))
    tok = SimpleNamespace(pad_token_id=0)
    done = [0]  # steps run
    real = {"tokens": 0}  # the timed steps' real (unpadded) tokens
    train_step = step_function(scfg)  # `_train_step`, or the CUDA-graphed step (`--step-graph`)

    host = {"queue_s": 0.0, "wait_s": 0.0, "optimizer_s": 0.0}  # the host's time: queueing steps (of it the
    # optimizer's), waiting for their metrics
    step_of = opt.step

    def timed_step(*a, **k):
        t = time.perf_counter()
        out = step_of(*a, **k)
        host["optimizer_s"] += time.perf_counter() - t
        return out

    opt.step = timed_step

    def steps(n: int) -> dict:
        """As `train_sft`'s loop runs them: each step's metrics read once the next one is queued."""
        pending = None
        for _ in range(n):
            t = time.perf_counter()
            if args.cudagraphs:
                torch.compiler.cudagraph_mark_step_begin()
            k = done[0] % sets
            metrics = train_step(model, opt, sched, [list(range(k * args.batch, (k + 1) * args.batch))], examples,
                                 tok, scfg, env)
            done[0] += 1
            t1 = time.perf_counter()
            if pending is not None:
                real["tokens"] += read_metrics(pending)["step_tokens"]
            host["queue_s"] += t1 - t
            host["wait_s"] += time.perf_counter() - t1
            pending = metrics
        last = read_metrics(pending) if pending is not None else {}
        real["tokens"] += last.get("step_tokens", 0)
        return last

    t0 = time.perf_counter()
    steps(1)  # compilation, optimizer state
    first = time.perf_counter() - t0
    steps(args.warmup)
    sync(device)
    host.update(queue_s=0.0, wait_s=0.0, optimizer_s=0.0)
    real["tokens"] = 0
    t = time.perf_counter()
    metrics = steps(args.steps)
    sync(device)
    dt = (time.perf_counter() - t) / args.steps
    row = {"row": name, **throughput(cfg, model, args, device, dt, real["tokens"] / args.steps),
           "first_step_s": first, "loss": metrics["loss"],
           "host_queue_ms": host["queue_s"] / args.steps * 1e3, "host_wait_ms": host["wait_s"] / args.steps * 1e3,
           "host_optimizer_ms": host["optimizer_s"] / args.steps * 1e3}
    if args.profile_now:
        row["profile"] = profile_steps(name, lambda: steps(1), device)
    return row


def throughput(cfg: ModelConfig, model: DeepSeekV3, args, device: torch.device, dt: float,
               tokens: float | None = None) -> dict:
    """tokens/s and MFU of a step of `dt` s over `tokens` real tokens (default: a full batch; with attention only
    then: the FLOPs of attention over varied lengths are not one per-token figure)."""
    full = tokens is None or tokens == args.batch * args.seq
    tokens = args.batch * args.seq if tokens is None else tokens
    f_params, f_attn = train_flops_per_token(cfg, model, args.seq)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(str(device))
    r = {"step_s": dt, "tokens_per_s": tokens / dt}
    if peak:
        r["mfu"] = f_params * tokens / dt / peak
        if full:
            r["mfu_with_attn"] = f_attn * tokens / dt / peak
    if device.type == "cuda":
        r["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return r


def model_row(name: str, cfg: ModelConfig, args, device: torch.device, kernels: dict | None = None) -> dict:
    """bench/model_gpu.py's row on the same model and batch: the speed the trainer is measured against; `kernels`
    as the trainer sets them (`set_kernels`); with `--step-graph` the step captured as one CUDA graph."""
    torch.manual_seed(0)
    with torch.device(device):
        m = DeepSeekV3(cfg).to(train_dtype(device))
    m.train()
    if kernels:
        scfg = sft_config(args, device, False, kernels=kernels)
        check_kernels(scfg, DistEnv(device=device))
        set_kernels(m, scfg)
    if args.compile and device.type == "cuda":
        m.compile_blocks(dynamic=False)
    margs = SimpleNamespace(batch=args.batch, seq=args.seq, device=str(device), warmup=args.warmup, steps=args.steps,
                            optimizer="fused")
    prof = (lambda step: profile_steps(name, step, device)) if args.profile_now else None
    r = train_row(name, m, lambda ids: m(ids, labels=ids).loss, cfg, m, margs, after_step=lambda: update_bias(m, 1e-3),
                  profile=prof, whole_graph=args.step_graph)
    r.pop("peak_mem_gib", None)
    return {**r, **throughput(cfg, m, args, device, r["step_s"])}


def loss_comparison(preset: str, cfg: ModelConfig, args, device: torch.device) -> list[dict]:
    """bf16 and FP8 trainers, same initialization, same batches (constant lr): loss curves and the final gap."""
    examples = markov_examples(cfg, args.loss_batch * args.loss_steps, args.loss_seq, seed=1, states=args.loss_states)
    tok = SimpleNamespace(pad_token_id=0)
    largs = SimpleNamespace(**{**vars(args), "batch": args.loss_batch})

    def curve(name: str, fp8: bool) -> dict:
        # The lr goes in through the config: set on the param groups after a scheduler exists, the scheduler's
        # first step put SFTConfig's 1e-5 back (the curves of 2026-12-02 ran at it, not at --loss-lr).
        model, opt, _, scfg, env = trainer(cfg, largs, device, fp8, lr=args.loss_lr)
        sched = make_scheduler(opt, "constant", 0, args.loss_steps, 1.0)
        losses = []
        t = time.perf_counter()
        for step in range(args.loss_steps):
            mb = [list(range(step * args.loss_batch, (step + 1) * args.loss_batch))]
            losses.append(read_metrics(_train_step(model, opt, sched, mb, examples, tok, scfg, env))["loss"])
        return {"row": name, "loss_first": losses[0], "loss_last10": mean(losses[-10:]), "every_10": losses[::10],
                "wall_s": time.perf_counter() - t}

    what = f"{args.loss_steps} steps of {args.loss_batch} x {args.loss_seq}, lr {args.loss_lr}, {args.loss_states} states"
    prec = "bf16" if device.type == "cuda" else "fp32"
    rows = [guarded(name, lambda name=name, fp8=fp8: curve(name, fp8), args, device)
            for name, fp8 in ((f"loss curve {preset} {prec} ({what})", False),
                              (f"loss curve {preset} fp8 {args.fp8_recipe} ({what})", True))]
    if all("loss_last10" in r for r in rows):
        bf16, fp8 = rows[0]["loss_last10"], rows[1]["loss_last10"]
        rows.append({"row": f"loss {preset}: fp8 vs bf16, mean of the last 10 steps (floor ln 4 = {math.log(4):.3f})",
                     "rel_gap": (fp8 - bf16) / bf16, "within_1pct": abs(fp8 - bf16) <= 0.01 * bf16})
    return rows


def mean(xs: list[float]) -> float:
    return sum(xs) / max(1, len(xs))


def failure(name: str, e: Exception, args) -> dict:
    if args.verbose:
        traceback.print_exc()
    return {"row": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}


def guarded(name: str, fn: Callable[[], dict], args, device: torch.device) -> dict:
    """One row: its numbers, `skipped` with the reason where FP8 cannot run, or its error; the run goes on."""
    free(device)
    print(f"{name} ...", file=sys.stderr, flush=True)  # a row cut by a device call's limit shows where it stopped
    t = time.perf_counter()
    try:
        row = fn()
    except (ProverError, ImportError) as e:
        row = {"row": name, "skipped": str(e)}
    except Exception as e:  # OOM or anything else
        row = failure(name, e, args)
    row.setdefault("row_wall_s", time.perf_counter() - t)
    print(json.dumps({k: v for k, v in row.items() if k != "profile"}), file=sys.stderr, flush=True)
    args.done_rows.append(row)
    args.out_path.write_text(json.dumps({"rows": args.done_rows, "partial": True}, indent=2))  # kept on a timeout
    free(device)
    return row


def rows_sft(preset: str, cfg: ModelConfig, args, device: torch.device) -> list[dict]:
    graphs = ", CUDA graphs" if args.cudagraphs else ", the step one CUDA graph" if args.step_graph else ""
    model_shape = f"{preset}, {args.batch} x {args.seq}{graphs}"
    shape = f"{preset}, {args.batch} x {args.seq_min}-{args.seq}{graphs}" if args.seq_min < args.seq else model_shape
    prec = "bf16" if device.type == "cuda" else "fp32"  # the trainer's choice for the device (`param_dtype`)
    makers = {
        "model": (f"model step ({model_shape}; bench/model_gpu.py)", lambda n: model_row(n, cfg, args, device)),
        **{f"model-{key}": (f"model step, {what} ({model_shape}; bench/model_gpu.py)",
                            lambda n, kernels=kernels: model_row(n, cfg, args, device, kernels))
           for key, (what, kernels) in KERNELS.items()},
        **{key: (f"SFT step {prec}{'' if opt is None else ' ' + key.split('-')[1] + ' optimizer'} ({shape})",
                 lambda n, opt=opt: sft_step_row(n, cfg, args, device, fp8=False, optimizer=opt))
           for key, opt in OPTIMIZERS.items()},
        "fp8": (f"SFT step fp8 {args.fp8_recipe} ({shape})", lambda n: sft_step_row(n, cfg, args, device, fp8=True)),
        "fp8-dense": (f"SFT step fp8 {args.fp8_recipe}, experts bf16 ({shape})",
                      lambda n: sft_step_row(n, cfg, args, device, fp8=True, fp8_experts=False)),
        **{key: (f"SFT step {prec}, {what} ({shape})",
                 lambda n, kernels=kernels: sft_step_row(n, cfg, args, device, fp8=False, kernels=kernels))
           for key, (what, kernels) in KERNELS.items()},
    }
    rows = {key: guarded(name, lambda name=name, make=make: make(name), args, device)
            for key, (name, make) in makers.items() if key in args.sft_rows}
    ok = {k: r for k, r in rows.items() if "tokens_per_s" in r}
    for key in (*OPTIMIZERS, "fp8", "fp8-dense", *KERNELS):
        yardstick = f"model-{key}" if f"model-{key}" in ok else "model"  # the model on the same kernels, if run
        if key in ok and yardstick in ok and args.seq_min == args.seq:  # (else other data than the model row's)
            ok[key]["vs_model"] = ok[key]["tokens_per_s"] / ok[yardstick]["tokens_per_s"]
        if key in ("fp8", "fp8-dense", *KERNELS) and key in ok and "bf16" in ok:
            ok[key]["vs_bf16"] = ok[key]["tokens_per_s"] / ok["bf16"]["tokens_per_s"]
    return list(rows.values())


def bench_grpo(model: DeepSeekV3, cfg: ModelConfig, args, device: torch.device) -> list[dict]:
    P, G = args.grpo_problems, args.group_size
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(2, cfg.vocab_size, (args.prompt_len,), generator=g).tolist() for _ in range(P)]
    ref = DeepSeekV3(cfg).to(device).eval().requires_grad_(False)
    ref.load_state_dict(model.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    verifier, problems = make_verifier(args.verify, P)
    rows = []
    for it in range(args.warmup + 1):  # the last iteration is the one reported
        times = {}
        sync(device)
        t = time.perf_counter()
        model.eval()
        ids = torch.tensor([p for p in prompts for _ in range(G)], device=device)
        gen = torch.Generator(device=device).manual_seed(it)
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            out = model.generate(ids, max_new_tokens=args.new_tokens, temperature=1.0, eos_token_id=[],
                                 generator=gen)
        sync(device)
        times["generate_s"] = time.perf_counter() - t
        completions = out[:, args.prompt_len:].tolist()
        prompt_ids = [p for p in prompts for _ in range(G)]

        t = time.perf_counter()
        with torch.no_grad():
            old, mask = completion_logprobs(model, prompt_ids, completions, 0, device, "auto")
            ref_lp, _ = completion_logprobs(ref, prompt_ids, completions, 0, device, "auto")
        sync(device)
        times["score_s"] = time.perf_counter() - t

        t = time.perf_counter()
        if verifier is not None:  # candidate proofs of the toy problems: alternately right and wrong
            jobs = [(problems[i // G], problems[i // G].formal_statement + ("\n  assumption\n" if i % 2 else "\n  rfl\n"))
                    for i in range(P * G)]
            verdicts = verifier.verify_many(jobs)
            n_proved = sum(v.proved for v in verdicts)
        times["verify_s"] = time.perf_counter() - t

        t = time.perf_counter()
        model.train()
        rewards = torch.randint(0, 2, (P * G,), generator=g).float()
        adv = group_advantages(rewards, torch.arange(P).repeat_interleave(G)).to(device)
        total = float(mask.sum())
        for s in range(0, P * G, args.micro_batch):
            sl = slice(s, s + args.micro_batch)
            lp, m = completion_logprobs(model, prompt_ids[sl], completions[sl], 0, device, "auto")
            loss, _ = grpo_token_loss(lp, old[sl], adv[sl], m, 0.2, ref_lp[sl], 0.02)
            (loss / total).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        moe_after_step(model, 1e-3)
        sync(device)
        times["update_s"] = time.perf_counter() - t
    if verifier is not None:
        verifier.close()
    total = sum(times.values())
    label = {"fake": f"verify (FAKE Lean, {P * G} proofs, {n_proved if verifier else 0} proved)",
             "none": "verify (skipped: no Lean on this machine)"}[args.verify]
    names = {"generate_s": f"GRPO generate ({P} x {G} samples, {args.new_tokens} new tokens)",
             "score_s": "GRPO score (old + reference log-probs)", "verify_s": label,
             "update_s": f"GRPO update (micro-batch {args.micro_batch}, KL k3)"}
    for k, v in times.items():
        rows.append({"row": names[k], "step_s": v, "share": v / total})
    gen_tokens = P * G * args.new_tokens
    rows[0]["tokens_per_s"] = gen_tokens / times["generate_s"]
    rows.append({"row": "GRPO iteration (sum)", "step_s": total})
    del ref, opt
    return rows


def make_verifier(kind: str, n: int):
    if kind == "none":
        return None, []
    from data.config import LeanSettings
    from data.problem import Problem
    from lean_env import make_verifier as make

    fake = REPO / "tests" / "fakes" / "fake_lean.py"
    problems = [Problem(name=f"toy_{i}", formal_statement=f"theorem toy_{i} (a : ℕ) (h₀ : a = {i}) : a = {i} := by")
                for i in range(n)]
    return make(LeanSettings(repl_path=fake, workers=max(1, min(8, (os.cpu_count() or 2) - 1)))), problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="small,medium", help="ModelConfig presets of the SFT rows (small = the "
                    "shared GPU yardstick; medium: DeepSeek-V3 widths)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=8, help="SFT sequences per step")
    ap.add_argument("--medium-batch", type=int, default=4, help="SFT sequences per step on the medium preset")
    ap.add_argument("--seq", type=int, default=2048, help="SFT sequence length (the longest with --seq-min)")
    ap.add_argument("--seq-min", type=int, default=None, help="SFT rows: example lengths uniform in [seq-min, seq], "
                    f"{SETS} sets of examples the steps cycle through (tokens/s counts the real tokens); the model "
                    "rows stay at --seq")
    ap.add_argument("--steps", type=int, default=10, help="timed SFT steps")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--sft-rows", default="model,bf16,fp8",
                    help="of model, bf16, bf16-fused, bf16-m16, bf16-pt, fp8, fp8-dense (experts bf16), quack (the "
                         "routed experts on QuACK's kernels: --moe-impl quack), fa4-quack (and attention on "
                         "FlashAttention-4's: --attention fa4), fa4-quack-lce (and the loss fused: --loss-impl quack); "
                         "model-quack, model-fa4-quack, model-fa4-quack-lce: the model row on those kernels, the "
                         "yardstick of the trainer rows of the same name")
    ap.add_argument("--cudagraphs", action="store_true",
                    help="SFT rows: the compiled blocks and loss as CUDA graphs (torch.compile's reduce-overhead)")
    ap.add_argument("--step-graph", action="store_true",
                    help="the whole step as one CUDA graph: SFT rows as `subgoal train sft --cuda-graph` (FP8 rows "
                         "not: it refuses them), the model rows as bench/model_gpu.py's step-graph rows")
    ap.add_argument("--fp8-recipe", default="blockwise", choices=("blockwise", "rowwise"))
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="eager SFT rows (default: compiled "
                    "blocks on CUDA, as `subgoal train sft`)")
    ap.add_argument("--loss-steps", type=int, default=200, help="FP8-vs-bf16 loss comparison steps (0: skip)")
    ap.add_argument("--loss-batch", type=int, default=8)
    ap.add_argument("--loss-seq", type=int, default=None, help="default --seq: the timed rows' shapes, so the curves "
                    "reuse their compiled graphs and FP8 kernel tunings (minutes on a fresh GPU machine)")
    ap.add_argument("--loss-lr", type=float, default=3e-4)
    ap.add_argument("--loss-states", type=int, default=256, help="tokens of the loss curves' Markov chain")
    ap.add_argument("--no-grpo", dest="grpo", action="store_false", help="skip the GRPO iteration")
    ap.add_argument("--grpo-problems", type=int, default=16)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--micro-batch", type=int, default=16, help="GRPO update micro-batch (sequences)")
    ap.add_argument("--verify", choices=("fake", "none"), default="fake")
    ap.add_argument("--peak-tflops", type=float, default=None, help="bf16 peak (default: from the GPU name)")
    ap.add_argument("--out", default=None, help="JSON path (default $OUT/train_gpu.json)")
    ap.add_argument("--profile", action="store_true", help="torch.profiler over 3 steps of the first preset's model "
                    "and trainer rows: GPU-busy time, host syncs and top kernels per step (stderr and JSON)")
    ap.add_argument("--verbose", action="store_true", help="print tracebacks of failed rows")
    args = ap.parse_args(argv)
    args.sft_rows = set(args.sft_rows.split(","))
    if args.cudagraphs and args.step_graph:
        ap.error("--cudagraphs replays each compiled block as its own graph; --step-graph captures the whole step: "
                 "pick one")
    args.loss_seq = args.loss_seq or args.seq
    args.seq_min = args.seq if args.seq_min is None else args.seq_min
    if not 2 <= args.seq_min <= args.seq:
        ap.error(f"--seq-min must be in [2, --seq {args.seq}]")
    args.out_path = Path(args.out) if args.out else Path(os.environ.get("OUT", ".")) / "train_gpu.json"
    args.out_path.parent.mkdir(parents=True, exist_ok=True)
    args.done_rows, args.profile_now = [], False
    device = torch.device(args.device)
    presets = args.presets.split(",")
    info = {"machine": platform.node(), "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "args": {
                k: sorted(v) if isinstance(v, set) else v for k, v in vars(args).items()
                if k not in ("out_path", "done_rows", "profile_now")}, "presets": {}}
    rows: list[dict] = []
    for i, preset in enumerate(presets):
        cfg = ModelConfig.preset(preset)
        with torch.device("meta"):
            counter = DeepSeekV3(cfg)
        info["presets"][preset] = {"params": counter.num_parameters(include_mtp=True),
                                   "active_params": counter.num_active_parameters()}
        pargs = SimpleNamespace(**{**vars(args), "batch": args.medium_batch if preset == "medium" else args.batch,
                                   "profile_now": args.profile and i == 0})
        rows += rows_sft(preset, cfg, pargs, device)
        if i == 0 and args.loss_steps:
            rows += loss_comparison(preset, cfg, args, device)
        if i == 0 and args.grpo:
            torch.manual_seed(0)
            model = DeepSeekV3(cfg).to(device)  # fp32 under autocast, as `subgoal train grpo` runs it
            rows += bench_grpo(model, cfg, args, device)
            del model
            free(device)

    print(f"{info['device']} | torch {torch.__version__} | " + ", ".join(
        f"{p}: {v['params'] / 1e6:,.0f}M params, {v['active_params'] / 1e6:,.0f}M active" for p, v in info["presets"].items()))
    keys = ("step_s", "tokens_per_s", "mfu", "mfu_with_attn", "vs_model", "vs_bf16", "peak_mem_gib", "share",
            "loss_last10", "rel_gap")
    print(f"{'row':72s} " + " ".join(f"{k:>13s}" for k in keys))
    pct = ("mfu", "mfu_with_attn", "share", "rel_gap")
    for r in rows:
        if "error" in r or "skipped" in r:
            print(f"{r['row']:72s} {'FAILED: ' + r['error'] if 'error' in r else 'skipped: ' + r['skipped']}")
            continue
        cells = []
        for k in keys:
            v = r.get(k)
            cells.append(f"{'':>13s}" if v is None else f"{v:13.2%}" if k in pct else f"{v:13.4g}")
        print(f"{r['row']:72s} " + " ".join(cells))
    out = args.out_path
    out.write_text(json.dumps({"info": info, "rows": rows}, indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
