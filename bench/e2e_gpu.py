"""The main job at the engine's speed? `subgoal eval` end to end versus the same engine fed everything at once.

    # H200 (vLLM in /tmp/site; the benchmarks carried in .bench-data, see --data-dir):
    PYTHONPATH=/tmp/site:. VLLM_USE_FLASHINFER_SAMPLER=0 python bench/e2e_gpu.py --data-dir .bench-data
    # CPU smoke test of everything but vLLM:
    PYTHONPATH=. python bench/e2e_gpu.py --device cpu --preset tiny --problems 2 --samples 4 --max-tokens 8

One run, one random-weight checkpoint (`prover.model` `--preset`, bf16 on GPU, with a BPE tokenizer trained on
the benchmark statements; random weights write no Lean, so nothing is proved), the first `--problems` problems
of `--set`, `--samples` samples each, at most `--max-tokens` new tokens, temperature 1, top-p 0.95:

  (a) all at once: one `generate` over every problem x sample (the prompts `subgoal eval` renders, its stop
      strings), timed after a warm-up: the engine's throughput with everything queued;
  (b) `subgoal eval SET --backend B -k S -n S --limit P --max-tokens T` through the CLI entry function, in this
      process, candidates checked by the FAKE Lean REPL (tests/fakes/fake_lean.py; no Lean exists on the GPU host):
      completion tokens/s from the moment its engine is ready to the end of the run (engine start-up is the
      same fixed cost for both and is reported apart); the target is (b)/(a) >= 0.9;
  (n) as (b), with the candidates' text work (extraction, the verifier's preparation) in this process
      (SUBGOAL_TEXT_PROCESSES=0) instead of the runner's text worker processes: what those buy;
  (c) as (b), but every proof check takes `--lean-latency` seconds more (FAKE_LEAN_DELAY_S) on `--lean-workers`
      REPL processes: wall time against max(generation, Lean) and against their sum, where generation is (b)'s
      time and Lean is the checker alone: proofs checked x latency / workers.

Prints a table; writes JSON to $OUT/e2e_gpu.json (or --out). A part that fails is recorded with its error and
the others still run.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from results import write_result  # noqa: E402

FAKE_LEAN = REPO / "tests" / "fakes" / "fake_lean.py"
TEMPERATURE, TOP_P = 1.0, 0.95


def build_checkpoint(preset: str, directory: Path, device: str, seed: int) -> tuple[Path, int]:
    """A random `preset` model with a BPE tokenizer trained on the benchmark statements; (path, vocab size)."""
    from prover.model import DeepSeekV3, ModelConfig
    from prover.model.tokenizer import build_test_tokenizer

    tok = build_test_tokenizer(vocab_size=32000 if preset != "tiny" else 1024, limit=5000)
    config = ModelConfig.preset(preset, vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                                eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    model = DeepSeekV3(config)
    path = model.save_pretrained(directory, tokenizer=tok, dtype=torch.bfloat16 if device.startswith("cuda") else None)
    del model
    gc.collect()
    return Path(path), len(tok)


def make_backend(args: argparse.Namespace, checkpoint: Path) -> Any:
    if args.backend == "vllm":
        from prover.generate.vllm_engine import VLLMBackend

        return VLLMBackend(checkpoint, dtype="bfloat16", gpu_memory_utilization=args.gpu_memory_utilization)
    from prover.generate.hf import TransformersBackend

    return TransformersBackend(str(checkpoint), device=args.device, batch_size=args.batch_size)


def all_at_once(args: argparse.Namespace, checkpoint: Path, problems: list[Any]) -> dict[str, Any]:
    """(a): every problem x sample in one `generate` call, after a short warm-up."""
    from prover.generate import format_chat
    from prover.generate.base import SamplingParams
    from prover.prompts import load_prompts

    t0 = time.perf_counter()
    backend = make_backend(args, checkpoint)
    startup = time.perf_counter() - t0
    try:
        prompt_set = load_prompts()
        prompts = [prompt_set.render("complete", p, chat_format=lambda t: format_chat(backend, t)) for p in problems]
        params = SamplingParams(temperature=TEMPERATURE, top_p=TOP_P, max_tokens=args.max_tokens, seed=args.seed,
                                stop=tuple(prompt_set["complete"].stop))
        backend.generate(prompts[:2], SamplingParams(temperature=TEMPERATURE, max_tokens=8), n=2)  # warm-up
        sync()
        cpu = ProcessCpu()
        t0 = time.perf_counter()
        out = backend.generate(prompts, params, n=args.samples)
        sync()
        seconds = time.perf_counter() - t0
        cpu_a = cpu.since()
        tasks_row = engine_tasks(backend, prompts, params, args.samples) if "t" in args.parts else None
    finally:
        t_close = time.perf_counter()
        backend.close()
        close_s = time.perf_counter() - t_close
        free_memory()
    flat = [c for row in out for c in row]
    tokens = sum(c.completion_tokens for c in flat)
    row = {"part": "a: all at once", "sequences": len(flat), "completion_tokens": tokens,
           "at_max_tokens": sum(c.finish_reason == "length" for c in flat), "seconds": round(seconds, 3),
           "tokens_per_s": round(tokens / seconds, 1), "startup_s": round(startup, 1), "close_s": round(close_s, 2),
           "cpu_s": cpu_a}
    return row if tasks_row is None else {**row, "engine_tasks": tasks_row}


def engine_tasks(backend: Any, prompts: list[str], params: Any, samples: int) -> dict[str, Any]:
    """(t), on (a)'s warm engine: one asyncio task per sample through the runner's `Engine`, as `subgoal eval`
    feeds it, without the run around it (no store, no Lean, no strategy): the feeding path alone."""
    import asyncio
    from dataclasses import replace

    from prover.generate.base import sample_seed
    from prover.runner import Engine, run_async

    engine = Engine(backend)

    async def every_sample() -> list[Any]:
        return await asyncio.gather(*(engine.generate(p, replace(params, seed=sample_seed(params.seed, j)), 1)
                                      for p in prompts for j in range(samples)))

    cpu = ProcessCpu()
    t0 = time.perf_counter()
    out = run_async(every_sample())
    seconds = time.perf_counter() - t0
    tokens = sum(c.completion_tokens for row in out for c in row)
    return {"sequences": len(out), "completion_tokens": tokens, "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 1), "cpu_s": cpu.since()}


class ProcessCpu:
    """Bench-only: CPU seconds since construction of each thread of this process (by Python thread name) and
    of each child process (vLLM's engine core, REPLs), from /proc: where the host's CPU went during a part,
    e.g. whether one thread (the GIL) is saturated while the GPU waits. Empty where /proc is absent."""

    def __init__(self) -> None:
        self.start = self.snapshot()
        self.seen = dict(self.start)

    def poll(self) -> None:
        """Keep the latest figure of every thread and child: one that ends before `since` still counts."""
        for k, v in self.snapshot().items():
            self.seen[k] = max(self.seen.get(k, 0.0), v)

    @staticmethod
    def snapshot() -> dict[str, float]:
        import threading

        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        names = {t.native_id: t.name for t in threading.enumerate()}
        out: dict[str, float] = {}

        def cpu(stat_path: Path) -> float:
            fields = stat_path.read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick  # utime, stime

        try:
            for task in Path("/proc/self/task").iterdir():
                name = names.get(int(task.name), f"native-{task.name}")
                out[f"thread {name}"] = out.get(f"thread {name}", 0.0) + cpu(task / "stat")
            me = str(os.getpid())
            for proc in Path("/proc").iterdir():
                if proc.name.isdigit():
                    with contextlib.suppress(OSError, IndexError, ValueError):
                        stat = (proc / "stat").read_text()
                        if stat.rsplit(")", 1)[1].split()[1] == me:
                            comm = stat.split("(", 1)[1].rsplit(")", 1)[0]
                            out[f"child {comm} {proc.name}"] = cpu(proc / "stat")
        except OSError:
            return {}
        return out

    def since(self, top: int = 8) -> dict[str, float]:
        self.poll()
        used = {k: round(v - self.start.get(k, 0.0), 2) for k, v in self.seen.items()}
        used = {k: v for k, v in sorted(used.items(), key=lambda kv: -kv[1]) if v > 0.05}
        return dict(list(used.items())[:top])


class ReadyClock:
    """Bench-only instrumentation: notes when the run's backend has finished starting (its constructor
    returned), when the first request reached it and when the last answer left it, and keeps the instances, so
    they can be closed after the CLI returns. The phases tell set-up after the engine is ready from generation."""

    def __init__(self, cpu: ProcessCpu | None = None) -> None:
        self.cpu = cpu
        self.ready: float | None = None
        self.first_request: float | None = None
        self.last_answer: float | None = None
        self.built: list[Any] = []
        self.drive_end: float | None = None  # the runner's driver returned (every attempt checked and recorded)
        self.close: tuple[float, float] | None = None  # the executor's close (waits for the engine's, closes Lean)
        self.engine_close: tuple[float, float] | None = None  # the backend's own close (begun early, in the background)
        self.in_flight = 0  # agenerate calls in progress
        self.answered = 0
        self.timeline: list[tuple[float, int, int]] = []  # (seconds since ready, in flight, answered), every 0.5 s
        self._sampling = False

    def _sample(self) -> None:
        while self._sampling:
            if self.ready is not None:
                self.timeline.append((round(time.perf_counter() - self.ready, 1), self.in_flight, self.answered))
            time.sleep(0.5)  # (no /proc reading here: each read gives the GIL up, and waiting to get it back
            # behind the busy engine thread starved this sampler for seconds: the CPU is polled at the close)

    @contextlib.contextmanager
    def watching(self, backend_name: str):
        if backend_name == "vllm":
            from prover.generate.vllm_engine import VLLMBackend as cls
        else:
            from prover.generate.hf import TransformersBackend as cls
        original_init, original_agenerate, original_backend_close = cls.__init__, cls.agenerate, cls.close
        clock = self

        def init(backend: Any, *a: Any, **kw: Any) -> None:
            original_init(backend, *a, **kw)
            clock.built.append(backend)
            if clock.ready is None:
                clock.ready = time.perf_counter()

        async def agenerate(backend: Any, *a: Any, **kw: Any) -> Any:
            if clock.first_request is None:
                clock.first_request = time.perf_counter()
            clock.in_flight += 1
            try:
                out = await original_agenerate(backend, *a, **kw)
            finally:
                clock.in_flight -= 1
            clock.answered += 1
            clock.last_answer = time.perf_counter()
            return out

        def backend_close(backend: Any) -> None:
            t0 = time.perf_counter()
            try:
                original_backend_close(backend)
            finally:
                if clock.engine_close is None:
                    clock.engine_close = (t0, time.perf_counter())

        import threading

        from eval import harness
        from prover.runner import LocalExecutor

        original_drive, original_close = harness.drive, LocalExecutor.close

        async def drive(*a: Any, **kw: Any) -> Any:
            out = await original_drive(*a, **kw)
            clock.drive_end = time.perf_counter()
            return out

        def close(executor: Any) -> None:
            if clock.cpu is not None:
                clock.cpu.poll()  # the engine's threads and processes end in the close
            t0 = time.perf_counter()
            original_close(executor)
            clock.close = (t0, time.perf_counter())

        harness.drive, LocalExecutor.close = drive, close
        cls.__init__, cls.agenerate, cls.close = init, agenerate, backend_close
        self._sampling = True
        sampler = threading.Thread(target=self._sample, daemon=True)
        sampler.start()
        try:
            yield self
        finally:
            self._sampling = False
            harness.drive, LocalExecutor.close = original_drive, original_close
            cls.__init__, cls.agenerate, cls.close = original_init, original_agenerate, original_backend_close
            for backend in self.built:
                backend.close()


def through_eval(args: argparse.Namespace, checkpoint: Path, workdir: Path, lean_delay_s: float,
                 text_processes: int | None = None) -> dict[str, Any]:
    """(b) / (c): `subgoal eval` through the CLI entry function, candidates to the FAKE Lean; `text_processes`:
    SUBGOAL_TEXT_PROCESSES for the run (None: the runner's own choice, 0: the text work in this process)."""
    from data.store import RunStore
    from eval.cli import main as cli

    out = workdir / f"eval-lean{lean_delay_s:g}"
    argv = ["eval", args.set, "--model", str(checkpoint), "--backend", args.backend, "-k", str(args.samples),
            "-n", str(args.samples), "--limit", str(args.problems), "--max-tokens", str(args.max_tokens),
            "--temperature", str(TEMPERATURE), "--top-p", str(TOP_P), "--seed", str(args.seed),
            "--lean-workers", str(args.lean_workers), "--lean-timeout", "600", "--out", str(out)]
    env = {"SUBGOAL_LEAN__REPL_PATH": str(FAKE_LEAN), "FAKE_LEAN_DELAY_S": str(lean_delay_s),
           "SUBGOAL_MODEL__DEVICE": args.device, "SUBGOAL_MODEL__DTYPE": "bfloat16" if args.backend == "vllm" else "auto"}
    if text_processes is not None:
        env["SUBGOAL_TEXT_PROCESSES"] = str(text_processes)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    cpu = ProcessCpu()
    clock = ReadyClock(cpu)
    t0 = time.perf_counter()
    code = 0
    try:
        with clock.watching(args.backend):
            try:
                cli(argv)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            end = time.perf_counter()
            cpu_used = cpu.since()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        free_memory()
    if code != 0:
        raise RuntimeError(f"`subgoal {' '.join(argv)}` exited with {code}")
    report = json.loads((out / "report.json").read_text())
    cost = report["cost"]
    with RunStore(out, create=False) as store:  # proofs that reached the checker (text without Lean code does not)
        checked = sum(a.timings.get("lean_wall_s", 0) > 0 for a in store.attempts(store.runs()[-1].id))
    ready = clock.ready if clock.ready is not None else t0
    seconds = end - ready
    tokens = int(cost["completion_tokens"])
    name = "c" if lean_delay_s else "b" if text_processes is None else f"n: (b) with {text_processes} text processes"
    return {"part": f"{name}: subgoal eval, fake Lean +{lean_delay_s:g}s/proof",
            "sequences": int(cost["attempts"]), "completion_tokens": tokens, "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 1), "startup_s": round(ready - t0, 1),
            "cli_wall_s": round(end - t0, 1), "proofs_checked": checked, "lean_delay_s": lean_delay_s,
            # where the window went: ready -> first request (run set-up), first request -> last answer, -> end
            "setup_after_ready_s": phase(ready, clock.first_request),
            "requests_s": phase(clock.first_request, clock.last_answer), "after_last_s": phase(clock.last_answer, end),
            # ... and after the last answer: its checks and records, the report, then the executor's close (which
            # waits for the engine's close, begun in the background once no attempt could generate), then the rest
            "last_checks_s": phase(clock.last_answer, clock.drive_end),
            "report_s": phase(clock.drive_end, clock.close[0] if clock.close else None),
            "close_s": phase(*clock.close) if clock.close else None,
            "after_close_s": phase(clock.close[1] if clock.close else None, end),
            "engine_close_begins_s": phase(clock.last_answer, clock.engine_close[0] if clock.engine_close else None),
            "engine_close_s": phase(*clock.engine_close) if clock.engine_close else None,
            # the checker alone, busy on nothing but the injected latency, over its workers
            "lean_s": round(checked * lean_delay_s / args.lean_workers, 2), "argv": argv,
            "cpu_s": cpu_used, "timeline": clock.timeline}


def phase(start: float | None, stop: float | None) -> float | None:
    return None if start is None or stop is None else round(stop - start, 2)


def sync() -> None:
    # Only where this process runs the model (transformers): touching CUDA here before vLLM starts would force
    # its workers from fork to spawn and hold a context's memory; vLLM's generate returns finished outputs.
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    GPU_MEMORY.wait_until_free()


class GpuMemory:
    """GPU memory in use, as nvidia-smi reports it (asking torch would start CUDA in this process, see `sync`):
    a vLLM engine's worker process can outlive its shutdown call by seconds, and the next engine sizes its KV
    cache from what is free, so each part waits until usage is back to what it was at the start."""

    def __init__(self) -> None:
        self.baseline = self.used_mib()

    @staticmethod
    def used_mib() -> int | None:
        import shutil
        import subprocess

        if shutil.which("nvidia-smi") is None:
            return None
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10).stdout
            return sum(int(x) for x in out.split())
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return None

    def wait_until_free(self, slack_mib: int = 2048, timeout_s: float = 90.0) -> None:
        if self.baseline is None:
            return
        deadline = time.monotonic() + timeout_s
        while (used := self.used_mib()) is not None and used > self.baseline + slack_mib:
            if time.monotonic() > deadline:
                print(f"warning: {used} MiB of GPU memory still in use after {timeout_s:g}s", file=sys.stderr)
                return
            time.sleep(1)


