"""Supervised fine-tuning on SFT examples (`prompt` -> `completion`), for any HF causal LM and our DeepSeek-V3 MoE.

One optimizer step = `grad_accum` micro-batches on each of `world_size` ranks. The loss is token-level over
completion tokens only (prompt tokens are masked with -100); micro-batch losses are weighted by their share of
the step's tokens, so accumulation and data parallelism give the same gradient as one big batch. For the MoE
the model's loss already includes the weighted MTP loss, and after every optimizer step the routing bias is
updated from the expert load (aux-loss-free balancing). Data order is a seeded permutation per epoch, indexed
by step, so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from data.manifest import Manifest, check_resume, content_id, make_manifest
from prover.errors import ProverError
from prover.generate.base import derive_seed
from prover.parallel import clip_coefficient
from prover.train.checkpoint import (
    clear_checkpoints,
    export_final,
    latest_checkpoint,
    load_training_state,
    save_checkpoint,
)
from prover.train.common import (
    MetricLog,
    StepMetrics,
    load_policy,
    load_tokenizer,
    moe_after_step,
    param_dtype,
    read_metrics,
    seed_everything,
)
from prover.train.distributed import DistEnv, all_reduce_sum, init_distributed, shutdown, wrap_model
from prover.train.optim import MasterWeightAdamW
from prover.train.step_graph import (
    WARMUP_STEPS,
    GraphedSFTStep,
    padding_note,
    resolve_cuda_graph,
    step_length,
)

IGNORE = -100


@dataclass
class SFTConfig:
    model: str  # HF id or checkpoint directory (a DeepSeek-V3 checkpoint trains as our MoE)
    data: str  # a dataset saved by `data.sft_dataset.build_sft_dataset`, or a JSONL of SFT examples
    out: str  # final model goes here (HF format); checkpoints under <out>/checkpoints
    tokenizer: str | None = None  # default: the model's
    lr: float = 1e-5
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1  # cosine/linear decay to lr * this
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs
    micro_batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 2048
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    save_every: int = 0  # steps; 0 = only the final model
    keep_last: int = 2
    log_every: int = 1
    seed: int = 0
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # bf16: bf16 parameters, fp32 master weights + moments
    device: str = "auto"
    bias_update_gamma: float = 1e-3  # MoE routing-bias step per optimizer step (0 disables)
    resume: bool = True
    stop_after: int | None = None  # end this invocation at this step (checkpointed); rerunning resumes
    ep: int = 1  # expert-parallel degree
    pp: int = 1  # pipeline-parallel degree: DualPipeV over `pp` processes (2 stages each), grad_accum micro-batches
    compile: bool | None = None  # torch.compile each decoder block of our MoE; None: on CUDA yes, else no
    fp8: bool = False  # FP8 GEMMs (torchao; DeepSeek-V3's recipe, `prover.model.fp8`); needs CUDA sm89+
    fp8_recipe: Literal["blockwise", "rowwise"] = "blockwise"  # dense linears' scaling (experts: rowwise)
    fp8_experts: bool = True  # the routed experts' grouped GEMM in FP8 too (False: bf16, the dense linears FP8)
    moe_impl: Literal["auto", "quack"] = "auto"  # routed experts: torch's grouped GEMM | QuACK's fused (sm90+, bf16)
    attention: Literal["sdpa", "fa4"] = "sdpa"  # torch's SDPA | FlashAttention-4's kernels (sm90+)
    loss_impl: Literal["auto", "quack"] = "auto"  # head + cross-entropy: logits, then the loss | QuACK's fused (sm90+)
    # The whole step as one CUDA graph per step length (`prover.train.step_graph`); None: wherever it can capture
    cuda_graph: bool | None = None
    log_dir: str | None = None  # TensorBoard + metrics.jsonl; default <out>


@dataclass
class SFTResult:
    out: str
    steps: int
    tokens: int
    first_loss: float | None
    final_loss: float | None
    mean_loss_first_epoch: float | None = None
    resumed_from: str | None = None
    wall_s: float = 0.0
    history: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tokenize_example(tokenizer, prompt: str, completion: str, max_length: int) -> dict[str, list[int]] | None:
    """Prompt tokens (masked out of the loss) + completion tokens + EOS; None when nothing trainable fits."""
    p = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (p + c)[:max_length]
    labels = ([IGNORE] * len(p) + c)[:max_length]
    if all(label == IGNORE for label in labels[1:]):  # (the first token is never predicted)
        return None
    return {"input_ids": ids, "labels": labels}


def loss_tokens(labels: torch.Tensor) -> int:
    """The tokens a causal LM's loss averages over: labels after the first position (the model shifts them; with
    no BOS and no prompt the first label is a completion token, never predicted)."""
    return int((labels[:, 1:] != IGNORE).sum())


def collate(batch: list[dict[str, list[int]]], pad_id: int, length: int | None = None) -> dict[str, torch.Tensor]:
    """Right-padded tensors, to the longest example or to `length`."""
    n = length or max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), n), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    for i, b in enumerate(batch):
        k = len(b["input_ids"])
        ids[i, :k] = torch.tensor(b["input_ids"])
        labels[i, :k] = torch.tensor(b["labels"])
        mask[i, :k] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def make_scheduler(optimizer, schedule: str, warmup: int, total: int, min_ratio: float):
    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        decay = 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1 - progress
        return min_ratio + (1 - min_ratio) * decay

    if schedule not in ("cosine", "linear", "constant"):
        raise ProverError(f"unknown LR schedule {schedule!r} (cosine, linear, constant)")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class StepOrder:
    """Which examples each rank's micro-batches hold at a given step: a stream of per-epoch permutations."""

    def __init__(self, n: int, seed: int, micro: int, accum: int, env: DistEnv):
        self.n, self.seed, self.micro, self.accum, self.env = n, seed, micro, accum, env
        self.per_step = micro * accum * env.world_size
        self._perms: dict[int, list[int]] = {}

    def _example(self, k: int) -> int:
        epoch, i = divmod(k, self.n)
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", epoch))
            self._perms = {epoch: torch.randperm(self.n, generator=g).tolist()}  # only the current epoch
        return self._perms[epoch][i]

    def micro_batches(self, step: int) -> list[list[int]]:
        base = step * self.per_step
        out = []
        for a in range(self.accum):
            start = base + (a * self.env.world_size + self.env.rank) * self.micro
            out.append([self._example(k) for k in range(start, start + self.micro)])
        return out


