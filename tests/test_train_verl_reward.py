"""The verl reward (`prover/train/verl_reward.py`) without a GPU or verl: scores from the FAKE Lean REPL
(tests/fakes/fake_lean.py, not Lean) through a local pool and through `subgoal lean serve` over HTTP, the batch and
async entry points, and the parquet rows verl reads."""

from __future__ import annotations

import asyncio

import pyarrow.parquet as pq
import pytest
from helpers.prove import HEADER
from helpers.serve import STATEMENT, served

from data.problem import Problem
from lean_env.remote import RemoteVerifier
from lean_env.serve import ServerThread, create_app
from prover.train import verl_reward

INFO = {"name": "add_comm2", "header": HEADER, "continues_code": False}
PROVED = f"Plan: commutativity.\n```lean4\n{HEADER}{STATEMENT}\n  ring\n```"
WRONG = f"```lean4\n{HEADER}{STATEMENT}\n  decide\n```"
CHEAT = f"```lean4\n{HEADER}{STATEMENT}\n  native_decide\n```"
PROSE = "I cannot prove this."


@pytest.fixture(scope="module")
def local():
    verifier, _ = served(workers=2)
    verl_reward.use_verifier(verifier)
    yield verifier
    verl_reward.use_verifier(None)
    verifier.close()


def test_scores_from_the_local_pool(local):
    assert verl_reward.compute_score("subgoal", PROVED, STATEMENT, INFO) == {
        "score": 1.0, "proved": True, "extracted": True, "status": "proved"}
    assert verl_reward.compute_score("subgoal", CHEAT, STATEMENT, INFO)["status"] == "unsound"
    batch = verl_reward.compute_score_batch(data_sources=["subgoal"] * 4, solution_strs=[PROVED, WRONG, PROSE, CHEAT],
                                            ground_truths=[STATEMENT] * 4, extra_infos=[INFO] * 4)
    assert [(b["score"], b["status"]) for b in batch] == [(1.0, "proved"), (0.0, "failed"), (0.0, "no_proof"),
                                                          (0.0, "unsound")]

    async def both():
        return await asyncio.gather(verl_reward.compute_score_async("subgoal", PROVED, STATEMENT, INFO),
                                    verl_reward.compute_score_async("subgoal", WRONG, STATEMENT, INFO))

    assert [r["score"] for r in asyncio.run(both())] == [1.0, 0.0]


def test_scores_through_a_remote_server():
    verifier, service = served(workers=1)
    with ServerThread(create_app(service)) as srv, RemoteVerifier(srv.url) as remote:
        before = verl_reward.use_verifier(remote)
        try:
            got = verl_reward.compute_score_batch(["subgoal"] * 2, [PROVED, CHEAT], [STATEMENT] * 2, [INFO] * 2)
        finally:
            verl_reward.use_verifier(before)
    verifier.close()
    assert [g["status"] for g in got] == ["proved", "unsound"]


def test_prepare_dataset_rows(tmp_path):
    problems = [Problem("add_comm2", STATEMENT, HEADER), Problem("two", "theorem two : 1 + 1 = 2 := by", HEADER)]
    assert verl_reward.prepare_dataset(problems, tmp_path / "train.parquet") == 2
    rows = pq.read_table(tmp_path / "train.parquet").to_pylist()
    assert rows[0]["reward_model"] == {"style": "rule", "ground_truth": STATEMENT}
    assert rows[1]["extra_info"]["name"] == "two" and rows[1]["extra_info"]["header"] == HEADER
    assert rows[0]["prompt"][0]["role"] == "user" and STATEMENT.removesuffix(" := by") in rows[0]["prompt"][0]["content"]


def test_verls_batch_reward_manager_calls_it(local, shared_dir):
    """verl's own `BatchRewardManager` (verl installed: `pip install 'subgoal[verl]'`) on a DataProto of token ids
    decoded by this project's tokenizer, with `compute_score_batch` as its reward function."""
    pytest.importorskip("verl", reason="verl is not installed (optional extra `verl`)")
    import numpy as np
    import torch
    from verl import DataProto
    from verl.workers.reward_manager import get_reward_manager_cls

    from prover.model.tokenizer import build_test_tokenizer

    tok = build_test_tokenizer(vocab_size=400, data_dir=shared_dir / "benchmarks", limit=50)
    responses = [PROVED, WRONG, CHEAT]
    prompt_ids = torch.tensor([tok("Prove it.")["input_ids"]] * len(responses))
    encoded = [tok(r)["input_ids"] for r in responses]
    width = max(len(e) for e in encoded)
    response_ids = torch.tensor([e + [tok.pad_token_id] * (width - len(e)) for e in encoded])
    mask = torch.cat([torch.ones_like(prompt_ids), torch.tensor([[1] * len(e) + [0] * (width - len(e))
                                                                for e in encoded])], dim=1)
    data = DataProto.from_dict(
        tensors={"prompts": prompt_ids, "responses": response_ids, "attention_mask": mask},
        non_tensors={"data_source": np.array(["subgoal"] * 3, dtype=object),
                     "reward_model": np.array([{"ground_truth": STATEMENT}] * 3, dtype=object),
                     "extra_info": np.array([dict(INFO) for _ in responses], dtype=object)})
    manager = get_reward_manager_cls("batch")(tokenizer=tok, num_examine=0,
                                              compute_score=verl_reward.compute_score_batch)
    out = manager(data, return_dict=True)
    ends = [len(e) - 1 for e in encoded]
    assert [out["reward_tensor"][i, ends[i]].item() for i in range(3)] == [1.0, 0.0, 0.0]
    assert out["reward_tensor"].sum().item() == 1.0
    assert out["reward_extra_info"]["status"] == ["proved", "failed", "unsound"]


def test_verls_async_reward_loop_loads_it_by_path(local, shared_dir):
    """verl's reward loop as `main_ppo` builds it from the recipe's config: the reward file loaded by path, the
    `naive` manager awaiting `compute_score_async` for every sample concurrently."""
    pytest.importorskip("verl", reason="verl is not installed (optional extra `verl`)")
    import numpy as np
    import torch
    from omegaconf import OmegaConf
    from verl import DataProto
    from verl.trainer.ppo.reward import load_reward_manager

    from prover.model.tokenizer import build_test_tokenizer

    tok = build_test_tokenizer(vocab_size=400, data_dir=shared_dir / "benchmarks", limit=50)
    config = OmegaConf.create({"reward": {
        "custom_reward_function": {"path": verl_reward.__file__, "name": "compute_score_async"},
        "reward_manager": {"source": "register", "name": "naive"}}})
    manager = load_reward_manager(config, tok)

    def item(text: str) -> DataProto:
        ids = tok(text)["input_ids"]
        return DataProto.from_dict(
            tensors={"prompts": torch.tensor([[0]]), "responses": torch.tensor([ids]),
                     "attention_mask": torch.ones(1, len(ids) + 1, dtype=torch.long)},
            non_tensors={"data_source": np.array(["subgoal"], dtype=object),
                         "reward_model": np.array([{"ground_truth": STATEMENT}], dtype=object),
                         "extra_info": np.array([dict(INFO)], dtype=object)})

    async def run():
        return await asyncio.gather(*(manager.run_single(item(t)) for t in (PROVED, WRONG, CHEAT, PROSE)))

    got = manager.loop.run_until_complete(run())
    assert [g["reward_score"] for g in got] == [1.0, 0.0, 0.0, 0.0]
    assert [g["reward_extra_info"]["status"] for g in got] == ["proved", "failed", "unsound", "no_proof"]
