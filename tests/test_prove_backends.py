"""Generation backends: transformers with a tiny random checkpoint, the OpenAI-compatible client against a local
HTTP server (real sockets), vLLM's parameter mapping (through a stand-in module: vLLM needs a GPU) and its
missing-install error, and `make_backend`."""

from __future__ import annotations

import sys
import time

import pytest
from fakes.scripted import ScriptedServer
from helpers.prove import tiny_checkpoint_dir

from data.config import ModelSettings
from prover.errors import ProverError
from prover.generate import make_backend
from prover.generate.base import SamplingParams, sample_seed


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


def test_transformers_seeds_reproducible_per_sample_and_independent_across_seeds(tiny_backend):
    params = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=6, seed=11)
    a = tiny_backend.generate([PROMPTS[0]], params, n=3)[0]
    b = tiny_backend.generate([PROMPTS[0]], SamplingParams(temperature=1.0, top_p=0.95, max_tokens=6, seed=12), n=3)[0]
    # seed + j made sample 1 of seed 11 sample 0 of seed 12; sample_seed mixes them apart
    assert not {tuple(x.token_ids) for x in a} & {tuple(x.token_ids) for x in b}
    alone = tiny_backend.generate([PROMPTS[0], PROMPTS[1]], params, n=3)[0]  # the batch it runs in does not matter
    assert [x.token_ids for x in alone] == [x.token_ids for x in a]
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


def test_transformers_agenerate_batches_concurrent_callers(tiny_backend):
    """Six attempts awaiting at once (each its own seed, as the runner sends them) cost one padded batch, and each
    gets what `generate` gives it alone; a caller with other sampling parameters gets its own batch."""
    import asyncio

    def sampled(i: int) -> SamplingParams:
        return SamplingParams(temperature=1.0, top_p=0.95, max_tokens=6, seed=30 + i)

    greedy = SamplingParams(temperature=0.0, max_tokens=4)

    async def run() -> tuple[list, list]:
        tiny_backend._model_lock.acquire()  # the model is busy (another batch) while the callers arrive
        calls = [asyncio.ensure_future(tiny_backend.agenerate(PROMPTS[i % 2], sampled(i))) for i in range(6)]
        calls.append(asyncio.ensure_future(tiny_backend.agenerate(PROMPTS[0], greedy, n=2)))
        await asyncio.sleep(0.05)  # every caller has queued its request
        tiny_backend._model_lock.release()
        done = await asyncio.gather(*calls)
        return list(done[:6]), done[6]

    from prover.generate.base import as_streaming

    assert as_streaming(tiny_backend) is tiny_backend  # streams natively, not through the threaded fallback
    before = tiny_backend.batches
    rows, greedy_rows = asyncio.run(run())
    assert tiny_backend.batches - before == 3  # 6 sampled rows in batches of 4: 2 batches, +1 greedy; not 7
    for i, [c] in enumerate(rows):
        assert c.token_ids == tiny_backend.generate([PROMPTS[i % 2]], sampled(i))[0][0].token_ids
    assert greedy_rows[0].token_ids == greedy_rows[1].token_ids == tiny_backend.generate([PROMPTS[0]], greedy)[0][0].token_ids


def test_transformers_agenerate_reports_errors_and_close(tmp_path_factory):
    import asyncio

    from prover.generate.hf import TransformersBackend

    backend = TransformersBackend(str(tiny_checkpoint_dir(tmp_path_factory)), device="cpu", batch_size=4)
    with pytest.raises(ProverError, match="text prompts need a tokenizer"):
        backend.tokenizer, saved = None, backend.tokenizer
        asyncio.run(backend.agenerate("x", SamplingParams(max_tokens=2)))
    backend.tokenizer = saved
    assert len(asyncio.run(backend.agenerate("x", SamplingParams(max_tokens=2), n=2))) == 2
    backend.close()
    with pytest.raises(ProverError, match="closed"):
        asyncio.run(backend.agenerate("x", SamplingParams(max_tokens=2)))


# ---- OpenAI-compatible HTTP ---------------------------------------------------------------------------------

def _client(url: str, **kw):
    from prover.generate.openai_http import OpenAIBackend

    return OpenAIBackend(url, "served-model", backoff_s=0.01, max_backoff_s=0.05, **kw)


def test_openai_completions_seeds_and_logprobs():
    with ScriptedServer([("alpha", "proof A"), ("beta", "proof B")]) as server:
        client = _client(server.url)
        out = client.generate(["alpha?", "beta?"], SamplingParams(temperature=0.7, max_tokens=9, seed=5), n=2)
        assert [[c.text for c in row] for row in out] == [["proof A"] * 2, ["proof B"] * 2]
        want = sorted([sample_seed(5, 0), sample_seed(5, 1)] * 2)  # sample j: its own request, sample_seed(5, j)
        assert sorted(r["seed"] for r in server.requests) == want
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
    with ScriptedServer([("", "late")], delay_s=lambda count, body: 4.0 if count == 1 else 0.0) as server:
        client = _client(server.url, timeout_s=0.3, max_retries=1)
        t0 = time.monotonic()
        out = client.generate(["x"], SamplingParams())  # first try times out, the retry answers
        assert out[0][0].text == "late" and time.monotonic() - t0 < 3.0  # not the 4 s of the first try
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