GPU_MEMORY = GpuMemory()


def attempt(name: str, fn: Any, rows: list[dict[str, Any]], again: str = "") -> dict[str, Any] | None:
    print(f"{name} ...", file=sys.stderr, flush=True)
    try:
        row = fn()
        row["part"] += again
    except Exception as e:  # one part failing must not lose the others' numbers
        traceback.print_exc()
        rows.append({"part": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"})
        return None
    print(f"  {row['tokens_per_s']:,} completion tokens/s over {row['seconds']}s", file=sys.stderr, flush=True)
    rows.append(row)
    return row


def environment(args: argparse.Namespace, checkpoint: Path, vocab: int) -> dict[str, Any]:
    from data.store import collect_versions

    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    return collect_versions({"device": device, "cpus": os.cpu_count(), "checkpoint": str(checkpoint),
                             "preset": args.preset, "vocab": vocab})


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cuda = torch.cuda.is_available()
    ap.add_argument("--device", default="cuda" if cuda else "cpu")
    ap.add_argument("--backend", choices=["vllm", "transformers"], help="default: vllm on cuda, else transformers")
    ap.add_argument("--preset", default="small", help="prover.model preset of the random checkpoint")
    ap.add_argument("--checkpoint", type=Path, help="use this HF-format checkpoint (with tokenizer) instead")
    ap.add_argument("--set", default="minif2f-test", help="problem set, as `subgoal eval` takes it")
    ap.add_argument("--data-dir", type=Path, help="benchmark directory (sets SUBGOAL_DATA_DIR); on the GPU host, "
                    "carry a copy of the benchmarks there")
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--samples", type=int, default=32, help="samples per problem (= eval's -k and -n)")
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--lean-latency", type=float, default=0.3, help="(c): extra seconds per proof check; 0 skips (c)")
    ap.add_argument("--lean-workers", type=int, default=max(1, (os.cpu_count() or 2) - 4))
    ap.add_argument("--parts", default="atbc", help="which of a, t (engine tasks, on a's engine), b, n ((b) with "
                    "the candidates' text work in-process), c to run, in order; a letter repeated runs that part again "
                    "(b twice: cold, then warm caches)")
    ap.add_argument("--batch-size", type=int, default=64, help="transformers backend: rows per padded batch")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    ap.add_argument("--threads", type=int, help="torch CPU threads (default 1 on --device cpu: on a shared, "
                    "oversubscribed box more threads made the tiny model 10x slower, measured)")
    ap.add_argument("--workdir", type=Path, help="checkpoint and run directories (default: a temp dir)")
    ap.add_argument("--out", type=Path, help="JSON output (default $OUT/e2e_gpu.json, else ./e2e_gpu.json)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.backend = args.backend or ("vllm" if args.device.startswith("cuda") else "transformers")
    if args.data_dir is not None:
        os.environ["SUBGOAL_DATA_DIR"] = str(args.data_dir.resolve())
    torch.set_num_threads(args.threads or (1 if args.device == "cpu" else max(1, min(8, os.cpu_count() or 1))))

    from data.registry import load_problems

    problems = load_problems(args.set)[: args.problems]  # fails here, clearly, when the set's data is absent
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="e2e-gpu-"))
    vocab = 0
    if args.checkpoint is not None:
        checkpoint = args.checkpoint
    else:
        print(f"saving a random `{args.preset}` checkpoint to {workdir / 'ckpt'}", file=sys.stderr)
        checkpoint, vocab = build_checkpoint(args.preset, workdir / "ckpt", args.device, args.seed)

    rows: list[dict[str, Any]] = []
    a = b = c = None
    env = environment(args, checkpoint, vocab)
    settings = {"set": args.set, "problems": len(problems), "samples": args.samples, "max_tokens": args.max_tokens,
                "temperature": TEMPERATURE, "top_p": TOP_P, "backend": args.backend,
                "lean_workers": args.lean_workers, "lean_latency_s": args.lean_latency}
    out = args.out or Path(os.environ.get("OUT", ".")) / "e2e_gpu.json"
    result: dict[str, Any] = {}
    for n, part in enumerate(args.parts):
        again = f" (run {args.parts[:n + 1].count(part)})" if args.parts.count(part) > 1 else ""
        if part == "a":
            a = attempt(f"a: all at once{again}", lambda: all_at_once(args, checkpoint, problems), rows,
                        again) or a
            if a and "engine_tasks" in a:
                rows.append({"part": f"t: one Engine task per sample, on (a)'s engine{again}", **a["engine_tasks"],
                             "startup_s": 0})
        elif part == "b":
            b = attempt(f"b: subgoal eval{again}", lambda n=n: through_eval(args, checkpoint, workdir / f"b{n}", 0.0),
                        rows, again) or b
        elif part == "n":  # (b) with the candidates' text work in this process: what the text workers buy
            attempt(f"n: subgoal eval, text work in-process{again}",
                    lambda n=n: through_eval(args, checkpoint, workdir / f"n{n}", 0.0, text_processes=0), rows, again)
        elif part == "c" and args.lean_latency > 0:
            c = attempt(f"c: subgoal eval + Lean latency{again}",
                        lambda n=n: through_eval(args, checkpoint, workdir / f"c{n}", args.lean_latency), rows,
                        again) or c
        # after every part: a timed-out run keeps the parts it finished
        result = write_result("e2e_gpu", settings, rows, out, environment=env, summary=summarize(a, b, c),
                              partial=n + 1 < len(args.parts))
    print(table(rows, result["summary"]))
    return result


def summarize(a: dict | None, b: dict | None, c: dict | None) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    if a and b:
        summary["b_over_a"] = round(b["tokens_per_s"] / a["tokens_per_s"], 3)
        if b.get("requests_s"):  # generation alone: first request to last answer (set-up and report left out)
            summary["b_requests_over_a"] = round(b["completion_tokens"] / b["requests_s"] / a["tokens_per_s"], 3)
        if b.get("close_s") is not None:  # (a) closes its engine outside its window: the same fixed cost left out of (b)
            summary["b_without_close_over_a"] = round(
                b["completion_tokens"] / (b["seconds"] - b["close_s"]) / a["tokens_per_s"], 3)
        tasks = a.get("engine_tasks")
        if tasks:  # (t) runs on (a)'s engine once it is warm: the engine's best in this run
            summary["b_over_t"] = round(b["tokens_per_s"] / tasks["tokens_per_s"], 3)
    if b and c:
        gen, lean = b["seconds"], c["lean_s"]
        summary.update(generation_s=gen, lean_s=round(lean, 1), max_s=round(max(gen, lean), 1),
                       sum_s=round(gen + lean, 1), c_wall_s=c["seconds"],
                       c_over_max=round(c["seconds"] / max(gen, lean), 3))
    return summary


def table(rows: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    lines = ["| part | sequences | completion tokens | seconds | tokens/s | start-up s |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['part']} | error: {r['error']} | | | | |")
        else:
            lines.append(f"| {r['part']} | {r['sequences']} | {r['completion_tokens']:,} | {r['seconds']} "
                         f"| {r['tokens_per_s']:,} | {r['startup_s']} |")
    if "b_over_a" in summary:
        lines.append(f"\n(b)/(a) completion tokens/s: {summary['b_over_a']} (target >= 0.9); over (b)'s first "
                     f"request to last answer only: {summary.get('b_requests_over_a')}")
        lines.append(f"(b)/(a) without (b)'s engine close: {summary.get('b_without_close_over_a')}; (b) over (t), the "
                     f"warm engine: {summary.get('b_over_t')}")
    for r in rows:
        if r.get("requests_s") is not None:
            lines.append(f"{r['part']}: {r['setup_after_ready_s']}s set-up after the engine was ready, "
                         f"{r['requests_s']}s from first request to last answer, {r['after_last_s']}s after "
                         f"({r.get('last_checks_s')}s checking and recording the last answers, {r.get('report_s')}s "
                         f"the report, {r.get('close_s')}s closing (waiting for the engine, the Lean pool), "
                         f"{r.get('after_close_s')}s after; the engine's own close began {r.get('engine_close_begins_s')}s "
                         f"after the last answer and took {r.get('engine_close_s')}s)")
    for r in rows:
        if r.get("cpu_s"):
            lines.append(f"{r['part']}: CPU seconds " + ", ".join(f"{k} {v}" for k, v in r["cpu_s"].items()))
    if "c_wall_s" in summary:
        lines.append(f"(c) wall {summary['c_wall_s']}s vs max(generation {summary['generation_s']}s, Lean "
                     f"{summary['lean_s']}s) = {summary['max_s']}s and their sum {summary['sum_s']}s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
