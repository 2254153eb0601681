"""A whole training step (forward, backward, optimizer, bias update) captured once as one CUDA graph and replayed,
PyTorch's "whole-network capture" recipe (CUDA semantics docs). One launch a step: the host's Python, dynamo's
guards and every kernel launch leave the step, and so do the gaps between the compiled blocks' graphs that
torch.compile's "reduce-overhead" replays one by one (on the H200 at `small`: 2.9 ms of gaps a step -> 1.7).

What the step must be: static shapes and addresses (one batch tensor the caller refills in place), no host sync,
an optimizer with its step counters on the GPU (`capturable=True`), and gradients None when capture begins: the
captured backward then allocates them in the graph's pool and every replay rewrites them, so nothing in the graph
zeroes them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from prover.errors import ProverError
from prover.train.step_graph import capture, on_side_stream


def graph_step(body: Callable[[], torch.Tensor], zero_grad: Callable[[], None],
               warmup: int = 3) -> Callable[[], torch.Tensor]:
    """Run `body` (one step, returning its loss) `warmup` times eagerly on a side stream, each followed by
    `zero_grad` (compilation, autotuning, optimizer state and the libraries' first-call work happen there, outside
    the capture), then capture it once; returns the replay, which returns the loss tensor the capture wrote.
    (The trainer's `--cuda-graph` is `prover.train.step_graph`, whose warm-up steps are the run's first steps.)"""
    if not torch.cuda.is_available():
        raise ProverError("a whole-step CUDA graph needs a CUDA device: run this row on a GPU")

    def warm() -> None:
        for _ in range(warmup):
            body()
            zero_grad()
    on_side_stream(warm)
    graph, loss = capture(body)

    def replay() -> torch.Tensor:
        graph.replay()
        return loss
    return replay


class BackwardOptimizer:
    """The optimizer step moved into the backward: one optimizer per group of parameters (a decoder block's, say),
    each group's update launched on a side stream as soon as backward has written the group's last gradient
    (post-accumulate-grad hooks), so the memory-bound update runs beside the rest of the backward (compute-bound
    GEMMs, attention) instead of after it. `join()` ends the step: the rest of the step waits for the updates.
    PyTorch's optimizer-in-backward recipe, with a stream of its own for the overlap (off CUDA, the updates run
    in place, in the same order)."""

    def __init__(self, groups: list[list[torch.nn.Parameter]], make_step: Callable[[list], Callable[[], object]]):
        self.groups = [g for g in groups if g]
        self.steps = [make_step(g) for g in self.groups]
        self.stream = torch.cuda.Stream() if self.groups and self.groups[0][0].is_cuda else None
        self.pending = [len(g) for g in self.groups]  # gradients still to come this step, per group
        for i, group in enumerate(self.groups):
            for p in group:
                p.register_post_accumulate_grad_hook(lambda p, i=i: self._ready(i))

    def _ready(self, i: int) -> None:
        self.pending[i] -= 1
        if self.pending[i] == 0:
            self._launch(i)

    def _launch(self, i: int) -> None:
        if self.stream is None:
            self.steps[i]()
            return
        self.stream.wait_stream(torch.cuda.current_stream())  # after the gradients
        with torch.cuda.stream(self.stream):
            self.steps[i]()

    def join(self) -> None:
        """Groups that got only some gradients this step (a parameter the loss did not reach) update now; the
        current stream then waits for every update, and the counts start over."""
        for i, group in enumerate(self.groups):
            if 0 < self.pending[i] < len(group):
                self._launch(i)
            self.pending[i] = len(group)
        if self.stream is not None:
            torch.cuda.current_stream().wait_stream(self.stream)


def block_groups(model: torch.nn.Module) -> list[list[torch.nn.Parameter]]:
    """The trainable parameters by decoder block (`...layers.<i>.`), the rest (embedding, final norm, head, MTP)
    as one more group: BackwardOptimizer's groups, in the order backward reaches them."""
    blocks: dict[int, list[torch.nn.Parameter]] = {}
    rest: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        parts = name.split(".")
        if "layers" in parts and parts.index("layers") + 1 < len(parts):
            blocks.setdefault(int(parts[parts.index("layers") + 1]), []).append(p)
        else:
            rest.append(p)
    return [rest] + [blocks[i] for i in sorted(blocks, reverse=True)]
