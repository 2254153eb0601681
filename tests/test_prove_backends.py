"""Generation backends: transformers with a tiny random checkpoint, the OpenAI-compatible client against a local
HTTP server (real sockets), vLLM's parameter mapping (through a stand-in module: vLLM needs a GPU) and its
missing-install error, and `make_backend`."""

from __future__ import annotations

import sys
import time
import types
from dataclasses import dataclass

import pytest
from test_prove_support import ScriptedServer, tiny_checkpoint_dir

from data.config import ModelSettings
from prover.errors import ProverError
from prover.generate import make_backend
from prover.generate.base import SamplingParams


@pytest.fixture(scope="module")
def tiny_backend(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    from prover.generate.hf import TransformersBackend

    return TransformersBackend(str(tiny_checkpoint_dir(tmp_path_factory)), device="cpu", batch_size=4)


PROMPTS = ["theorem t : 1 + 1 = 2 := by", "import Mathlib\ntheorem u (a b : ℕ) : a + b = b + a := by\n  "]


def test_transformers_greedy_is_deterministic_and_batch_invariant(tiny_backend):
    greedy = SamplingParams(temperature=0.0, max_tokens=8)
    both = tiny_backend.generate(PROMPTS, greedy, n=2)
    alone = [tiny_backend.generate([p], greedy)[0][0] for p in PROMPTS]
    for row, single in zip(both, alone, strict=True):
        assert row[0].token_ids == row[1].token_ids == single.token_ids  # left padding changes nothing
    c = both[0][0]
    assert c.completion_tokens == len(c.token_ids) == len(c.token_logprobs) > 0
    assert all(lp <= 0 for lp in c.token_logprobs)
    assert c.prompt_tokens == len(tiny_backend.tokenizer(PROMPTS[0])["input_ids"])
    if c.finish_reason == "length":
        assert c.completion_tokens == 8


def test_transformers_seeds_sample_j_uses_seed_plus_j(tiny_backend):
    params = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=6, seed=11)
    a = tiny_backend.generate([PROMPTS[0]], params, n=3)[0]
    b = tiny_backend.generate([PROMPTS[0]], SamplingParams(temperature=1.0, top_p=0.95, max_tokens=6, seed=12))[0]
    assert a[1].token_ids == b[0].token_ids
    again = tiny_backend.generate([PROMPTS[0]], params, n=3)[0]
    assert [x.token_ids for x in again] == [x.token_ids for x in a]
    assert len({tuple(x.token_ids) for x in a}) > 1  # different seeds, different samples


