"""The SFT step as one CUDA graph (`subgoal train sft --cuda-graph`): captured once per shape, replayed after.

Why: with the blocks compiled, the GPU's work a step is fixed, but the host still runs the model's Python,
dynamo's guards, the optimizer's per-tensor calls and every kernel launch; where that host work is slower than the
GPU's (a small model, a slow host CPU) the GPU waits. A replay is one launch: the step's host work is the batch's
copy and the lr. PyTorch's whole-network capture recipe (its CUDA semantics docs): warm-up steps on a side stream
(compilation, autotuning, the optimizer's state and the libraries' first-call work happen there, outside the
capture), gradients None when capture begins (the captured backward then writes them in the graph's pool and
every replay rewrites them), no host sync inside.

What a replayed step needs to be the same step: a shape it was captured for, so a step's micro-batches are padded
to its longest example rounded up to a multiple of `BUCKET` (at most `max_length`: a run has a few shapes, each
captured once, the graphs sharing one memory pool; pads are masked out of the loss and of the routers' load, and
attention stays causal, so the real tokens' outputs are unchanged); its inputs in fixed device buffers refilled
before each replay (the tokens and, as tensors, each micro-batch's share of the step's tokens); and the lr, which
changes every step, read from a device tensor (`MasterWeightAdamW.load_lr`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from prover.errors import ProverError
from prover.train.common import StepMetrics

T = TypeVar("T")
WARMUP_STEPS = 2  # eager steps of a shape before its capture: compilation, autotuning, the optimizer's state
BUCKET = 256  # step lengths are rounded up to a multiple of this: at most max_length / BUCKET graphs


def why_not_capturable(cfg, env, dtype: torch.dtype) -> str | None:
    """Why this run's step cannot be captured, as the message to say; None where it can."""
    if env.device.type != "cuda":
        return f"--cuda-graph captures the step on a CUDA device; this run is on {env.device}: drop it"
    if env.distributed or cfg.pp > 1 or cfg.ep > 1:
        return ("--cuda-graph captures a one-process step (FSDP2's and the pipeline's communication run outside "
                "it): drop --cuda-graph or run one process")
    if dtype != torch.bfloat16:
        return "--cuda-graph captures the bf16 step (its optimizer reads the lr from the device): drop --precision fp32"
    if cfg.compile is False:
        return "--cuda-graph captures the compiled step (blocks and optimizer update): drop --no-compile"
    if cfg.fp8:
        return "--cuda-graph does not capture FP8 steps yet: drop --fp8 or --cuda-graph"
    return None


def resolve_cuda_graph(cfg, env, dtype: torch.dtype) -> bool:
    """`cfg.cuda_graph` as a bool: None (the default) is on wherever the step can be captured (one CUDA process,
    bf16, compiled, no FP8), True where it cannot is one clear error before anything loads."""
    why = why_not_capturable(cfg, env, dtype)
    if cfg.cuda_graph and why:
        raise ProverError(why)
    return why is None if cfg.cuda_graph is None else bool(cfg.cuda_graph)


