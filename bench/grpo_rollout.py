"""GRPO's rollout phase on the streaming runner: wall time against max(generation, Lean) and against their sum.

    PYTHONPATH=. python bench/grpo_rollout.py --device cpu --preset tiny                       # CPU, ~1 minute
    PYTHONPATH=. python bench/grpo_rollout.py --device cuda --preset small --problems 16 --group-size 8 \\
        --max-tokens 256 --lean-latency 0.25 --lean-workers 16                                  # H200

One random-weight checkpoint (`prover.model` `--preset`, a word-level tokenizer), toy problems, the `complete` prompt
(every completion is a candidate, so every sample costs one Lean check), `subgoal train grpo`'s own
`GRPOTrainer.rollout` (the policy's latent-cache `generate`, or `--sampler vllm`). Lean is the FAKE REPL
(tests/fakes/fake_lean.py; no Lean exists on these machines) on `--lean-workers` processes. After `--warmup` steps,
each of `--steps` steps is run three ways on the same samples (the step's seed fixes them):

  generation: the rollout with a latency-free FAKE Lean (its checks cost milliseconds): the policy's part;
  Lean:       the step's candidates through the same checker alone, each check `--lean-latency` s longer
              (FAKE_LEAN_DELAY_S);
  streamed:   the rollout as GRPO runs it, with that Lean: the target is close to max(generation, Lean);
  pipelined:  the measured steps one after the other in GRPO's schedule (step t+1 sampled while Lean finishes
              step t), less the update: seconds per step.

Random weights spread almost uniformly over the vocabulary, so under GRPO's one seed per step sample j of every
problem is the same text: the groups of a step end together, and only the pipelined column can overlap.
`--stop-every N` makes random completions end at the stop fence after about N tokens.

Prints a table; writes JSON to $OUT/grpo_rollout.json (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
FAKE_LEAN = REPO / "tests" / "fakes" / "fake_lean.py"
VOCAB = 1000  # words w0..w999: whatever a random model writes is printable and means nothing in Lean


def statement(i: int) -> str:
    return f"theorem toy_{i} (a : ℕ) (h₀ : a = {i}) : a = {i} := by"


def word_tokenizer(stop_every: int, problems: int) -> Any:
    """A whitespace word-level tokenizer over VOCAB made-up words. A byte-level BPE would let random weights write
    control characters, which the verifier refuses before Lean; these words reach Lean and fail there. One word in
    `stop_every` (0: none) ends with the prompt's stop fence, so random completions end after about that many
    tokens, at different times, as real ones do."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    fenced = VOCAB // stop_every if stop_every else 0
    words = [f"w{i}```" if i < fenced else f"w{i}" for i in range(VOCAB)]
    known = [w for i in range(problems) for w in statement(i).split()]  # prompts differ, and so do their samples
    vocab = {w: i for i, w in enumerate(dict.fromkeys(["<pad>", "<s>", "</s>", "<unk>", *words, *known]))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


def build(args: argparse.Namespace, workdir: Path) -> tuple[Path, Path]:
    """A random `--preset` checkpoint with a word-level tokenizer, and `--problems` toy problems."""
    from prover.model import DeepSeekV3, ModelConfig

    tok = word_tokenizer(args.stop_every, args.problems)
    config = ModelConfig.preset(args.preset, vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                                eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    ckpt = Path(DeepSeekV3(config).save_pretrained(workdir / "ckpt", tokenizer=tok))
    problems = workdir / "toy.jsonl"
    problems.write_text("".join(json.dumps({"name": f"toy_{i}", "header": "import Mathlib",
                                            "formal_statement": statement(i)}) + "\n" for i in range(args.problems)))
    return ckpt, problems


@contextmanager
def fake_lean(workers: int, latency_s: float):
    """A Verifier over the FAKE Lean REPL whose proof checks take `latency_s` more (read when a REPL starts)."""
    from data.config import LeanSettings
    from lean_env import make_verifier

    os.environ["FAKE_LEAN_DELAY_S"] = str(latency_s)
    verifier = make_verifier(LeanSettings(repl_path=FAKE_LEAN, workers=workers, timeout_s=max(60.0, 10 * latency_s)))
    try:
        yield verifier
    finally:
        verifier.close()
        os.environ.pop("FAKE_LEAN_DELAY_S", None)


async def timed_rollout(trainer: Any, engine: Any, verifier: Any, step: int) -> dict[str, Any]:
    """The trainer's rollout of `step` and its checks, as GRPO runs them; seconds until generation and checks end."""
    from prover.runner import AsyncChecker
    from prover.train.rollout import RewardChecker

    t0 = time.perf_counter()
    streamed = await trainer.rollout(engine, RewardChecker(AsyncChecker(verifier)), step)
    generated = time.perf_counter() - t0
    outcomes = await streamed.outcomes
    return {"generated_s": generated, "wall_s": time.perf_counter() - t0, "rollout": streamed.rollout,
            "proved": sum(o.proved for o in outcomes), "infra": sum(bool(o.infra) for o in outcomes)}


async def lean_alone(rollout: Any, verifier: Any) -> float:
    """Every candidate of `rollout` through the checker at once, as the rollout hands them over."""
    from prover.runner import AsyncChecker
    from prover.train.rollout import RewardChecker

    checker = RewardChecker(AsyncChecker(verifier))
    t0 = time.perf_counter()
    await asyncio.gather(*(checker.check(rollout.problems[g], proof)
                           for g, proof in zip(rollout.group, rollout.proofs, strict=True)))
    return time.perf_counter() - t0


async def measure(trainer: Any, quick: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The three timings of every measured step, all on one event loop (the runner's services bind to it)."""
    from prover.runner import Engine

    engine = Engine(trainer.sampler.backend)
    for s in range(args.warmup):
        await timed_rollout(trainer, engine, quick, s)
    rows = []
    for s in range(args.warmup, args.warmup + args.steps):
        gen = await timed_rollout(trainer, engine, quick, s)
        rows.append({"step": s, "generation_s": gen["wall_s"], "rollout": gen["rollout"]})
    with fake_lean(args.lean_workers, args.lean_latency) as slow:
        await lean_alone(rows[0]["rollout"], slow)  # REPLs started and headers imported before the timings
        for row in rows:
            row["lean_s"] = await lean_alone(row.pop("rollout"), slow)
            streamed = await timed_rollout(trainer, engine, slow, row["step"])
            lengths = [len(c) for c in streamed["rollout"].completion_ids]
            row.update(streamed_s=streamed["wall_s"], streamed_generated_s=streamed["generated_s"],
                       candidates=sum(p is not None for p in streamed["rollout"].proofs), infra=streamed["infra"],
                       tokens_mean=sum(lengths) / len(lengths))
        pipelined = await pipelined_steps(trainer, engine, slow, [row["step"] for row in rows])
    for row in rows:
        row["pipelined_s"] = pipelined / len(rows)
    return rows


async def pipelined_steps(trainer: Any, engine: Any, verifier: Any, steps: list[int]) -> float:
    """The steps in GRPO's own schedule, less the update: step t+1 is sampled while Lean finishes step t."""
    from prover.runner import AsyncChecker
    from prover.train.rollout import RewardChecker

    rewards = RewardChecker(AsyncChecker(verifier))
    t0 = time.perf_counter()
    pending = await trainer.rollout(engine, rewards, steps[0])
    for s in [*steps[1:], None]:
        nxt = await trainer.rollout(engine, rewards, s) if s is not None else None
        await pending.outcomes
        pending = nxt
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="tiny", help="prover.model preset of the random checkpoint")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sampler", default="transformers", choices=("transformers", "vllm"),
                    help="transformers: the policy's own latent-cache generate; vllm: a vLLM engine")
    ap.add_argument("--problems", type=int, default=4, help="problems per step")
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--stop-every", type=int, default=0,
                    help="completions end at the stop fence after about this many tokens (0: all run to --max-tokens)")
    ap.add_argument("--lean-latency", type=float, default=0.2, help="seconds added to each FAKE Lean proof check")
    ap.add_argument("--lean-workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2, help="measured steps (after the warm-up)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "grpo_rollout.json")
    args = ap.parse_args(argv)

    from data.config import load_config
    from prover.runner import run_async
    from prover.train.distributed import init_distributed
    from prover.train.grpo import GRPOConfig, GRPOTrainer

    with tempfile.TemporaryDirectory(prefix="grpo-rollout-") as tmp:
        ckpt, problems = build(args, Path(tmp))
        cfg = GRPOConfig(model=str(ckpt), problems=str(problems), out=str(Path(tmp) / "run"), device=args.device,
                         problems_per_step=args.problems, group_size=args.group_size, max_new_tokens=args.max_tokens,
                         sampler=args.sampler)
        env = init_distributed(args.device)
        with fake_lean(args.lean_workers, 0.0) as quick:
            trainer = GRPOTrainer(cfg, load_config(environ={}), env, quick)
            try:
                rows = run_async(measure(trainer, quick, args))
            finally:
                trainer.sampler.close()
    for row in rows:
        row["sum_s"] = row["generation_s"] + row["lean_s"]
        row["max_s"] = max(row["generation_s"], row["lean_s"])
        row["streamed_over_max"] = row["streamed_s"] / row["max_s"]
        row["streamed_over_sum"] = row["streamed_s"] / row["sum_s"]
    result = {"rows": rows, "settings": vars(args) | {"out": str(args.out)},
              "machine": {"host": platform.node(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                          "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None},
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(table(rows, args))
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)
    return result


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    head = (f"GRPO rollout: {args.problems} problems x {args.group_size} samples, {args.max_tokens} new tokens, "
            f"{args.preset} on {args.device} ({args.sampler}), stop every ~{args.stop_every or '-'}; FAKE Lean +{args.lean_latency}s/check on "
            f"{args.lean_workers} workers")
    lines = [head, "| step | candidates | tokens/sample | generation s | Lean alone s | sum s | max s | streamed s | "
             "streamed/max | streamed/sum | pipelined s/step |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['step']} | {r['candidates']} | {r['tokens_mean']:.1f} | {r['generation_s']:.2f} | {r['lean_s']:.2f} | "
                     f"{r['sum_s']:.2f} | {r['max_s']:.2f} | {r['streamed_s']:.2f} | {r['streamed_over_max']:.2f} | "
                     f"{r['streamed_over_sum']:.2f} | {r['pipelined_s']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
