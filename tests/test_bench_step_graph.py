"""bench/step_graph.py: the whole training step as one CUDA graph, and AdamW moved into the backward. The `gpu` test
checks that replaying the captured step trains as the eager step does (losses, parameters, the balancing biases),
with AdamW after the backward or inside it; on CPU, the clear error and the in-backward optimizer's bookkeeping."""

from __future__ import annotations

import pytest
import torch

from bench.step_graph import BackwardOptimizer, block_groups, graph_step
from prover.errors import ProverError
from prover.model import DeepSeekV3, ModelConfig
from prover.model.balance import update_bias


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where there is no CUDA device")
def test_graph_step_needs_cuda():
    with pytest.raises(ProverError, match="needs a CUDA device"):
        graph_step(lambda: torch.zeros(()), lambda: None)


def tiny_model(device: str, dtype: torch.dtype = torch.float32) -> DeepSeekV3:
    torch.manual_seed(0)
    with torch.device(device):
        model = DeepSeekV3(ModelConfig.preset("tiny", mtp_loss_weight=0.0)).to(dtype)
    return model.train()


def test_block_groups_cover_every_parameter_once_in_backward_order():
    model = tiny_model("cpu")
    groups = block_groups(model)
    ids = [id(p) for g in groups for p in g]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(set(ids)) == len(ids)
    names = {id(p): n for n, p in model.named_parameters()}
    layers = len(model.model.layers)
    assert len(groups) == layers + 1
    assert any(names[id(p)].startswith("model.embed") for p in groups[0])  # the rest: embedding, norm, head, MTP
    for g, i in zip(groups[1:], reversed(range(layers)), strict=True):  # then the blocks, last one first
        assert all(names[id(p)].startswith(f"model.layers.{i}.") for p in g)


def test_backward_optimizer_updates_inside_the_backward_as_one_adamw():
    """Per-block AdamW launched from the gradient hooks: the same parameters as one AdamW after the backward,
    each block's update done while the backward still had the embedding's gradient to write, and the group the
    loss reached only in part (MTP's parameters get no gradient here) updated at `join`."""
    ref, ours = tiny_model("cpu"), tiny_model("cpu")
    ids = torch.randint(0, ours.config.vocab_size, (2, 32), generator=torch.Generator().manual_seed(1))
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-2)
    embed = ours.model.embed_tokens.weight
    seen: list[tuple[int, bool]] = []

    def make_step(group):
        opt = torch.optim.AdamW(group, lr=1e-2)

        def step():
            seen.append((len(group), embed.grad is not None))
            opt.step()
        return step
    groups = block_groups(ours)
    bo = BackwardOptimizer(groups, make_step)
    for _ in range(3):
        ref(ids, labels=ids).loss.backward()
        ref_opt.step()
        ref.zero_grad(set_to_none=True)
        ours(ids, labels=ids).loss.backward()
        bo.join()
        ours.zero_grad(set_to_none=True)
    for (name, a), b in zip(ref.state_dict().items(), ours.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, msg=name)
    per_step = seen[:len(groups)]
    assert seen == per_step * 3  # every group once a step
    assert [n for n, _ in per_step] == [len(g) for g in groups[1:]] + [len(groups[0])]  # blocks, then the rest
    assert not any(done for _, done in per_step[:-1]) and per_step[-1][1]  # blocks before the embedding's gradient


def trainer(compiled: bool, overlap: bool):
    """A tiny bf16 model on the GPU (bf16: the grouped expert GEMM; fp32's padded fallback syncs), capturable
    AdamW (after the backward, or per block inside it) and one step's body (loss, backward, AdamW, bias update)."""
    model = tiny_model("cuda", torch.bfloat16)
    if compiled:
        model.compile_blocks(dynamic=False)
    ids = torch.randint(0, model.config.vocab_size, (2, 64), generator=torch.Generator().manual_seed(1)).cuda()

    def adamw(params):
        return torch.optim.AdamW(params, lr=1e-2, fused=True, capturable=True).step
    opt_step = BackwardOptimizer(block_groups(model), adamw).join if overlap else adamw(model.parameters())

    def body() -> torch.Tensor:
        loss = model(ids, labels=ids).loss
        loss.backward()
        opt_step()
        update_bias(model, 1e-2)
        return loss.detach()
    return model, body


@pytest.mark.gpu
@pytest.mark.parametrize("compiled,overlap", [(False, False), (True, False), (True, True)],
                         ids=["eager", "compiled-blocks", "compiled-blocks-adamw-in-backward"])
def test_replayed_step_trains_as_the_step_run_eagerly(compiled, overlap):
    """The same program run step by step (AdamW after the backward) and as graph replays: the same losses and the
    same model after 5 steps (to bf16's rounding of atomics), and the replays moved the model well past that."""
    model, body = trainer(compiled, overlap=False)
    eager = []
    for _ in range(5):
        eager.append(body().item())
        model.zero_grad(set_to_none=True)
    g_model, g_body = trainer(compiled, overlap)
    step = graph_step(g_body, lambda: g_model.zero_grad(set_to_none=True), warmup=2)  # steps 1-2, eager
    after_warmup = {k: v.clone() for k, v in g_model.state_dict().items()}
    replayed = [step().item() for _ in range(3)]  # steps 3-5
    torch.testing.assert_close(torch.tensor(replayed), torch.tensor(eager[2:]), rtol=2e-3, atol=0)
    assert abs(eager[2] - eager[4]) > 0.01 * abs(eager[4])  # the losses moved: not one step repeated
    for (name, a), b in zip(model.state_dict().items(), g_model.state_dict().values(), strict=True):
        torch.testing.assert_close(b.float(), a.float(), rtol=2e-2, atol=2e-3, msg=name)  # weights and biases
    moved = max((g_model.state_dict()[k].float() - v.float()).abs().max().item() for k, v in after_warmup.items())
    assert moved > 2e-2
