"""The streaming runner over a FAKE engine and a FAKE Lean checker (tests/fakes/fake_engine.py): memory over a long
run and overlap of generation with verification.

    PYTHONPATH=. python bench/runner_stream.py [--problems 100 --samples 100] [--gen-ms 20 --lean-ms 20]
        [--in-flight 256 --lean-workers 8] [--out runner_stream.json]

Every (problem, attempt) is one `sample` attempt of the real `ProveRecipe` through `prover.runner.drive` into a
real run store (SQLite, synchronous=FULL) in a temporary directory: prompt rendering, extraction, the store
writes are the real code; only the model and Lean are fakes with fixed latencies. Reports wall time against
generation alone and Lean alone (the sum is what a run that alternates them would take), and the process's RSS
sampled every 10% of the run (flat = the runner holds O(in-flight) state, not O(attempts)). Prints a table;
writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the fakes live with the tests

from fakes.fake_engine import FakeLatencyBackend, FakeLatencyChecker  # noqa: E402

from data.problem import Problem  # noqa: E402
from data.store import RunStore  # noqa: E402
from prover.recipe import ProveRecipe  # noqa: E402
from prover.runner import AsyncChecker, Engine, LocalExecutor, WorkUnit, run_units  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=100)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--gen-ms", type=float, default=20.0)
    ap.add_argument("--lean-ms", type=float, default=20.0)
    ap.add_argument("--in-flight", type=int, default=256)
    ap.add_argument("--lean-workers", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "runner_stream.json")
    args = ap.parse_args()

    problems = [Problem(f"p{i:04d}", f"theorem p{i:04d} (n : ℕ) : n + {i} = {i} + n := by", header="import Mathlib\n")
                for i in range(args.problems)]
    units = (WorkUnit(p, i) for i in range(args.samples) for p in problems)
    total = args.problems * args.samples
    backend = FakeLatencyBackend(args.gen_ms / 1000, args.in_flight)
    checker = FakeLatencyChecker(args.lean_ms / 1000, args.lean_workers)
    recipe = ProveRecipe("sample", {}, seed=0)
    rss: list[tuple[int, float]] = [(0, rss_mb())]

    def sample_rss(_unit, _attempt) -> None:
        done = sample_rss.n = getattr(sample_rss, "n", 0) + 1
        if done % max(1, total // 10) == 0:
            rss.append((done, rss_mb()))

    with tempfile.TemporaryDirectory() as tmp, RunStore(Path(tmp) / "run") as store:
        run_id = store.start_run("bench", {})
        executor = LocalExecutor(recipe, engine=Engine(backend),
                                 checker=AsyncChecker(checker, capacity=2 * args.lean_workers))
        t0 = time.perf_counter()
        stats = run_units(units, executor, store, run_id, on_result=sample_rss)
        wall = time.perf_counter() - t0
        proved = sum(1 for _ in store.iter_attempts(run_id, status="proved"))
    gen_alone = total * args.gen_ms / 1000 / args.in_flight  # the engine's own time for all requests
    lean_alone = total * args.lean_ms / 1000 / args.lean_workers
    result = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "args": {k: str(v) for k, v in vars(args).items()},
        "attempts": total, "recorded": stats.recorded, "proved": proved, "wall_s": round(wall, 2),
        "generation_alone_s": round(gen_alone, 2), "lean_alone_s": round(lean_alone, 2),
        # with zero latencies (--gen-ms 0 --lean-ms 0) only the runner's own cost per attempt is left
        "wall_over_max": round(wall / max(gen_alone, lean_alone), 2) if gen_alone or lean_alone else None,
        "wall_over_sum": round(wall / (gen_alone + lean_alone), 2) if gen_alone or lean_alone else None,
        "attempts_per_s": round(total / wall, 1), "rss_mb": [(n, round(m, 1)) for n, m in rss],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(f"{'attempts':>9} {'wall s':>8} {'gen alone s':>12} {'Lean alone s':>13} {'wall/max':>9} {'wall/sum':>9} "
          f"{'attempts/s':>11} {'peak RSS MB':>12}")
    print(f"{total:>9} {result['wall_s']:>8} {result['generation_alone_s']:>12} {result['lean_alone_s']:>13} "
          f"{str(result['wall_over_max']):>9} {str(result['wall_over_sum']):>9} {result['attempts_per_s']:>11} "
          f"{result['peak_rss_mb']:>12}")
    print("RSS (MB) after N attempts: " + ", ".join(f"{n}: {m:.1f}" for n, m in result["rss_mb"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
