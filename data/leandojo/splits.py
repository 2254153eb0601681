"""Benchmark splits of traced theorems (random, and LeanDojo's novel-premises scheme) written in the
Benchmark 4 layout."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from data.errors import DataError
from data.leandojo.format import STRATEGIES, CorpusFile, TracedTheorem

Split = dict[str, list[TracedTheorem]]


def _sizes(n: int, num_val: int | None, num_test: int | None) -> tuple[int, int]:
    """LeanDojo Benchmark 4 holds out 2000 + 2000; a small repository holds out a tenth each."""
    default = min(2000, n // 10)
    return (default if num_val is None else num_val), (default if num_test is None else num_test)


def split_randomly(
    theorems: list[TracedTheorem], num_val: int | None = None, num_test: int | None = None, seed: int = 3407
) -> Split:
    nv, nt = _sizes(len(theorems), num_val, num_test)
    shuffled = list(theorems)
    random.Random(seed).shuffle(shuffled)
    n_train = max(0, len(shuffled) - nv - nt)
    return {
        "train": shuffled[:n_train],
        "val": shuffled[n_train : n_train + nv],
        "test": shuffled[n_train + nv :],
    }


def split_by_premise(
    theorems: list[TracedTheorem], num_val: int | None = None, num_test: int | None = None, seed: int = 3407
) -> Split:
    """Held-out theorems each use at least one premise that no training theorem uses (LeanDojo's scheme:
    take the premises used by the fewest theorems first and move all their users to val/test)."""
    nv, nt = _sizes(len(theorems), num_val, num_test)
    users: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(theorems):
        for p in dict.fromkeys(t.premise_names()):
            users[p].append(i)
    held: dict[int, None] = {}
    for _, idx in sorted(users.items(), key=lambda kv: (len(kv[1]), kv[0])):
        if len(held) >= nv + nt:
            break
        held.update(dict.fromkeys(idx))
    held_out = [theorems[i] for i in held]
    random.Random(seed).shuffle(held_out)
    return {
        "train": [t for i, t in enumerate(theorems) if i not in held],
        "val": held_out[:nv],
        "test": held_out[nv:],
    }


def write_benchmark(
    out_dir: str | Path,
    theorems: list[TracedTheorem],
    corpus: Iterable[CorpusFile],
    metadata: dict[str, Any] | None = None,
    num_val: int | None = None,
    num_test: int | None = None,
    seed: int = 3407,
) -> dict[str, dict[str, int]]:
    """Write theorems in the LeanDojo Benchmark 4 layout (both split strategies) plus corpus.jsonl.

    Returns the number of theorems per strategy and split. Refuses to overwrite an existing benchmark.
    """
    out = Path(out_dir)
    if any((out / s).exists() for s in STRATEGIES):
        raise DataError(f"{out} already holds a benchmark; choose an empty --out directory")
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, dict[str, int]] = {}
    for strategy, split_fn in (("random", split_randomly), ("novel_premises", split_by_premise)):
        (out / strategy).mkdir()
        splits = split_fn(theorems, num_val, num_test, seed)
        counts[strategy] = {}
        for name, thms in splits.items():
            with (out / strategy / f"{name}.json").open("w", encoding="utf-8") as f:
                json.dump([t.to_json() for t in thms], f, ensure_ascii=False)
            counts[strategy][name] = len(thms)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for cf in corpus:
            f.write(json.dumps(cf.to_json(), ensure_ascii=False) + "\n")
    (out / "metadata.json").write_text(json.dumps({**(metadata or {}), "splits": counts}, indent=2))
    return counts
