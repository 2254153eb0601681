"""DualPipe (V-shaped) pipeline parallelism on the CPU: 2 and 4 gloo processes running 4 and 8 stages must
reproduce one process on the same micro-batches (fp32): the loss (MTP included), every gradient, the clipped
norm, an optimizer step with the bias update, and the gathered checkpoint; the schedule's bubble is reported."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers.train import assert_checkpoint_is, free_port

from prover.model import DeepSeekV3
from prover.model.balance import update_bias
from prover.model.testing import tiny_model
from prover.train.optim import MasterWeightAdamW

torch.set_num_threads(1)

MB, SEQ, GAMMA, LR, MAX_NORM = 2, 16, 1e-2, 1e-2, 0.5


def make_model() -> DeepSeekV3:
    return tiny_model(seed=0, num_hidden_layers=8, moe_impl="batched").float().train()


def make_batch(n_mb: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded sequences with a masked prompt: the trainer's batches."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, 1024, (n_mb * MB, SEQ), generator=g)
    lengths = torch.randint(SEQ // 2, SEQ + 1, (n_mb * MB,), generator=g)
    mask = (torch.arange(SEQ)[None] < lengths[:, None]).long()
    labels = torch.where(mask.bool() & (torch.arange(SEQ)[None] >= 4), ids, torch.full_like(ids, -100))
    return ids, mask, labels


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from prover.parallel.pipeline import Pipeline

    model = make_model()
    pipe = Pipeline(model, n_microbatches=2 * world, microbatch=(MB, SEQ))
    ids, mask, labels = make_batch(2 * world)
    sums = pipe.step(ids, mask, labels, global_tokens=float((labels != -100).sum()))
    mine = {id(p) for p in pipe.parameters()}
    result = {"sums": sums, "grads": {n: p.grad.clone() for n, p in model.named_parameters() if id(p) in mine},
              "bubble": pipe.bubble(), "schedule": pipe.schedule_name}
    opt = MasterWeightAdamW(pipe.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.0)
    result["norm"] = pipe.clip_grad_norm_(MAX_NORM)
    opt.step()
    update_bias(pipe.local, GAMMA)  # each MoE layer lives on one rank: its counts are complete there
    state = pipe.full_state_dict()
    if rank == 0:
        with torch.device("meta"):
            full = DeepSeekV3(model.config)
        full.load_state_dict(state, assign=True)
        full.save_pretrained(Path(out_dir) / "pp-ckpt")
    torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module", params=[2, 4], ids=lambda w: f"pp{w}")
def run(request, tmp_path_factory):
    world = request.param
    out = tmp_path_factory.mktemp(f"pp{world}")
    mp.spawn(_worker, args=(world, free_port(), str(out)), nprocs=world, join=True)
    return world, out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world)]


def reference(world: int) -> dict:
    """One process, the same micro-batches through the trainer's accumulation (loss x its share of the tokens)."""
    model = make_model()
    ids, mask, labels = make_batch(2 * world)
    total = float((labels != -100).sum())
    loss_sum = mtp_sum = 0.0
    for i in range(2 * world):
        rows = slice(i * MB, (i + 1) * MB)
        out = model(ids[rows], attention_mask=mask[rows], labels=labels[rows])
        n = int((labels[rows] != -100).sum())
        (out.loss * (n / total)).backward()
        loss_sum += float(out.loss) * n
        mtp_sum += float(out.mtp_loss) * n
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt = MasterWeightAdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.0)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)
    opt.step()
    update_bias(model, GAMMA)
    return {"loss_sum": loss_sum, "mtp_sum": mtp_sum, "grads": grads, "norm": norm, "model": model.eval(),
            "ids": ids}