def test_openai_agenerate_shares_one_pool_with_hundreds_in_flight():
    """The streaming runner's pattern: one task per sample, through one connection pool: every request is at the
    server at once (more than aiohttp's default pool of 100), seeds as in `generate`; a second run on a new loop
    (the runner makes one per run) reuses the same pool."""
    import asyncio

    # 101 requests must reach the server at once before any is answered: more than aiohttp's default pool allows
    with ScriptedServer([("", "proof")], delay_s=0.5, hold_until=101) as server:
        from prover.generate.base import as_streaming

        client = _client(server.url, max_in_flight=150)
        assert client.max_in_flight == 150 and as_streaming(client) is client

        async def run(count: int) -> list[list]:
            return await asyncio.gather(*(client.agenerate(f"p{i}", SamplingParams(seed=100 * i), n=1)
                                          for i in range(count)))

        try:
            t0 = time.monotonic()
            rows = asyncio.run(run(150))
            elapsed = time.monotonic() - t0
            pool = client._session
            assert asyncio.run(run(2))[1][0].text == "proof" and client._session is pool
            assert client.generate(["x"], SamplingParams())[0][0].text == "proof"  # blocking, same pool
        finally:
            client.close()
    assert all(row[0].text == "proof" for row in rows) and len(rows) == 150
    assert sorted(r["seed"] for r in server.requests[:150]) == sorted(sample_seed(100 * i, 0) for i in range(150))
    assert server.peak_in_flight > 100  # past the default pool limit: the pool is sized to max_in_flight
    assert elapsed < 150 * 0.5 / 8  # far from one batch of 8 after the other
    assert client._session is None


def test_openai_max_in_flight_bounds_the_requests_at_the_server():
    import asyncio

    # requests wait until 4 are at the server together: fewer (a bound too tight) waits out the hold, more shows
    with ScriptedServer([("", "ok")], delay_s=0.1, hold_until=4) as server:
        client = _client(server.url, max_in_flight=4)

        async def run() -> None:
            await asyncio.gather(*(client.agenerate("p", SamplingParams(seed=i), n=3) for i in range(5)))
            client.close()  # from inside a caller's loop too

        asyncio.run(run())
    assert len(server.requests) == 15 and server.peak_in_flight == 4
    with pytest.raises(ProverError, match="max_in_flight must be >= 1"):
        _client("http://127.0.0.1:1/v1", max_in_flight=0)


def test_openai_cancelled_agenerate_drops_its_request():
    """Stop-at-first cancels the remaining attempts: their requests are dropped, the pool stays usable."""
    import asyncio

    with ScriptedServer([("", "ok")], delay_s=lambda count, body: 3.0 if body["prompt"] == "slow" else 0.0) as server:
        client = _client(server.url)

        async def run() -> str:
            slow = asyncio.ensure_future(client.agenerate("slow", SamplingParams()))
            await asyncio.sleep(0.3)
            slow.cancel()
            t0 = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                await slow
            assert time.monotonic() - t0 < 2.0  # not waiting out the slow request's 2.7 s left
            return (await client.agenerate("fast", SamplingParams()))[0].text

        try:
            assert asyncio.run(run()) == "ok"
        finally:
            client.close()


# ---- vLLM ---------------------------------------------------------------------------------------------------

def test_vllm_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed (it is not, on this CPU machine)
    with pytest.raises(ProverError, match="pip install 'subgoal\\[vllm\\]'"):
        make_backend(ModelSettings(model="some/model", backend="vllm"))


@pytest.fixture
def fake_vllm(monkeypatch):
    """The FAKE async engine (tests/fakes/fake_vllm.py) standing in for vLLM, which needs a GPU."""
    from fakes import fake_vllm

    return fake_vllm.install(monkeypatch)