def chat_kinds() -> set[str]:
    """Example kinds whose prompt generation sends as a chat turn (`chat = true` in `prover.prompts`)."""
    from prover.prompts import load_prompts
    from prover.train.examples import TEMPLATE_OF_KIND

    prompts = load_prompts()
    return {kind for kind, name in TEMPLATE_OF_KIND.items() if name in prompts.templates and prompts[name].chat}


def _load_examples(cfg: SFTConfig, tokenizer, ds) -> list[dict[str, list[int]]]:
    from prover.generate.base import chat_turn

    # Train on the prompt the model will be asked with: chat-turn kinds through the tokenizer's chat template.
    chat = chat_kinds()
    examples = [tokenize_example(tokenizer, chat_turn(tokenizer, r["prompt"]) if r.get("kind") in chat else r["prompt"],
                                 r["completion"], cfg.max_length) for r in ds]
    examples = [e for e in examples if e is not None]
    if not examples:
        raise ProverError(f"no trainable example in {cfg.data} (empty, or every prompt longer than max_length)")
    return examples


# Settings that change how a run is carried out, not what it computes: never compared on resume.
RUN_ONLY = ("out", "resume", "stop_after", "save_every", "keep_last", "log_every", "log_dir", "device", "compile",
            "moe_impl", "attention", "loss_impl", "cuda_graph")  # the same math: a resume may switch them


def sft_manifest(cfg: SFTConfig) -> Manifest:
    """What a resume of this SFT run must match: every setting, the seed, and the base weights and data by
    content (a retrained checkpoint or rebuilt dataset at the same path is another run)."""
    settings = {k: v for k, v in asdict(cfg).items() if k not in (*RUN_ONLY, "seed")}
    inputs = {"--model": content_id(cfg.model, weights_only=True), "--data": content_id(cfg.data)}
    if cfg.tokenizer:
        inputs["--tokenizer"] = content_id(cfg.tokenizer)
    return make_manifest("sft", settings, {"seed": cfg.seed}, inputs)


