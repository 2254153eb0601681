"""The tail of a run whose answers all arrive at once: from the last answer to the last verdict, the report and the
process being done, through the real `subgoal eval` path (`eval.harness.run_eval`) on CPU.

    PYTHONPATH=. python bench/run_tail.py [--problems 16 --samples 32] [--chars 2000] [--close-s 4.5]
        [--lean-workers 2] [--kinds random,proof] [--out run_tail.json]

What bench/e2e_gpu.py's random-weight run does at its end, without the GPU: every one of problems x samples
`sample` attempts (miniF2F-test's first `--problems`) asks a FAKE engine (tests/fakes/fake_engine.py
`FakeBurstBackend`) for its completion, and the engine answers all of them together once every request is
pending, with `--chars`-character texts: `random` (random BPE tokens decoded, what the random checkpoint writes)
or `proof` (tactic lines); its close takes `--close-s` (vLLM's shutdown takes about 4.5 s on the H200). Candidates
go to the FAKE Lean REPL (tests/fakes/fake_lean.py, answering at once) on `--lean-workers` processes; extraction,
the verifier's preparation, the REPL round trips, the store's writes and the report are the real code. Reports,
from the burst's answer: the last attempt finished (its verdict in), the last one recorded, the report written,
and the run done (the engine's close included); and when the close began. Prints a table; writes JSON.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]  # the fakes live with the tests

from check_cost import TACTICS  # noqa: E402
from fakes import FAKE_LEAN  # noqa: E402
from fakes.fake_engine import FakeBurstBackend  # noqa: E402
from results import write_result  # noqa: E402

from data.config import load_config  # noqa: E402
from eval import harness  # noqa: E402
from eval.harness import EvalSpec, run_eval  # noqa: E402
from prover.recipe import ProveRecipe  # noqa: E402
from prover.textwork import default_processes  # noqa: E402


def completion_texts(kind: str, n: int, chars: int, seed: int) -> list[str]:
    """n distinct completions of about `chars` characters (the lexer's caches never see one twice)."""
    rng = random.Random(seed)
    if kind == "random":
        from prover.model.tokenizer import build_test_tokenizer

        tok = build_test_tokenizer(vocab_size=32000, limit=5000)
        out = []
        for _ in range(n):
            text = ""
            while len(text) < chars:
                text += tok.decode([rng.randrange(len(tok)) for _ in range(128)])
            out.append(text[:chars])
        return out
    out = []
    for _ in range(n):
        lines: list[str] = []
        while sum(len(x) + 3 for x in lines) < chars:
            lines.append("  " + rng.choice(TACTICS))
        out.append("\n".join(lines) + "\n```")
    return out


class Clock:
    def __init__(self) -> None:
        self.last_attempt = 0.0  # the last attempt's coroutine returned (its verdicts in)
        self.last_record = 0.0  # the driver recorded the last attempt
        self.report = 0.0  # report.json written


CLOCK = Clock()


class BurstRecipe(ProveRecipe):
    """The production recipe with the FAKE burst engine as its generator (set on the class by `run_kind`)."""

    backend: FakeBurstBackend | None = None

    def check_generator(self) -> None:
        pass  # no model to look for

    def make_generator(self) -> FakeBurstBackend:
        assert BurstRecipe.backend is not None
        return BurstRecipe.backend

    async def arun(self, *args: Any, **kwargs: Any) -> Any:
        attempt = await super().arun(*args, **kwargs)
        CLOCK.last_attempt = time.perf_counter()
        return attempt


def run_kind(kind: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    total = args.problems * args.samples
    backend = FakeBurstBackend(completion_texts(kind, total, args.chars, args.seed), burst=total, close_s=args.close_s)
    BurstRecipe.backend = backend
    global CLOCK
    CLOCK = Clock()
    config = load_config(environ={**os.environ, "SUBGOAL_LEAN__REPL_PATH": str(FAKE_LEAN),
                                  "SUBGOAL_LEAN__WORKERS": str(args.lean_workers), "SUBGOAL_LEAN__TIMEOUT_S": "600"})
    spec = EvalSpec(args.set, out=workdir / f"run-{kind}", k=args.samples, samples=args.samples, limit=args.problems,
                    model="fake-burst", seed=args.seed, sampling={"max_tokens": 512})

    def on_result(_unit: Any, _attempt: Any) -> None:
        CLOCK.last_record = time.perf_counter()

    original_write = harness.write_report

    def write_report(report: dict[str, Any], run_dir: Path) -> Path:
        path = original_write(report, run_dir)
        CLOCK.report = time.perf_counter()
        return path

    harness.write_report = write_report
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    t0 = time.perf_counter()
    try:
        result = run_eval(spec, config, recipe_type=BurstRecipe, on_result=on_result, progress=False)
    finally:
        harness.write_report = original_write
    done = time.perf_counter()
    # CPU of the whole run: this process (runner, extraction, preparation, store) and its ended children (the
    # FAKE Lean REPLs, text workers): on a small box they share the same cores
    cpu = [round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2) for before, after in
           zip(usage, (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)),
               strict=True)]
    answer = backend.last_answer
    assert answer is not None and backend.closed is not None, "the burst never came or the engine was not closed"

    def since(t: float) -> float:
        return round(t - answer, 3)

    return {"kind": kind, "attempts": result.recorded, "chars": args.chars, "wall_s": round(done - t0, 2),
            "to_last_verdict_s": since(CLOCK.last_attempt), "to_last_record_s": since(CLOCK.last_record),
            "to_report_s": since(CLOCK.report), "close_start_s": since(backend.closed[0]),
            "close_end_s": since(backend.closed[1]), "to_done_s": since(done),
            "requests_after_close": backend.requests_after_close, "cpu_run_s": cpu[0], "cpu_children_s": cpu[1]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", default="minif2f-test")
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--chars", type=int, default=2000, help="characters per completion")
    ap.add_argument("--close-s", type=float, default=4.5, help="seconds the FAKE engine's close takes")
    ap.add_argument("--lean-workers", type=int, default=max(1, (os.cpu_count() or 2)))
    ap.add_argument("--kinds", default="random,proof")
    ap.add_argument("--text-processes", help="SUBGOAL_TEXT_PROCESSES for the runs, comma-separated to compare "
                    "(default: the runner's own choice for this machine)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "run_tail.json")
    args = ap.parse_args(argv)
    rows = []
    saved = os.environ.get("SUBGOAL_TEXT_PROCESSES")
    try:
        with tempfile.TemporaryDirectory(prefix="run-tail-") as tmp:
            for processes in (args.text_processes.split(",") if args.text_processes else [None]):
                if processes is not None:
                    os.environ["SUBGOAL_TEXT_PROCESSES"] = processes
                rows += [{**run_kind(kind, args, Path(tmp) / f"p{processes}"),
                          "text_processes": default_processes()} for kind in args.kinds.split(",")]
    finally:
        if saved is None:
            os.environ.pop("SUBGOAL_TEXT_PROCESSES", None)
        else:
            os.environ["SUBGOAL_TEXT_PROCESSES"] = saved
    print("| completions | text processes | attempts | -> last verdict s | -> last record s | -> report s "
          "| close starts s | close ends s | -> done s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['kind']} | {r['text_processes']} | {r['attempts']} | {r['to_last_verdict_s']} | {r['to_last_record_s']} "
              f"| {r['to_report_s']} | {r['close_start_s']} | {r['close_end_s']} | {r['to_done_s']} |")
    print("(seconds after the burst's answer; the close takes --close-s "
          f"{args.close_s:g} s; {args.lean_workers} FAKE Lean REPLs)")
    return write_result("run_tail", vars(args), rows, args.out)


if __name__ == "__main__":
    main()
