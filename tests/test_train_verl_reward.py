"""The verl reward (`prover/train/verl_reward.py`) without a GPU or verl: scores from the FAKE Lean REPL
(tests/fake_lean.py, not Lean) through a local pool and through `subgoal lean serve` over HTTP, the batch and
async entry points, and the parquet rows verl reads."""

from __future__ import annotations

import asyncio

import pyarrow.parquet as pq
import pytest
from test_lean_serve import HEADER, STATEMENT, served

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
        verl_reward.use_verifier(remote)
        try:
            got = verl_reward.compute_score_batch(["subgoal"] * 2, [PROVED, CHEAT], [STATEMENT] * 2, [INFO] * 2)
        finally:
            verl_reward.use_verifier(None)
    verifier.close()
    assert [g["status"] for g in got] == ["proved", "unsound"]


def test_prepare_dataset_rows(tmp_path):
    problems = [Problem("add_comm2", STATEMENT, HEADER), Problem("two", "theorem two : 1 + 1 = 2 := by", HEADER)]
    assert verl_reward.prepare_dataset(problems, tmp_path / "train.parquet") == 2
    rows = pq.read_table(tmp_path / "train.parquet").to_pylist()
    assert rows[0]["reward_model"] == {"style": "rule", "ground_truth": STATEMENT}
    assert rows[1]["extra_info"]["name"] == "two" and rows[1]["extra_info"]["header"] == HEADER
    assert rows[0]["prompt"][0]["role"] == "user" and STATEMENT.removesuffix(" := by") in rows[0]["prompt"][0]["content"]