def train_sft(cfg: SFTConfig, env: DistEnv | None = None, progress: bool = True) -> SFTResult:
    """Run (or resume) SFT; returns losses and where the final model went."""
    own_env = env is None
    env = env or init_distributed(cfg.device)
    try:
        return _train(cfg, env, progress)
    finally:
        if own_env:
            shutdown(env)


def _train(cfg: SFTConfig, env: DistEnv, progress: bool) -> SFTResult:
    t_start = time.perf_counter()
    seed_everything(cfg.seed)
    out = Path(cfg.out)
    resume_from = latest_checkpoint(out) if cfg.resume else None
    dtype = param_dtype(env.device, cfg.precision)
    if cfg.fp8:  # before anything loads: one clear error where FP8 cannot run
        from prover.model.fp8 import check_fp8

        check_fp8(env.device, cfg.fp8_recipe)
        if dtype != torch.bfloat16:
            raise ProverError("--fp8 trains bf16 parameters (FP8 GEMMs, fp32 master weights): drop --precision fp32")
    elif not cfg.fp8_experts:
        raise ProverError("--no-fp8-experts says which GEMMs --fp8 leaves in bf16: add --fp8, or drop it")
    check_kernels(cfg, env)
    asked_for_graph = cfg.cuda_graph is True  # (where it was only the default, a failed capture falls back)
    cfg = replace(cfg, cuda_graph=resolve_cuda_graph(cfg, env, dtype))
    from data.sft_dataset import load_sft_dataset

    ds = load_sft_dataset(cfg.data)  # before any model download: a bad path fails fast
    check_resume(out, sft_manifest(cfg), resuming=resume_from is not None, write=env.is_main)
    if not cfg.resume and (removed := clear_checkpoints(out, env)) and env.is_main:
        print(f"starting over in {out}: removed the earlier run's {removed} checkpoint(s)", file=sys.stderr)
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model)
    examples = _load_examples(cfg, tokenizer, ds)

    model = load_policy(str(resume_from or cfg.model), env.device, dtype=dtype)
    model = prepare_pipeline(model, cfg, env) if cfg.pp > 1 else prepare_model(model, cfg, env)
    optimizer = make_optimizer(model, cfg, env)
    # The ranks of one pipeline all run every micro-batch of their replica: the data order is over dp replicas.
    order = StepOrder(len(examples), cfg.seed, cfg.micro_batch_size, cfg.grad_accum,
                      env if cfg.pp == 1 else DistEnv(rank=model.dp_rank, world_size=model.dp))
    step_fn = step_function(cfg, graph_fallback=not asked_for_graph)
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * len(examples) / order.per_step))
    scheduler = make_scheduler(optimizer, cfg.schedule, cfg.warmup_steps, total_steps, cfg.min_lr_ratio)
    step, history = 0, []
    if resume_from is not None:
        state = load_training_state(resume_from, model, optimizer, scheduler, env)
        step, history = state["step"], list(state["extra"].get("history", []))
    start_step = step
    if cfg.cuda_graph and env.is_main:  # its shapes and padding over the run's steps (the first 10,000)
        lengths = [[len(examples[i]["input_ids"]) for mb in order.micro_batches(k) for i in mb]
                   for k in range(step, min(total_steps, step + 10_000))]
        if lengths:
            print(padding_note(lengths, cfg.max_length), file=sys.stderr)

    log = MetricLog(cfg.log_dir or out, enabled=env.is_main, echo_every=cfg.log_every, from_step=step)
    steps_per_epoch = max(1, math.ceil(len(examples) / order.per_step))
    tokens_total = 0
    bar = _progress(progress and env.is_main, total_steps, step, first_step_note(cfg, env))
    last_ready = 0.0

    def record(step: int, step_metrics: StepMetrics, started: float) -> None:
        """Read a step's metrics (waiting for its GPU work only), log them and advance the bar."""
        nonlocal last_ready, tokens_total
        metrics = read_metrics(step_metrics)
        # The step's time: from its start, or from the end of the step queued before it on the GPU.
        dt = step_metrics.ready_at - max(started, last_ready)
        last_ready = step_metrics.ready_at
        tokens_total += int(metrics["step_tokens"])  # all ranks'
        history.append(metrics["loss"])
        metrics.update(tokens_per_s=metrics["step_tokens"] / dt, epoch=step / steps_per_epoch)
        log.log(step, metrics, echo_keys=("loss", "lr", "tokens_per_s"))
        if bar is not None:
            bar[0].update(bar[1], advance=1, description=f"sft loss {metrics['loss']:.4f}")

    try:
        end = min(total_steps, cfg.stop_after or total_steps)
        pending = None  # the last step's metrics: read once the next step is queued behind it
        while step < end:
            started = time.perf_counter()
            metrics = step_fn(model, optimizer, scheduler, order.micro_batches(step), examples, tokenizer, cfg, env)
            step += 1
            if pending is not None:
                record(*pending)
            pending = (step, metrics, started)
            if cfg.save_every and step % cfg.save_every == 0 and step < end:
                record(*pending)
                pending = None
                save_checkpoint(out, step, model, optimizer, scheduler, tokenizer, env, {"history": history}, cfg.keep_last)
        if pending is not None:
            record(*pending)
        if step > start_step:
            ckpt = save_checkpoint(out, step, model, optimizer, scheduler, tokenizer, env, {"history": history},
                                   cfg.keep_last)
        else:  # nothing trained: the checkpoint resumed from stands (rewriting it in place could tear it)
            ckpt = resume_from
        if step >= total_steps:
            export_final(ckpt, out, env)
    finally:
        if bar is not None:
            bar[0].stop()
        log.close()
    first_epoch = history[:steps_per_epoch]
    return SFTResult(
        out=str(out),
        steps=step,
        tokens=tokens_total,
        first_loss=history[0] if history else None,
        final_loss=history[-1] if history else None,
        mean_loss_first_epoch=sum(first_epoch) / len(first_epoch) if first_epoch else None,
        resumed_from=str(resume_from) if resume_from else None,
        wall_s=time.perf_counter() - t_start,
        history=history,
    )


