"""`subgoal train sft|grpo|data` and `subgoal iterate`: SFT, GRPO, SFT-dataset building, expert iteration."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from eval.cli import checks
from eval.cli import options as shared
from eval.cli.common import config, console, err_console

app = typer.Typer(help="Train provers: SFT on verified traces, GRPO with a Lean-verified reward.", no_args_is_help=True)


def _print_result(title: str, result: dict) -> None:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("")
    table.add_column("value", overflow="fold")
    for key, value in result.items():
        if key not in ("history", "rounds"):
            table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)


@app.command("sft")
def sft(
    model: str = typer.Option(..., "--model", help="Base model: HF id or checkpoint directory."),
    data: Path = typer.Option(..., "--data", help="SFT dataset dir (`subgoal train data`) or examples JSONL."),
    out: Path = typer.Option(..., "--out", help="Output checkpoint directory (HF format)."),
    tokenizer: str | None = typer.Option(None, "--tokenizer", help="Default: the model's."),
    lr: float = typer.Option(1e-5, "--lr", callback=checks.positive),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine | linear | constant."),
    warmup: int = typer.Option(0, "--warmup", min=0, help="Warmup steps."),
    epochs: float = typer.Option(1.0, "--epochs", min=0.0),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Overrides --epochs."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Micro-batch per device."),
    grad_accum: int = typer.Option(1, "--grad-accum", min=1),
    max_length: int = typer.Option(2048, "--max-length", min=8),
    save_every: int = typer.Option(0, "--save-every", min=0, help="Checkpoint every N steps (0: at the end)."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 on GPU) | bf16 | fp32. bf16: bf16 "
                                  "parameters, fp32 master weights and AdamW moments in the optimizer."),
    device: str = typer.Option("auto", "--device"),
    bias_gamma: float = typer.Option(1e-3, "--bias-gamma", help="MoE routing-bias update speed (0: off)."),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from the latest checkpoint in --out."),
    ep: int = typer.Option(1, "--ep", min=1, help="Expert-parallel degree (1: none); with --pp it divides the "
                           "data-parallel size (processes / pp)."),
    pp: int = typer.Option(1, "--pp", min=1, help="Pipeline-parallel degree: DualPipeV over pp processes, FSDP2 "
                           "data parallelism over processes / pp replicas of it, --grad-accum (>= 2 x pp) "
                           "micro-batches per replica and step (1: none)."),
    compile_: bool | None = typer.Option(None, "--compile/--no-compile",
                                         help="torch.compile our MoE's blocks (default: on with CUDA, off on CPU)."),
    fp8: bool = typer.Option(False, "--fp8", help="FP8 GEMMs (torchao, DeepSeek-V3's recipe); CUDA sm89+."),
    fp8_recipe: str = typer.Option("blockwise", "--fp8-recipe", help="blockwise (1x128 / 128x128 tiles, sm90+) | "
                                   "rowwise: the dense linears' scaling; routed experts are rowwise either way."),
    fp8_experts: bool = typer.Option(True, "--fp8-experts/--no-fp8-experts", help="With --fp8: the routed experts' "
                                     "grouped GEMM in FP8 too (--no-fp8-experts: bf16, the dense linears FP8)."),
    moe_impl: str = typer.Option("auto", "--moe-impl", help="The routed experts' kernels: auto (torch's grouped "
                                 "GEMM) | quack (QuACK's, with the token gathers and SwiGLU fused in: pip install "
                                 "'subgoal\\[quack]'; CUDA sm90+, bf16 experts)."),
    attention: str = typer.Option("sdpa", "--attention", help="Attention kernels: sdpa (torch's: cuDNN / flash) | "
                                  "fa4 (FlashAttention-4's, for MLA's unequal qk / v head dims: pip install "
                                  "'subgoal\\[fa4]'; CUDA sm90+)."),
    loss_impl: str = typer.Option("auto", "--loss-impl", help="The output head and loss: auto (logits, then the "
                                  "cross-entropy) | quack (fused on QuACK's kernels, the logits never made: pip "
                                  "install 'subgoal\\[quack]'; CUDA sm90+)."),
    cuda_graph: bool | None = typer.Option(None, "--cuda-graph/--no-cuda-graph", help="Capture the whole step "
                                           "(forward, backward, update) as one CUDA graph per step length (the "
                                           "longest example rounded up to 256 tokens) after 2 eager steps of it, "
                                           "then replay it: almost no host work a step (default: on where it can, "
                                           "one CUDA process, bf16, compiled, no FP8)."),
) -> None:
    """Supervised fine-tuning (prompt tokens masked). Under `torchrun` it trains data-parallel with FSDP2."""
    from prover.train.sft import SFTConfig, train_sft

    cfg = SFTConfig(model=model, data=str(data), out=str(out), tokenizer=tokenizer, lr=lr, schedule=schedule,
                    warmup_steps=warmup, epochs=epochs, max_steps=max_steps, micro_batch_size=batch_size,
                    grad_accum=grad_accum, max_length=max_length, save_every=save_every, precision=precision,
                    device=device, bias_update_gamma=bias_gamma, seed=seed, resume=resume, ep=ep,
                    pp=pp, compile=compile_, fp8=fp8, fp8_recipe=fp8_recipe,
                    fp8_experts=fp8_experts, moe_impl=moe_impl, attention=attention,
                    loss_impl=loss_impl, cuda_graph=cuda_graph)
    result = train_sft(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one table
        _print_result(f"sft -> {out}", result.to_dict())


@app.command("grpo")
def grpo(
    ctx: typer.Context,
    model: str = typer.Option(..., "--model", help="Policy to start from: HF id or checkpoint directory."),
    problems: str = typer.Option(..., "--problems", help="Training problem set (name, JSONL or HF dataset)."),
    out: Path = typer.Option(..., "--out", help="Output directory (checkpoints, final model, TensorBoard)."),
    split: str | None = typer.Option(None, "--split"),
    steps: int = typer.Option(100, "--steps", min=1),
    problems_per_step: int = typer.Option(8, "--problems-per-step", min=1),
    group_size: int = typer.Option(8, "--group-size", "-G", min=2, help="Samples per problem."),
    lr: float = typer.Option(1e-6, "--lr", callback=checks.positive),
    clip: float = typer.Option(0.2, "--clip", help="PPO ratio clip epsilon."),
    kl: float = typer.Option(0.0, "--kl", help="KL coefficient to the frozen starting model (k3)."),
    ppo_epochs: int = typer.Option(1, "--ppo-epochs", min=1),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Sequences per forward/backward."),
    temperature: float = typer.Option(1.0, "--temperature", callback=checks.positive),
    top_p: float = typer.Option(1.0, "--top-p", callback=checks.probability),
    max_tokens: int = typer.Option(512, "--max-tokens", min=1),
    format_reward: float = typer.Option(0.0, "--format-reward", help="Reward for a well-formed candidate proof."),
    consistency_penalty: float = typer.Option(0.0, "--consistency-penalty", min=0.0,
                                              help="Subtracted when the final proof leaves out a `have` lemma its "
                                                   "own CoT sketched (DeepSeek-Prover-V2; with --prompt cot)."),
    consistency_steps: int | None = typer.Option(None, "--consistency-steps", min=1,
                                                 help="Apply --consistency-penalty during the first N steps only "
                                                      "(default: every step)."),
    prompt: str = typer.Option("complete", "--prompt", help="Prompt template (complete | cot)."),
    prompts: Path | None = typer.Option(None, "--prompts", help="TOML overriding the prompt templates."),
    sampler: str = typer.Option("auto", "--sampler", help="auto (vLLM on GPU when installed) | transformers | vllm."),
    async_verify: bool = typer.Option(True, "--async-verify/--no-async-verify",
                                      help="Verify batch t while batch t+1 is sampled."),
    save_every: int = typer.Option(0, "--save-every", min=0),
    precision: str = typer.Option("auto", "--precision"),
    device: str = typer.Option("auto", "--device"),
    seed: int = typer.Option(0, "--seed"),
    loss_agg: str = typer.Option("token-mean", "--loss-agg",
                                 help="token-mean (every token weighs the same) | seq-mean (DeepSeekMath: mean per "
                                      "sequence, then over sequences)."),
) -> None:
    """GRPO with a Lean-verified binary reward (the sound Verifier), group-normalized advantages."""
    from prover.train.grpo import GRPOConfig, train_grpo

    cfg = config(ctx)
    gcfg = GRPOConfig(model=model, problems=problems, out=str(out), split=split, steps=steps,
                      problems_per_step=problems_per_step, group_size=group_size, lr=lr, clip_eps=clip, kl_coef=kl,
                      ppo_epochs=ppo_epochs, micro_batch_size=batch_size, temperature=temperature, top_p=top_p,
                      max_new_tokens=max_tokens, format_reward=format_reward,
                      consistency_penalty=consistency_penalty, consistency_steps=consistency_steps, prompt_kind=prompt,
                      prompts=str(prompts) if prompts else None, sampler=sampler, async_verify=async_verify,
                      save_every=save_every, precision=precision, device=device, seed=seed, loss_agg=loss_agg)
    result = train_grpo(gcfg, cfg).to_dict()
    timings = result.pop("timings")
    _print_result(f"grpo -> {out}", {k: v for k, v in result.items() if not k.endswith("history")}
                  | {f"time {k}": v for k, v in timings.items()})


@app.command("data")
def build_data(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="Dataset directory to write (`save_to_disk`)."),
    runs: list[Path] = typer.Option([], "--runs", help="Run store(s) (.sqlite or run dir) to take proofs from."),
    examples: list[Path] = typer.Option([], "--examples", help="JSONL of SFT example records (e.g. tactic-level)."),
    problems: str | None = typer.Option(None, "--problems", help="Problem set the runs attempted (for prompts)."),
    decontaminate: bool = typer.Option(True, "--decontaminate/--no-decontaminate"),
    ngram: int = typer.Option(8, "--ngram", min=1, help="n of the n-gram overlap test (canonical tokens)."),
    threshold: float = typer.Option(0.6, "--threshold", min=0.01, max=1.0, help="n-gram overlap that counts."),
    near_dup: float = typer.Option(0.9, "--near-dup", min=0.0, max=1.0, help="Shingle Jaccard that counts as "
                                   "a near-duplicate (1.0: exact normalized duplicates only)."),
    kind: list[str] = typer.Option([], "--kind", help="Example kind(s) to keep (repeatable): whole-proof, sketch, "
                                   "lemma, repair, tactic, cold-start (DeepSeek-Prover-V2's CoT cold-start data). "
                                   "Default: all."),
) -> None:
    """Build an SFT dataset from verified proofs (+ example records): dedup, decontaminate, save."""
    from prover.train.examples import build_dataset

    cfg = config(ctx)
    report = build_dataset(runs, out, cfg, examples=examples, problems=problems, decontaminate=decontaminate,
                           ngram=ngram, threshold=threshold, near_dup=near_dup, kinds=kind or None)
    _print_result(f"SFT dataset -> {out}", {k: v for k, v in report.to_dict().items() if k != "contaminated"}
                  | {"contaminated": len(report.contaminated)})
    err_console.print(f"removals and reasons: {Path(out) / 'report.json'}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="train")
    root.command("iterate")(iterate)


def iterate(
    ctx: typer.Context,
    problems: str = typer.Option(..., "--problems", help="Training problem set (name, JSONL or HF dataset)."),
    model: str = typer.Option(..., "--model", help="Starting model (HF id or checkpoint)."),
    rounds: int = typer.Option(..., "--rounds", min=1),
    out: Path = typer.Option(..., "--out", help="Directory for the run store, datasets and checkpoints."),
    attempts: int = typer.Option(8, "--samples", "-n", "--attempts", "-k", min=1,
                                 help="Attempts per problem per round (-k, --attempts: the same, kept from before)."),
    strategy: str = typer.Option("sample", "--strategy", help="sample | decompose | repair | tree."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1, help="Tokens per generation (default by "
                                          "prompt mode: complete 4096, cot 32768)."),
    temperature: float = typer.Option(1.0, "--temperature", callback=checks.non_negative),
    backend: str | None = typer.Option(None, "--backend", help="Generation backend for proving."),
    base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server for --backend openai."),
    planner_model: str | None = shared.PLANNER_MODEL,
    planner_backend: str | None = shared.PLANNER_BACKEND,
    planner_base_url: str | None = shared.PLANNER_BASE_URL,
    steps: int | None = typer.Option(None, "--sft-steps", min=1, help="SFT steps per round (default: epochs)."),
    epochs: float = typer.Option(1.0, "--sft-epochs", min=0.0),
    lr: float = typer.Option(1e-5, "--lr", callback=checks.positive),
    batch_size: int = typer.Option(4, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device"),
    decontaminate: bool = typer.Option(True, "--decontaminate/--no-decontaminate"),
    curriculum: str = typer.Option("none", "--curriculum", help="none | subgoals: the lemmas of a round's "
                                   "decompositions (both forms, proved or not) join the next round's problems "
                                   "(DeepSeek-Prover-V2; needs --strategy decompose)."),
) -> None:
    """Expert iteration: prove -> collect verified proofs -> SFT -> repeat from the new checkpoint. Resumable:
    rerun the same command and finished rounds are skipped, an interrupted one continues."""
    from prover.train.iterate import IterateConfig, run_iterations

    cfg = config(ctx, model={"backend": backend, "base_url": base_url},
                 planner=shared.planner_overrides(planner_model, planner_backend, planner_base_url))
    icfg = IterateConfig(problems=problems, model=model, rounds=rounds, out=str(out), attempts=attempts,
                         strategy=strategy, max_tokens=max_tokens, temperature=temperature, sft_steps=steps,
                         sft_epochs=epochs, lr=lr, batch_size=batch_size, device=device,
                         decontaminate=decontaminate, curriculum=curriculum)
    summary = run_iterations(icfg, cfg)
    from rich.table import Table

    table = Table(title=f"expert iteration: {out}")
    for col in ("round", "proved", "new proofs", "dataset", "SFT loss", "time (s)", "lemmas added", "checkpoint"):
        table.add_column(col)
    for r in summary:
        loss = r.get("sft_loss")
        added = (r.get("curriculum") or {}).get("added")
        table.add_row(str(r["round"]), str(r["proved"]), str(r["new_proofs"]), str(r["dataset_size"]),
                      f"{loss:.4f}" if loss is not None else "-", f"{r['time_s']:.1f}",
                      "-" if added is None else str(added), r.get("checkpoint") or "-")
    console.print(table)
    err_console.print(json.dumps(summary[-1]) if summary else "no rounds run")
