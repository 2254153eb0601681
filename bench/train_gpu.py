"""Training throughput of `prover.train`: SFT tokens/s and MFU, and one GRPO iteration split into phases.

    PYTHONPATH=. python bench/train_gpu.py                                  # GPU: `small` MoE preset, bf16
    PYTHONPATH=. python bench/train_gpu.py --preset tiny --device cpu \\
        --batch 2 --seq 64 --steps 2 --grpo-problems 2 --group-size 2 --new-tokens 8   # CPU smoke test

SFT: the trainer's own optimizer step (`prover.train.sft._train_step`: masked-prompt token loss + MTP loss,
grad clipping, AdamW, cosine schedule, aux-loss-free bias update) on random token sequences of `--seq` tokens
(the first quarter as prompt, masked), `--batch` sequences per step, random-weight DeepSeek-V3 of `--preset`,
bf16 autocast on CUDA. MFU = 6 x active parameters (input embedding excluded; MTP excluded) x tokens/s over the
bf16 dense peak (the same FLOP count as bench/model_gpu.py; `mfu_with_attn` adds causal attention).

GRPO: one iteration on `--grpo-problems` x `--group-size` samples: generation (the policy's latent-cache
`generate`, `--new-tokens` new tokens after `--prompt-len` prompt tokens, EOS ignored), scoring (old
log-probabilities), verification, and the update (log-probs with grad, clipped surrogate + k3 KL to a
reference, backward, AdamW, bias update). Verification is NOT real Lean on the GPU machine: `--verify fake`
checks each sample's candidate proof with the FAKE Lean REPL of tests/fake_lean.py (a tiny arithmetic
fragment, so its time is a lower bound on Lean's), `--verify none` skips it. Rewards are random bits (random
weights prove nothing), so the update does real work.

Prints a table; writes JSON to $OUT/train_gpu.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.model_gpu import peak_flops, train_flops_per_token  # noqa: E402
from prover.model import DeepSeekV3, ModelConfig  # noqa: E402
from prover.train.common import moe_after_step  # noqa: E402
from prover.train.distributed import DistEnv  # noqa: E402
from prover.train.grpo import completion_logprobs, group_advantages, grpo_token_loss  # noqa: E402
from prover.train.sft import IGNORE, SFTConfig, _train_step, make_scheduler  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_sft(model: DeepSeekV3, cfg: ModelConfig, args, device: torch.device) -> dict:
    env = DistEnv(device=device)
    scfg = SFTConfig(model="", data="", out="", micro_batch_size=args.batch, precision="auto", device=str(device))
    g = torch.Generator().manual_seed(0)
    examples = []
    for _ in range(args.batch):
        ids = torch.randint(2, cfg.vocab_size, (args.seq,), generator=g).tolist()
        n_prompt = args.seq // 4
        examples.append({"input_ids": ids, "labels": [IGNORE] * n_prompt + ids[n_prompt:]})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95))
    sched = make_scheduler(opt, "cosine", 0, 1000, 0.1)
    tok = SimpleNamespace(pad_token_id=0)
    batch = [list(range(args.batch))]
    model.train()
    for _ in range(args.warmup):
        _train_step(model, opt, sched, batch, examples, tok, scfg, env)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(args.steps):
        metrics = _train_step(model, opt, sched, batch, examples, tok, scfg, env)
    sync(device)
    dt = (time.perf_counter() - t) / args.steps
    tokens = args.batch * args.seq
    f_params, f_attn = train_flops_per_token(cfg, model, args.seq)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(str(device))
    row = {"row": f"SFT step ({args.batch} x {args.seq} tokens)", "step_s": dt, "tokens_per_s": tokens / dt,
           "loss": metrics["loss"]}
    if peak:
        row["mfu"] = f_params * tokens / dt / peak
        row["mfu_with_attn"] = f_attn * tokens / dt / peak
    if device.type == "cuda":
        row["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    del opt
    return row


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

    fake = REPO / "tests" / "fake_lean.py"
    problems = [Problem(name=f"toy_{i}", formal_statement=f"theorem toy_{i} (a : ℕ) (h₀ : a = {i}) : a = {i} := by")
                for i in range(n)]
    return make(LeanSettings(repl_path=fake, workers=max(1, min(8, (os.cpu_count() or 2) - 1)))), problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="small", help="ModelConfig preset (small = the shared GPU yardstick)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=8, help="SFT sequences per step")
    ap.add_argument("--seq", type=int, default=2048, help="SFT sequence length")
    ap.add_argument("--steps", type=int, default=10, help="timed SFT steps")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--grpo-problems", type=int, default=16)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--micro-batch", type=int, default=16, help="GRPO update micro-batch (sequences)")
    ap.add_argument("--compile", action="store_true", help="SFT with torch.compile'd blocks (SFTConfig.compile)")
    ap.add_argument("--verify", choices=("fake", "none"), default="fake")
    ap.add_argument("--peak-tflops", type=float, default=None, help="bf16 peak (default: from the GPU name)")
    ap.add_argument("--out", default=None, help="JSON path (default $OUT/train_gpu.json)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg = ModelConfig.preset(args.preset)
    model = DeepSeekV3(cfg).to(device)
    rows = [bench_sft(model, cfg, args, device)]
    if args.compile:  # a fresh copy, so that GRPO below runs the eager model it would run in practice
        compiled = DeepSeekV3(cfg).to(device).compile_blocks()
        rows.append({**bench_sft(compiled, cfg, args, device), "row": rows[0]["row"] + ", compiled"})
        del compiled
    if device.type == "cuda":
        torch.cuda.empty_cache()
    rows += bench_grpo(model, cfg, args, device)

    info = {"machine": platform.node(), "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "preset": args.preset, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "args": vars(args), "params": model.num_parameters(), "active_params": model.num_active_parameters()}
    print(f"{info['device']} | preset {args.preset} | {info['params'] / 1e6:.1f}M params, "
          f"{info['active_params'] / 1e6:.1f}M active | torch {torch.__version__}")
    keys = ("step_s", "tokens_per_s", "mfu", "mfu_with_attn", "share", "peak_mem_gib")
    print(f"{'row':58s} " + " ".join(f"{k:>13s}" for k in keys))
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k)
            cells.append(f"{'':>13s}" if v is None else f"{v:13.1%}" if k in ("mfu", "mfu_with_attn", "share")
                         else f"{v:13.4g}")
        print(f"{r['row']:58s} " + " ".join(cells))
    out = Path(args.out) if args.out else Path(os.environ.get("OUT", ".")) / "train_gpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"info": info, "rows": rows}, indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