def step_length(lengths: list[int], max_length: int, multiple: int | None = None) -> int:
    """The length a step's micro-batches are padded to: its longest example's, rounded up to a multiple of
    `multiple` (default `BUCKET`; at most `max_length`), so that a run's steps take a few shapes, each captured
    once."""
    multiple = multiple or BUCKET
    return min(max_length, -(-max(lengths) // multiple) * multiple)


def padding_note(step_lengths: list[list[int]], max_length: int) -> str:
    """What the padding costs on this run's steps (each step: its examples' lengths), said once at the start."""
    real = sum(sum(ls) for ls in step_lengths)
    padded = sum(len(ls) * step_length(ls, max_length) for ls in step_lengths)
    shapes = sorted({step_length(ls, max_length) for ls in step_lengths})
    return (f"--cuda-graph: each step's micro-batches padded to its longest example rounded up to a multiple of "
            f"{BUCKET} (at most --max-length {max_length}): {len(shapes)} shape(s), one CUDA graph each, "
            f"{1 - real / max(1, padded):.0%} of the tokens padding")


@dataclass
class _Shape:
    """One step shape's fixed input buffers, its eager steps so far, and once captured its graph and outputs."""
    inputs: dict[str, torch.Tensor]
    runs: int = 0
    graph: torch.cuda.CUDAGraph | None = None
    outputs: dict[str, torch.Tensor] | None = None  # the captured step's metrics, rewritten by each replay


class GraphedSFTStep:
    """`sft._train_step`'s step (the same signature and result), one CUDA graph per step shape (`step_length`),
    each captured after `warmup` eager steps of that shape and replayed after; the graphs share one memory pool (a
    step's tensors live only during its replay). Off CUDA every step runs eagerly, the warm-up path (what the CPU
    tests check against `_train_step`)."""

    def __init__(self, warmup: int = WARMUP_STEPS, fallback: bool = False):
        self.warmup = warmup
        self.fallback = fallback  # a failed capture: warn and train on eagerly (the default), else a clear error
        self.eager_only = False  # set once a capture failed with `fallback`
        self.shapes: dict[tuple[int, ...], _Shape] = {}
        self.pool = None  # the first graph's memory pool, shared by the later ones

    def __call__(self, model, optimizer, scheduler, micro_batches, examples, tokenizer, cfg, env) -> StepMetrics:
        from prover.train.sft import _train_step, collate, loss_tokens

        if self.eager_only:
            return _train_step(model, optimizer, scheduler, micro_batches, examples, tokenizer, cfg, env)

        length = step_length([len(examples[i]["input_ids"]) for mb in micro_batches for i in mb], cfg.max_length)
        batches = [collate([examples[i] for i in mb], tokenizer.pad_token_id, length=length) for mb in micro_batches]
        counts = [loss_tokens(b["labels"]) for b in batches]
        if min(counts) == 0:  # (`tokenize_example` keeps only examples with a completion token to learn)
            raise ProverError("a micro-batch has no completion token to learn; --cuda-graph cannot skip it")
        host = {k: torch.stack([b[k] for b in batches]) for k in batches[0]}  # [micro-batches, batch, length]
        host["counts"] = torch.tensor(counts, dtype=torch.float32)
        host["total"] = torch.tensor(float(sum(counts)))
        shape = self._load(host, env.device)
        if shape.graph is None and shape.runs >= self.warmup and env.device.type == "cuda":
            self._try_capture(shape, model, optimizer, cfg, env)
        if shape.graph is not None:
            optimizer.load_lr()
            shape.graph.replay()
            metrics = dict(shape.outputs)
        else:
            metrics = self._eager(shape, model, optimizer, cfg, env)
        shape.runs += 1
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        metrics.update(lr=lr, step_tokens=float(host["attention_mask"].sum()))
        return StepMetrics(metrics)

    def _try_capture(self, shape: _Shape, model, optimizer, cfg, env) -> None:
        """Capture `shape`'s step; where that fails, one clear error, or with `fallback` a warning and every later
        step eager (`sft._train_step`): a run that only defaulted to CUDA graphs still trains."""
        try:
            self._capture(shape, model, optimizer, cfg, env)
        except ProverError as e:
            if not self.fallback:
                raise ProverError(f"{e}: pass --no-cuda-graph") from e
            print(f"warning: {e}: training on without CUDA graphs", file=sys.stderr)
            self.eager_only = True

    def _load(self, host: dict[str, torch.Tensor], device: torch.device) -> _Shape:
        """The batch into its shape's fixed buffers: a queued copy from pinned memory (nothing waits)."""
        key = tuple(host["input_ids"].shape)
        if key not in self.shapes:
            self.shapes[key] = _Shape({k: torch.empty_like(v, device=device) for k, v in host.items()})
        shape = self.shapes[key]
        pin = device.type == "cuda"
        for k, v in host.items():
            shape.inputs[k].copy_(v.pin_memory() if pin else v, non_blocking=pin)
        return shape

    @staticmethod
    def _body(shape: _Shape, model, optimizer, cfg, env) -> dict[str, Any]:
        from prover.train.sft import sft_step_body

        x = shape.inputs
        batches = [{k: x[k][i] for k in ("input_ids", "labels", "attention_mask")} for i in range(len(x["counts"]))]
        return sft_step_body(model, optimizer, batches, list(x["counts"].unbind()), x["total"], cfg, env)

    def _eager(self, shape: _Shape, model, optimizer, cfg, env) -> dict[str, Any]:
        """A warm-up step, gradients None before it (another shape's replays leave theirs set) and after."""
        def step():
            optimizer.zero_grad(set_to_none=True)
            metrics = self._body(shape, model, optimizer, cfg, env)
            optimizer.zero_grad(set_to_none=True)
            return metrics
        return on_side_stream(step) if env.device.type == "cuda" else step()

    def _capture(self, shape: _Shape, model, optimizer, cfg, env) -> None:
        if any(p.dtype == torch.float32 for g in optimizer.param_groups for p in g["params"]):
            # torch's AdamW, which takes fp32 parameters, would keep the lr of the capture for every replay
            raise ProverError("--cuda-graph captures the update of bf16 parameters; this model has fp32 ones")
        # Gradients None at capture: its backward writes them in the pool (another shape's replay left them set)
        optimizer.zero_grad(set_to_none=True)
        try:
            shape.graph, outputs = capture(lambda: self._body(shape, model, optimizer, cfg, env), pool=self.pool)
        except RuntimeError as e:
            raise ProverError(f"--cuda-graph could not capture the step ({str(e).splitlines()[0][:300]})") from e
        self.pool = self.pool or shape.graph.pool()
        shape.outputs = {k: v for k, v in outputs.items() if torch.is_tensor(v)}


def on_side_stream(fn: Callable[[], T]) -> T:
    """`fn()` on a side stream, ordered after the work queued so far and before the work queued next: where the
    capture recipe runs its warm-up steps (the libraries' first-call work lands off the stream that captures)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = fn()
    torch.cuda.current_stream().wait_stream(side)
    return out


def capture(fn: Callable[[], T], pool=None) -> tuple[torch.cuda.CUDAGraph, T]:
    """`fn`'s GPU work recorded, not run, as a CUDA graph (in `pool`, another graph's, if given); its outputs are
    the tensors each replay rewrites."""
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    # thread_local, as torch.compile's own CUDA graphs: the backward runs on autograd's device thread
    with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
        out = fn()
    return graph, out