def test_transformers_stop_strings_per_sequence(tiny_backend):
    free = tiny_backend.generate([PROMPTS[1]], SamplingParams(temperature=0.0, max_tokens=12))[0][0]
    text = free.text
    assert len(text) >= 3, "the tiny model should produce some text"
    stop = text[len(text) // 2: len(text) // 2 + 2]
    cut = text.find(stop)
    stopped = tiny_backend.generate([PROMPTS[1], PROMPTS[0]], SamplingParams(temperature=0.0, max_tokens=12,
                                                                             stop=(stop,)))
    assert stopped[0][0].text == text[:cut]
    assert stopped[0][0].finish_reason == "stop"
    assert stopped[0][0].completion_tokens <= free.completion_tokens
    assert stop not in stopped[1][0].text  # the other sequence stops on its own


def test_transformers_token_id_prompts(tiny_backend):
    ids = tiny_backend.tokenizer(PROMPTS[0])["input_ids"]
    from_ids = tiny_backend.generate([ids], SamplingParams(temperature=0.0, max_tokens=5))[0][0]
    from_text = tiny_backend.generate([PROMPTS[0]], SamplingParams(temperature=0.0, max_tokens=5))[0][0]
    assert from_ids.token_ids == from_text.token_ids


# ---- OpenAI-compatible HTTP ---------------------------------------------------------------------------------

def _client(url: str, **kw):
    from prover.generate.openai_http import OpenAIBackend

    return OpenAIBackend(url, "served-model", backoff_s=0.01, max_backoff_s=0.05, **kw)


def test_openai_completions_seeds_and_logprobs():
    with ScriptedServer([("alpha", "proof A"), ("beta", "proof B")]) as server:
        client = _client(server.url)
        out = client.generate(["alpha?", "beta?"], SamplingParams(temperature=0.7, max_tokens=9, seed=5), n=2)
        assert [[c.text for c in row] for row in out] == [["proof A"] * 2, ["proof B"] * 2]
        assert sorted(r["seed"] for r in server.requests) == [5, 5, 6, 6]  # sample j: its own request, seed + j
        assert all(r["n"] == 1 and r["logprobs"] == 1 and r["max_tokens"] == 9 for r in server.requests)
        assert out[0][0].token_logprobs == [-0.25, -0.25] and out[0][0].completion_tokens == 2
        server.requests.clear()
        greedy = client.generate(["alpha"], SamplingParams(temperature=0.0, stop=("B",)), n=3)
        assert len(server.requests) == 1 and server.requests[0]["n"] == 3  # unseeded: one request with n
        assert server.requests[0]["top_p"] == 1.0 and server.requests[0]["stop"] == ["B"]
        assert "seed" not in server.requests[0] and len(greedy[0]) == 3


def test_openai_retries_503_then_succeeds():
    with ScriptedServer([("", "ok")], fail_first=[503, 503]) as server:
        client = _client(server.url)
        out = client.generate(["x"], SamplingParams(max_tokens=4))
    assert out[0][0].text == "ok"
    assert server.statuses == [503, 503, 200]
    assert client.retries == 2


def test_openai_retries_429_and_gives_up_after_max_retries():
    with ScriptedServer([("", "ok")], fail_first=[429] * 10) as server:
        client = _client(server.url, max_retries=2)
        with pytest.raises(ProverError, match="gave up after 3 tries.*HTTP 429"):
            client.generate(["x"], SamplingParams())
    assert len(server.requests) == 3


def test_openai_timeout_is_retried_then_reported():
    with ScriptedServer([("", "late")], delay_s=lambda count, body: 1.5 if count == 1 else 0.0) as server:
        client = _client(server.url, timeout_s=0.3, max_retries=1)
        t0 = time.monotonic()
        out = client.generate(["x"], SamplingParams())  # first try times out, the retry answers
        assert out[0][0].text == "late" and time.monotonic() - t0 < 1.4
    with ScriptedServer([("", "late")], delay_s=1.5) as server:
        client = _client(server.url, timeout_s=0.2, max_retries=1)
        with pytest.raises(ProverError, match="no answer within 0.2s"):
            client.generate(["x"], SamplingParams())


def test_openai_client_errors_fail_at_once_and_no_server_is_reported():
    with ScriptedServer([("", "ok")], fail_first=[400]) as server:
        with pytest.raises(ProverError, match="rejected the request: HTTP 400"):
            _client(server.url).generate(["x"], SamplingParams())
        assert len(server.requests) == 1
        port = server.httpd.server_address[1]
    with pytest.raises(ProverError, match="connection failed"):
        _client(f"http://127.0.0.1:{port}/v1", max_retries=1).generate(["x"], SamplingParams())


# ---- vLLM ---------------------------------------------------------------------------------------------------

def test_vllm_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed (it is not, on this CPU machine)
    with pytest.raises(ProverError, match="pip install 'subgoal\\[vllm\\]'"):
        make_backend(ModelSettings(model="some/model", backend="vllm"))


@dataclass
class _Logprob:
    logprob: float


def test_vllm_parameter_mapping_with_a_stand_in_module(monkeypatch):
    """A stand-in `vllm` module (vLLM itself needs a GPU) records what the backend asks of the engine."""
    seen: dict = {}

    class SP:
        def __init__(self, **kw):
            self.kw = kw

    class LLM:
        def __init__(self, **kw):
            seen["engine"] = kw

        def generate(self, prompts, params, use_tqdm=True):
            seen["prompts"], seen["params"] = prompts, params
            outs = []
            for _prompt, sp in zip(prompts, params, strict=True):
                completions = [types.SimpleNamespace(text=f"s{sp.kw['seed']}", token_ids=[7, 8],
                                                     logprobs=[{7: _Logprob(-0.5)}, {8: _Logprob(-1.5)}],
                                                     finish_reason="length") for _ in range(sp.kw["n"])]
                outs.append(types.SimpleNamespace(prompt_token_ids=[1, 2, 3], outputs=completions))
            return outs

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SP))
    backend = make_backend(ModelSettings(model="ckpt", backend="vllm", tensor_parallel_size=2))
    assert seen["engine"]["tensor_parallel_size"] == 2 and seen["engine"]["enable_prefix_caching"] is True
    out = backend.generate(["a", [5, 6]], SamplingParams(temperature=0.0, top_p=0.9, max_tokens=3, seed=40), n=2)
    assert [[c.text for c in row] for row in out] == [["s40", "s41"], ["s40", "s41"]]
    assert seen["prompts"][2] == {"prompt_token_ids": [5, 6]}
    kw = seen["params"][0].kw
    assert kw["n"] == 1 and kw["top_p"] == 1.0 and kw["logprobs"] == 0 and kw["max_tokens"] == 3
    c = out[0][0]
    assert (c.token_logprobs, c.completion_tokens, c.prompt_tokens, c.finish_reason) == ([-0.5, -1.5], 2, 3, "length")


def test_make_backend_errors():
    with pytest.raises(ProverError, match="no model given"):
        make_backend(ModelSettings(model=None))
    with pytest.raises(ProverError, match="cannot load model"):
        make_backend(ModelSettings(model="/nonexistent/checkpoint", backend="transformers", device="cpu"))