def prepare_model(model: torch.nn.Module, cfg: SFTConfig, env: DistEnv) -> torch.nn.Module:
    """The loaded model (on its device, in its training dtype) made ready to train: train mode, FP8 GEMMs
    (`cfg.fp8`), compiled blocks (our MoE, where `cfg.compile` resolves on), then distributed wrapping."""
    model.train()
    if cfg.fp8:
        from prover.model.fp8 import convert_to_fp8

        plan = convert_to_fp8(model, cfg.fp8_recipe, env.device, experts=cfg.fp8_experts)
        if env.is_main:
            print(plan.summary(), file=sys.stderr, flush=True)
    set_kernels(model, cfg)
    if compiles(cfg, env) and hasattr(model, "compile_blocks"):
        model.compile_blocks()
    return wrap_model(model, env, ep=cfg.ep)


def check_kernels(cfg: SFTConfig, env: DistEnv) -> None:
    """`--moe-impl` / `--attention` / `--loss-impl` where they cannot run: one clear error before anything loads."""
    if cfg.moe_impl not in ("auto", "quack"):
        raise ProverError(f"unknown --moe-impl {cfg.moe_impl!r} (auto, quack)")
    if cfg.attention not in ("sdpa", "fa4"):
        raise ProverError(f"unknown --attention {cfg.attention!r} (sdpa, fa4)")
    if cfg.loss_impl not in ("auto", "quack"):
        raise ProverError(f"unknown --loss-impl {cfg.loss_impl!r} (auto, quack)")
    if cfg.loss_impl == "quack":
        from prover.model.loss_quack import check_fused_loss

        if cfg.pp > 1:  # the pipeline's last stage computes its own loss
            raise ProverError("--loss-impl quack is not wired into --pp's stages: drop one of them")
        check_fused_loss(env.device)
    if cfg.moe_impl == "quack":
        check_quack_training(cfg, env)
    if cfg.attention == "fa4":
        from prover.model.attention_fa4 import check_fa4

        if cfg.pp > 1:  # the pipeline's stages are built without it (not run there yet)
            raise ProverError("--attention fa4 is not wired into --pp's stages: drop one of them")
        check_fa4(env.device)