def test_vllm_parameter_mapping_through_the_async_engine(fake_vllm):
    backend = make_backend(ModelSettings(model="ckpt", backend="vllm", tensor_parallel_size=2))
    try:
        [engine] = fake_vllm.made
        assert engine.args["tensor_parallel_size"] == 2 and engine.args["enable_prefix_caching"] is True
        assert engine.usage_context.name == "LLM_CLASS"  # the offline batch defaults, not the engine context's
        out = backend.generate(["a", [5, 6]], SamplingParams(temperature=0.0, top_p=0.9, max_tokens=3, seed=40), n=2)
        want = [f"s{sample_seed(40, 0)}", f"s{sample_seed(40, 1)}"]  # sample j: its own request, sample_seed(40, j)
        assert [[c.text for c in row] for row in out] == [want, want]
        assert [r[1] for r in engine.requests][2] == {"prompt_token_ids": [5, 6]}
        kw = engine.requests[0][2].kw
        assert kw["n"] == 1 and kw["top_p"] == 1.0 and kw["logprobs"] == 0 and kw["max_tokens"] == 3
        assert kw["output_kind"].name == "FINAL_ONLY"  # one output per request, not one per token
        c = out[0][0]
        assert c.token_logprobs == [-0.5] * 3 and c.completion_tokens == len(c.token_ids) == 3
        assert (c.prompt_tokens, c.finish_reason) == (1, "length")
        engine.requests.clear()
        unseeded = backend.generate(["a"], SamplingParams(max_tokens=9, logprobs=False), n=4)
        assert len(engine.requests) == 1 and engine.requests[0][2].n == 4  # unseeded: one request with n
        assert len(unseeded[0]) == 4 and unseeded[0][0].token_logprobs == [] and unseeded[0][0].finish_reason == "stop"
        assert len({r[0] for r in engine.requests}) == len(engine.requests)
    finally:
        backend.close()
    assert engine.shut_down
    with pytest.raises(ProverError, match="closed"):
        backend.generate(["a"], SamplingParams())


def test_vllm_agenerate_keeps_every_concurrent_request_in_the_engine(fake_vllm):
    """Many callers on the runner's loop: all their requests are in the engine at once (continuous batching),
    the engine only ever sees its own loop, and blocking `generate` still works beside it."""
    import asyncio

    backend = make_backend(ModelSettings(model="ckpt", backend="vllm"))
    try:
        from prover.generate.base import as_streaming

        [engine] = fake_vllm.made
        assert backend.max_in_flight == 2 * engine.max_num_seqs and as_streaming(backend) is backend
        engine.step_s = 0.5  # each request stays long enough for all 60 to arrive, even on a loaded machine
        params = SamplingParams(max_tokens=5, seed=7)

        async def run() -> list[list]:
            return await asyncio.gather(*(backend.agenerate(f"p{i}", params, n=2) for i in range(30)))

        rows = asyncio.run(run())
        assert [c.text for c in rows[0]] == [f"s{sample_seed(7, 0)}", f"s{sample_seed(7, 1)}"] and all(len(r) == 2 for r in rows)
        assert engine.peak_in_flight == 60  # 30 calls x 2 seeded samples, all in flight together: not one after another
        again = asyncio.run(run())  # a second caller loop: the engine still runs on its own
        assert [c.text for c in again[5]] == [f"s{sample_seed(7, 0)}", f"s{sample_seed(7, 1)}"]
        assert backend.generate(["x"], params)[0][0].text == f"s{sample_seed(7, 0)}"
    finally:
        backend.close()


def test_vllm_cancelled_agenerate_aborts_its_requests(fake_vllm):
    import asyncio

    backend = make_backend(ModelSettings(model="ckpt", backend="vllm"), max_in_flight=5)
    try:
        [engine] = fake_vllm.made
        engine.step_s = 5.0
        assert backend.max_in_flight == 5

        async def run() -> None:
            task = asyncio.create_task(backend.agenerate("p", SamplingParams(seed=1), n=3))
            while engine.in_flight < 3:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(run())
        deadline = time.monotonic() + 5
        while len(engine.aborted) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(engine.aborted) == sorted(r[0] for r in engine.requests)
    finally:
        backend.close()


def test_vllm_weight_sync_calls_and_start_failure(fake_vllm):
    backend = make_backend(ModelSettings(model="ckpt", backend="vllm"))
    try:
        [engine] = fake_vllm.made
        assert backend.apply_model(lambda m: f"loaded into {m}") == ["loaded into fake-model"]
        backend.reset_prefix_cache()
        assert engine.rpcs[0][0] == "apply_model" and engine.prefix_resets == 1
    finally:
        backend.close()
    fake_vllm.fail_with = ValueError("No supported config format found in ckpt\nmore detail")
    with pytest.raises(ProverError, match="vLLM cannot load 'ckpt': No supported config format found in ckpt$"):
        make_backend(ModelSettings(model="ckpt", backend="vllm"))


def test_make_backend_errors():
    with pytest.raises(ProverError, match="no model given"):
        make_backend(ModelSettings(model=None))
    with pytest.raises(ProverError, match="cannot load model"):
        make_backend(ModelSettings(model="/nonexistent/checkpoint", backend="transformers", device="cpu"))


def test_vllm_close_asks_for_a_short_shutdown_grace(fake_vllm):
    """vLLM's default 5 s SIGTERM grace ended in a kill on every H200 close; the backend asks for its own."""
    from prover.generate.vllm_engine import ENGINE_SHUTDOWN_GRACE_S

    backend = make_backend(ModelSettings(model="ckpt", backend="vllm"))
    [engine] = fake_vllm.made
    backend.close()
    assert engine.shut_down and engine.shutdown_timeout == ENGINE_SHUTDOWN_GRACE_S < 5
    backend.close()  # a second close is a no-op