def test_pipeline_matches_one_process(run):
    world, out, ranks = run
    ref = reference(world)
    assert ranks[0]["sums"]["loss_sum"] == pytest.approx(ref["loss_sum"], rel=1e-5)
    assert ranks[0]["sums"]["mtp_sum"] == pytest.approx(ref["mtp_sum"], rel=1e-5)
    # every parameter is trained on exactly one rank, with the single-process gradient
    owned = [set(r["grads"]) for r in ranks]
    assert set().union(*owned) == set(ref["grads"]) and sum(map(len, owned)) == len(ref["grads"])
    for r in ranks:
        for name, g in r["grads"].items():
            assert torch.allclose(g, ref["grads"][name], rtol=1e-4, atol=1e-6), name
        assert float(r["norm"]) == pytest.approx(float(ref["norm"]), rel=1e-5)
    assert float(ref["norm"]) > MAX_NORM  # the clip was active
    assert_checkpoint_is(out / "pp-ckpt", ref["model"], ref["ids"], atol=LR * 1e-3)  # incl. the bias update


def test_bubble_is_accounted(run):
    world, _, ranks = run
    bubble = ranks[0]["bubble"]  # measured: 7.7% (pp 2, 4 micro-batches), 11.1% (pp 4, 8)
    assert ranks[0]["schedule"] == "ScheduleDualPipeV"
    assert {f"bubble_rank{r}" for r in range(world)} <= set(bubble)
    assert 0 < bubble["bubble_fraction"] < bubble["bubble_1f1b_same_ranks"]  # below 1F1B's (p-1)/(m+p-1)
    # every rank runs F, I and W of 2 stages x m micro-batches (unit cost each) within the makespan
    assert bubble["makespan_units"] * (1 - bubble["bubble_rank0"]) == pytest.approx(2 * 3 * 2 * world)


@pytest.mark.slow
def test_sft_with_pipeline_matches_one_process_and_resumes(tmp_path):
    """`subgoal train sft --pp 2` under torchrun: the losses and final weights of the one-process run with the same
    micro-batches, and a run stopped and resumed from its checkpoint ends where the straight run ends."""  # ~25 s
    import json
    import subprocess
    import sys

    from helpers.tiny_models import bpe_tokenizer, tiny_moe
    from helpers.train import sft_rank, weights, write_examples

    torchrun = [sys.executable, "-m", "torch.distributed.run"]  # torchrun, without relying on PATH
    model, data = tiny_moe(tmp_path / "m", bpe_tokenizer()), write_examples(tmp_path / "ex.jsonl")
    cli = [sys.executable, "-c", "from eval.cli import main; main()"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def sft(out: str, steps: int, pp: bool) -> None:
        args = ["train", "sft", "--model", str(model), "--data", str(data), "--out", str(tmp_path / out),
                "--max-steps", str(steps), "--lr", "1e-3", "--schedule", "constant", "--batch-size", "1",
                "--grad-accum", "4", "--max-length", "48", "--device", "cpu", "--save-every", "1"]
        launch = [*torchrun, "--nproc_per_node", "2", "--no-python", *cli] if pp else cli
        subprocess.run([*launch, *args, *(["--pp", "2"] if pp else [])], check=True, env=env, capture_output=True,
                       timeout=300)

    def losses(d: str) -> list[float]:
        return [json.loads(line)["loss"] for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]

    sft("one", 3, pp=False)
    sft("pp", 3, pp=True)
    # stopped at step 2 and resumed (the CLI has no --stop-after): the trainer under torchrun's environment
    runs = [dict(out=str(tmp_path / "pp-resumed"), stop_after=2), dict(out=str(tmp_path / "pp-resumed"))]
    common = dict(model=str(model), data=str(data), lr=1e-3, schedule="constant", micro_batch_size=1, grad_accum=4,
                  max_length=48, max_steps=3, device="cpu", save_every=1, pp=2)
    mp.spawn(sft_rank, args=(2, [free_port() for _ in runs], runs, common), nprocs=2, join=True)
    assert losses("pp") == pytest.approx(losses("one"), rel=1e-4)
    assert losses("pp-resumed") == losses("pp")
    one, pp, resumed = weights(tmp_path / "one"), weights(tmp_path / "pp"), weights(tmp_path / "pp-resumed")
    assert set(one) == set(pp) == set(resumed)
    for name, t in one.items():
        assert torch.equal(pp[name], resumed[name]), name
        if not name.endswith("e_score_correction_bias"):  # the bias: a knife edge at equal loads (see FSDP test)
            assert torch.allclose(t, pp[name], atol=1e-5), name