def check_quack_training(cfg: SFTConfig, env: DistEnv) -> None:
    """`--moe-impl quack` where it cannot run."""
    from prover.model.moe_quack import check_quack

    check_quack(env.device)
    if cfg.fp8 and cfg.fp8_experts:
        raise ProverError("--moe-impl quack runs the routed experts in bf16: add --no-fp8-experts (the dense "
                          "linears stay FP8)")
    if cfg.ep > 1 or cfg.pp > 1:
        raise ProverError("--moe-impl quack runs on one process's experts: drop --ep / --pp, or --moe-impl")


def set_kernels(model: torch.nn.Module, cfg: SFTConfig) -> None:
    """Our model's routed experts and attention on the kernels asked for; any other model: one clear error."""
    from prover.train.common import is_moe

    asked = [f for f, on in ((f"--moe-impl {cfg.moe_impl}", cfg.moe_impl != "auto"),
                             (f"--attention {cfg.attention}", cfg.attention != "sdpa"),
                             (f"--loss-impl {cfg.loss_impl}", cfg.loss_impl != "auto")) if on]
    if asked and not is_moe(model):
        raise ProverError(f"{' and '.join(asked)}: for our DeepSeek-V3 model (model_type deepseek_v3); this is not one")
    if cfg.moe_impl != "auto":
        model.set_moe_impl(cfg.moe_impl)
    if cfg.attention != "sdpa":
        model.set_attention(cfg.attention)
    if cfg.loss_impl != "auto":
        model.set_loss_impl(cfg.loss_impl)


def prepare_pipeline(model: torch.nn.Module, cfg: SFTConfig, env: DistEnv):
    """Our MoE split into 2 x pp DualPipeV stages over the `pp` processes (`prover.parallel.pipeline`)."""
    from prover.train.common import is_moe

    if not env.distributed:
        raise ProverError(f"--pp {cfg.pp} needs {cfg.pp} processes: torchrun --nproc_per_node {cfg.pp} "
                          "$(which subgoal) train sft ...")
    if env.world_size % cfg.pp:
        raise ProverError(f"--pp {cfg.pp} runs on a multiple of {cfg.pp} processes (pp x data-parallel replicas); "
                          f"got {env.world_size}")
    if (env.world_size // cfg.pp) % cfg.ep:
        raise ProverError(f"--ep {cfg.ep} with --pp {cfg.pp} splits experts over a stage's data-parallel replicas "
                          f"({env.world_size} processes / pp = {env.world_size // cfg.pp}): --ep must divide that")
    if not is_moe(model):
        raise ProverError("--pp splits our DeepSeek-V3 model (model_type deepseek_v3) into stages; this is not one")
    if cfg.compile:
        raise ProverError("--pp runs eager stages (torch's DualPipeV splits each backward into input and weight "
                          "gradients, which torch.compile does not support): drop --compile")
    model.train()
    if cfg.fp8:
        from prover.model.fp8 import convert_to_fp8

        convert_to_fp8(model, cfg.fp8_recipe, env.device, experts=cfg.fp8_experts)
    from prover.parallel.pipeline import Pipeline

    pipe = Pipeline(model, cfg.grad_accum, (cfg.micro_batch_size, cfg.max_length), env.device, pp=cfg.pp,
                    ep=cfg.ep)
    if env.is_main:
        b = pipe.bubble()
        replicas = f" x {pipe.dp} data-parallel replicas (FSDP2" + (f", experts over {cfg.ep})" if cfg.ep > 1 else ")")
        print(f"pipeline: {pipe.schedule_name}, {pipe.num_stages} stages on {cfg.pp} processes"
              f"{replicas if pipe.dp > 1 else ''}, {cfg.grad_accum} "
              f"micro-batches a step; bubble {b['bubble_fraction']:.1%} of the step (1F1B: "
              f"{b['bubble_1f1b_same_ranks']:.1%})" + (f"; {pipe.note}" if pipe.note else ""), file=sys.stderr)
    return pipe


def make_optimizer(model: torch.nn.Module, cfg: SFTConfig, env: DistEnv) -> torch.optim.Optimizer:
    """AdamW (betas 0.9/0.95) on fp32 master weights. On GPU the bf16 parameters' update is compiled into one pass
    over memory per tensor where `cfg.compile` resolves on (fp32 parameters take the fused CUDA kernel)."""
    return MasterWeightAdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95),
                             fused=True if env.device.type == "cuda" else None, compiled=compiles(cfg, env))


