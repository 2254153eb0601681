"""The CPU a run spends in this process on each candidate before Lean sees it: extraction from the completion
(`prover.prompts.candidate_proof`) and the verifier's preparation (`Verifier.prepare`: imports, the soundness
scan in every string reading, redefinitions, the statement's own declarations). It holds the GIL, so it bounds
how many candidates per second one process can hand to Lean, and at the end of a run whose completions finish
together (random weights, all cut at --max-tokens) it is the tail that follows the last answer.

    PYTHONPATH=. python bench/check_cost.py [--candidates 400 --tokens 512] [--out check_cost.json]

Two kinds of completion, both continuing the `complete` prompt of the first `--problems` miniF2F-test problems:
`random`: `--tokens` random ids of the BPE tokenizer trained on the benchmark statements, decoded (what
bench/e2e_gpu.py's random-weight checkpoint writes); `proof`: a plausible tactic proof of about the same length
(no Lean runs: only the text work is timed). Each kind is timed in one thread after a warm-up, on texts it
has not seen (the lexer's caches are cleared), as CPU time of this thread. Prints a table; writes JSON.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from results import write_result  # noqa: E402

from data.registry import load_problems  # noqa: E402
from lean_env import text  # noqa: E402
from lean_env.verifier import Verifier  # noqa: E402
from prover.prompts.extract import candidate_proof  # noqa: E402

TACTICS = ["intro h", "nlinarith [sq_nonneg (x - 1), sq_nonneg (x + 1)]", "norm_num at h ⊢", "simp only [pow_two]",
           "have h2 : 0 < x := by positivity", "rcases h with ⟨a, rfl⟩", "field_simp", "ring_nf", "omega",
           "linarith [mul_pos ha hb]", "-- the key step: bound the square", "exact le_of_lt h2", "constructor"]


def completions(kind: str, n: int, tokens: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    if kind == "random":
        from prover.model.tokenizer import build_test_tokenizer

        tok = build_test_tokenizer(vocab_size=32000, limit=5000)
        return [tok.decode([rng.randrange(len(tok)) for _ in range(tokens)]) for _ in range(n)]
    lines = max(1, tokens // 12)  # about 12 tokens per tactic line
    return ["\n".join("  " + rng.choice(TACTICS) for _ in range(lines)) + "\n```" for _ in range(n)]


def clear_caches() -> None:
    """Forget every text the lexer's caches hold (names looked up: older revisions lack some, see --before)."""
    for name in ("_tokens", "mask", "_commands", "_declarations", "normalize"):
        cached = getattr(text, name, None)
        if cached is not None and hasattr(cached, "cache_clear"):
            cached.cache_clear()


def time_kind(kind: str, problems: list, args: argparse.Namespace) -> dict:
    verifier = Verifier(None)  # prepare only: no REPL
    warm = completions(kind, 8, args.tokens, args.seed + 1)
    for i, c in enumerate(warm):
        cand = candidate_proof(c, problems[i % len(problems)], True)
        if cand:
            verifier.prepare(problems[i % len(problems)], cand)
    texts = completions(kind, args.candidates, args.tokens, args.seed)
    clear_caches()
    t0 = time.thread_time()
    cands = [candidate_proof(c, problems[i % len(problems)], True) for i, c in enumerate(texts)]
    t1 = time.thread_time()
    for i, cand in enumerate(cands):
        if cand:
            verifier.prepare(problems[i % len(problems)], cand)
    t2 = time.thread_time()
    n = len(texts)
    return {"kind": kind, "candidates": n, "chars": round(sum(map(len, texts)) / n),
            "extract_ms": round((t1 - t0) / n * 1e3, 3), "prepare_ms": round((t2 - t1) / n * 1e3, 3),
            "total_ms": round((t2 - t0) / n * 1e3, 3), "candidates_per_s": round(n / (t2 - t0), 1)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--candidates", type=int, default=400)
    ap.add_argument("--tokens", type=int, default=512, help="completion length in tokens")
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--set", default="minif2f-test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "check_cost.json")
    args = ap.parse_args(argv)
    problems = load_problems(args.set)[: args.problems]
    rows = [time_kind(kind, problems, args) for kind in ("random", "proof")]
    print("| completions | candidates | chars | extract ms | prepare ms | total ms | candidates/s (one core) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['kind']} | {r['candidates']} | {r['chars']} | {r['extract_ms']} | {r['prepare_ms']} "
              f"| {r['total_ms']} | {r['candidates_per_s']:,} |")
    return write_result("check_cost", vars(args), rows, args.out)


if __name__ == "__main__":
    main()
