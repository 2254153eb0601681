"""Named problem sets, and `load_problems`: one entry point for a set name, a file or a dataset.

The registry is a table of `ProblemSet` entries (name -> description, loader, availability). A new set is
one entry in `SETS` (see the LeanDojo entries there): `load(config) -> list[Problem]`, and
`available(config) -> str | None`, which answers quickly (no loading) with the reason the set cannot be
loaded now, or None when it can.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from data import leandojo
from data.config import Config, load_config
from data.errors import DataError
from data.lean_file import load_lean
from data.loaders import hub_unreachable_reason, load_hf, load_jsonl
from data.problem import Problem

PROVERBENCH_HUB_ID = "deepseek-ai/DeepSeek-ProverBench"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ProblemSet:
    name: str
    description: str
    load: Callable[[Config], list[Problem]]
    available: Callable[[Config], str | None]
    benchmark: bool = True  # decontamination keeps its statements out of training data (not LeanDojo: Mathlib)


@dataclass
class SetStatus:
    """What `subgoal data list` shows for one registered set."""

    name: str
    description: str
    reason: str | None  # why it is unavailable; None when it loaded
    splits: dict[str, int] = field(default_factory=dict)

    @property
    def available(self) -> bool:
        return self.reason is None

    @property
    def count(self) -> int:
        return sum(self.splits.values())


# ------------------------------------------------------------------------- sets in the data directory


def _shared_file(filename: str) -> Callable[[Config], str | None]:
    def missing(cfg: Config) -> str | None:
        path = Path(cfg.data_dir) / filename
        if path.is_file():
            return None
        return f"{path} not found (set SUBGOAL_DATA_DIR or --data-dir to the directory holding {filename})"

    return missing


def _shared_split(filename: str, split: str | None) -> Callable[[Config], list[Problem]]:
    def load(cfg: Config) -> list[Problem]:
        if reason := _shared_file(filename)(cfg):
            raise DataError(reason)
        problems = load_jsonl(Path(cfg.data_dir) / filename)
        return problems if split is None else [p for p in problems if p.split == split]

    return load


# -------------------------------------------------------------------------------------- ProverBench


def _proverbench_missing(cfg: Config) -> str | None:
    if cfg.proverbench_path is not None:
        path = Path(cfg.proverbench_path)
        return None if path.exists() else f"proverbench_path {path} does not exist"
    if reason := hub_unreachable_reason():
        return (
            f"no local copy and the hub dataset {PROVERBENCH_HUB_ID} cannot be reached ({reason}); set "
            "proverbench_path in subgoal.toml or SUBGOAL_PROVERBENCH_PATH to its JSONL file"
        )
    return None


def _load_proverbench(cfg: Config) -> list[Problem]:
    if reason := _proverbench_missing(cfg):
        raise DataError(f"proverbench: {reason}")
    if cfg.proverbench_path is not None:
        return _load_path(str(cfg.proverbench_path), name="proverbench")
    try:
        return load_hf(PROVERBENCH_HUB_ID)
    except DataError as e:
        raise DataError(f"proverbench: {e}; set proverbench_path in subgoal.toml or SUBGOAL_PROVERBENCH_PATH "
                        "to a local copy of its JSONL") from None  # fmt: skip


SETS: dict[str, ProblemSet] = {
    s.name: s
    for s in (
        ProblemSet("minif2f-valid", "miniF2F validation split (Lean 4, DeepSeek-Prover-V1.5 version)",
                   _shared_split("minif2f.jsonl", "valid"), _shared_file("minif2f.jsonl")),
        ProblemSet("minif2f-test", "miniF2F test split (Lean 4, DeepSeek-Prover-V1.5 version)",
                   _shared_split("minif2f.jsonl", "test"), _shared_file("minif2f.jsonl")),
        ProblemSet("putnambench", "PutnamBench, Lean 4 (answers in extra['answers'])",
                   _shared_split("putnambench.jsonl", None), _shared_file("putnambench.jsonl")),
        ProblemSet("proofnet-valid", "ProofNet validation split (Lean 4)",
                   _shared_split("proofnet.jsonl", "valid"), _shared_file("proofnet.jsonl")),
        ProblemSet("proofnet-test", "ProofNet test split (Lean 4)",
                   _shared_split("proofnet.jsonl", "test"), _shared_file("proofnet.jsonl")),
        ProblemSet("proverbench", f"DeepSeek-ProverBench (proverbench_path, else hub {PROVERBENCH_HUB_ID})",
                   _load_proverbench, _proverbench_missing),
        ProblemSet("leandojo-random", "LeanDojo Benchmark 4, random split (leandojo_dir)",
                   lambda cfg: leandojo.load(cfg, "random"), leandojo.missing, benchmark=False),
        ProblemSet("leandojo-novel", "LeanDojo Benchmark 4, novel_premises split (leandojo_dir)",
                   lambda cfg: leandojo.load(cfg, "novel_premises"), leandojo.missing, benchmark=False),
    )
}  # fmt: skip


def register(entry: ProblemSet) -> None:
    """Add (or replace) a set at runtime, for plugins and tests; built-in sets belong in `SETS` above."""
    SETS[entry.name] = entry


def problem_sets(config: Config | None = None) -> list[SetStatus]:
    """Every registered set with its availability and problem counts per split (loads the available ones)."""
    config = config or load_config()
    out = []
    for entry in SETS.values():
        reason = entry.available(config)
        splits: Counter[str] = Counter()
        if reason is None:
            try:
                splits.update(p.split or "-" for p in entry.load(config))
            except DataError as e:
                reason = str(e)
        out.append(SetStatus(entry.name, entry.description, reason, dict(splits)))
    return out


# ------------------------------------------------------------------------------------ load_problems


_FILE_SUFFIXES = (".lean", ".jsonl", ".json", ".parquet", ".csv")


def _load_path(target: str, split: str | None = None, name: str | None = None) -> list[Problem]:
    path = Path(target)
    if path.is_file():
        if path.suffix == ".lean":
            return load_lean(path)
        if path.suffix in (".jsonl", ".json"):
            return load_jsonl(path)
        return load_hf(path, split)
    if path.is_dir():
        return load_hf(path, split)
    if path.suffix in _FILE_SUFFIXES:
        raise DataError(f"{name or target}: no such file: {target}")
    if _HUB_ID.match(target):
        return load_hf(target, split)
    known = ", ".join(SETS)
    raise DataError(
        f"unknown problem set {name or target!r} (not a file, directory or hub id); known sets: {known}"
    )


def load_problems(
    name_or_path: str | Path, config: Config | None = None, split: str | None = None
) -> list[Problem]:
    """Problems of a registered set (`minif2f-test`, ...), a .jsonl/.lean file, or an HF dataset id/path.

    `split` keeps only the problems of that split (for HF datasets, a dataset split of that name is taken
    directly); a split that selects nothing is an error naming the splits there are.
    """
    target = str(name_or_path)
    entry = SETS.get(target)
    problems = entry.load(config or load_config()) if entry else _load_path(target, split)
    if split is None:
        return problems
    chosen = [p for p in problems if p.split == split]
    if not chosen:
        have = sorted({p.split or "(none)" for p in problems})
        raise DataError(f"{target}: no problems in split {split!r}; splits: {', '.join(have)}")
    return chosen