def compiles(cfg: SFTConfig, env: DistEnv) -> bool:
    """Whether `cfg.compile` resolves on: None means on CUDA."""
    return cfg.compile if cfg.compile is not None else env.device.type == "cuda"


def step_function(cfg: SFTConfig, graph_fallback: bool = False):
    """What runs one optimizer step: through the pipeline (`--pp`), captured as a CUDA graph (`--cuda-graph`), or
    `_train_step`; each (model, optimizer, scheduler, micro_batches, examples, tokenizer, cfg, env) -> StepMetrics."""
    if cfg.pp > 1:
        return _pipeline_step
    return GraphedSFTStep(fallback=graph_fallback) if cfg.cuda_graph else _train_step


# On CUDA a micro-batch is padded to its longest example rounded up to this: each new length costs cuDNN's attention
# a new execution plan (forward and backward, tens to hundreds of ms; on the H200 at `small`, lengths of 128-1024
# tokens, most steps paid one) and torch.compile a guard check or a recompile; at most max_length / 64 lengths.
PAD_MULTIPLE = 64


def micro_batch_length(mb: list[int], examples, cfg: SFTConfig, env: DistEnv) -> int | None:
    """The length `_train_step` pads a micro-batch to: None (its longest example) off CUDA, where no kernel
    plans per shape."""
    if env.device.type != "cuda":
        return None
    return step_length([len(examples[i]["input_ids"]) for i in mb], cfg.max_length, PAD_MULTIPLE)


def _train_step(model, optimizer, scheduler, micro_batches, examples, tokenizer, cfg: SFTConfig, env: DistEnv):
    """One optimizer step; returns its metrics, on their way to the host (`read_metrics` reads them): nothing in
    the step waits for the GPU, so the next step is queued while this one runs."""
    batches = [collate([examples[i] for i in mb], tokenizer.pad_token_id,
                       length=micro_batch_length(mb, examples, cfg, env)) for mb in micro_batches]
    # Counted on the CPU batches before they move: no host sync inside the micro-batch loop.
    n_toks = [loss_tokens(b["labels"]) for b in batches]
    local_seq_tokens = float(sum(int(b["attention_mask"].sum()) for b in batches))
    # Completion tokens of the whole step on all ranks: each micro-batch's mean loss is weighted by its share.
    global_tokens = all_reduce_sum(float(sum(n_toks)), env) if env.distributed else float(sum(n_toks))
    pin = env.device.type == "cuda"  # a pinned copy is queued; a pageable one waits
    kept = [(b, n) for b, n in zip(batches, n_toks, strict=True) if n > 0]
    on_device = [{k: (v.pin_memory() if pin else v).to(env.device, non_blocking=True) for k, v in b.items()}
                 for b, _ in kept]
    counts = [float(n) for _, n in kept]
    metrics = sft_step_body(model, optimizer, on_device, counts, global_tokens, cfg, env)
    lr = scheduler.get_last_lr()[0]
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    metrics.update(lr=lr, step_tokens=all_reduce_sum(local_seq_tokens, env) if env.distributed else local_seq_tokens)
    return StepMetrics(metrics)


def sft_step_body(model, optimizer, batches: list[dict[str, torch.Tensor]], counts: list, total,
                  cfg: SFTConfig, env: DistEnv) -> dict[str, Any]:
    """The step's device work, nothing in it reading back to the host: forward and backward of each micro-batch
    (on `env.device`; `counts[i]` its completion tokens, `total` the step's on all ranks: floats, or 0-dim tensors
    where a captured step takes them as inputs), clipping, the update and the MoE's bias step. Returns the
    metrics as device tensors (loss, mtp_loss, grad_norm, expert load)."""
    loss_sum = torch.zeros((), device=env.device)
    mtp_sum = None
    for b, n_tok in zip(batches, counts, strict=True):
        out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"],
                    right_padded=True)  # `collate` pads on the right: attention stays on the causal kernel
        # FSDP averages gradients over ranks, hence * world_size.
        (out.loss * (n_tok * env.world_size / total)).backward()
        loss_sum += out.loss.detach().float() * n_tok
        mtp = getattr(out, "mtp_loss", None)
        if mtp is not None:
            mtp_sum = (0 if mtp_sum is None else mtp_sum) + mtp.detach().float() * n_tok
    # Clipping inside the optimizer's update (`make_optimizer`'s MasterWeightAdamW): no extra pass; EP-aware.
    grad_norm, coef = clip_coefficient(model.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else (None, None)
    optimizer.step(grad_scale=coef)
    metrics: dict[str, Any] = {"loss": all_reduce_sum(loss_sum, env) / total}
    if mtp_sum is not None:
        metrics["mtp_loss"] = all_reduce_sum(mtp_sum, env) / total
    if grad_norm is not None:
        metrics["grad_norm"] = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
    metrics.update(moe_after_step(model, cfg.bias_update_gamma, process_group=env.group, read=False))
    return metrics


def _pipeline_step(pipe, optimizer, scheduler, micro_batches, examples, tokenizer, cfg: SFTConfig, env: DistEnv):
    """`_train_step` through the pipeline: the step's micro-batches padded to `max_length` (its stages have one
    static shape), forward and backward by the schedule, the same token weighting, clipping, update and bias step."""
    import torch.distributed as dist

    from prover.model import balance

    b = collate([examples[i] for mb in micro_batches for i in mb], tokenizer.pad_token_id, length=cfg.max_length)
    # [completion tokens, sequence tokens] of this replica, then of the step (the ranks of a pipeline hold one replica)
    tokens = torch.tensor([float(loss_tokens(b["labels"])), float(b["attention_mask"].sum())],
                          dtype=torch.float64, device=env.device)
    if pipe.dp_group is not None:
        dist.all_reduce(tokens, group=pipe.dp_group)
    n_tok = max(float(tokens[0]), 1.0)
    sums = pipe.step(b["input_ids"], b["attention_mask"], b["labels"], global_tokens=n_tok)
    # Each replica's loss lives on its pipeline's rank 0 (the last stage): one sum over the world.
    totals = torch.tensor([sums.get("loss_sum", 0.0), sums.get("mtp_sum", 0.0), float("mtp_sum" in sums)],
                          dtype=torch.float64, device=env.device)
    dist.all_reduce(totals)
    grad_norm = pipe.clip_grad_norm_(cfg.grad_clip) if cfg.grad_clip > 0 else None
    optimizer.step()
    lr = scheduler.get_last_lr()[0]
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    metrics = {"loss": float(totals[0]) / n_tok, "lr": lr, "step_tokens": float(tokens[1])}
    if float(totals[2]) > 0:
        metrics["mtp_loss"] = float(totals[1]) / n_tok
    if grad_norm is not None:
        metrics["grad_norm"] = float(grad_norm)
    # The ranks holding an MoE layer are its stage's dp replicas: their counts summed, every one applies the same
    # update. The logged load is rank 0's layers'.
    if cfg.bias_update_gamma > 0:
        counts = balance.update_bias(pipe.local, cfg.bias_update_gamma, process_group=pipe.dp_group)
    else:
        counts = balance.expert_counts(pipe.local)
        if pipe.dp_group is not None and counts.numel():
            dist.all_reduce(counts, group=pipe.dp_group)
        balance.reset_counts(pipe.local)
    if counts.numel():
        metrics.update({f"expert_load/{k}": v for k, v in balance.load_summary(counts).items()})
    return StepMetrics(metrics)


def first_step_note(cfg: SFTConfig, env: DistEnv) -> str:
    """What the first step does besides training, where it takes long enough to look like a hang: compiling the
    blocks and the optimizer's update (a minute or two on an H200), tuning torchao's FP8 kernels (minutes)."""
    work = [w for w, on in (("compiling", compiles(cfg, env)), ("tuning FP8 kernels", cfg.fp8)) if on]
    parts = [f"first step: {' and '.join(work)}, minutes"] if work else []
    if cfg.cuda_graph:
        parts.append(f"each step length's step {WARMUP_STEPS + 1}: capturing its CUDA graph")
    return f"sft ({'; '.join(parts)})" if parts else "sft"


def _progress(enabled: bool, total: int, done: int, description: str = "sft"):
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    p = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True,
    )
    p.start()
    return p, p.add_task(description, total=total, completed=done)
