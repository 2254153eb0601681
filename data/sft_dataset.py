"""SFT dataset building: verified traces (and other example records) -> deduplicated, decontaminated
`datasets.Dataset` on disk.

An SFT example is a dict `{"prompt", "completion", "kind", "problem", "statement", "source"}` with kind one of
`whole_proof | sketch | lemma | repair | tactic | cold_start`. How a verified attempt becomes examples (which prompt
template, how a decomposition trace splits into sketch and lemma examples) belongs to the prover, which
passes it in as `render`: `data` imports neither `prover` nor `lean_env`.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data.decontam import Decontaminator
from data.errors import DataError
from data.loaders import iter_jsonl
from lean_env.text import strip_comments

KINDS = ("whole_proof", "sketch", "lemma", "repair", "tactic", "cold_start")
FIELDS = ("prompt", "completion", "kind", "problem", "statement", "source")

Render = Callable[[Any], list[dict[str, Any]]]  # a verified data.store.Attempt -> SFT examples

_INTRODUCED = re.compile(
    r"\b(?:have|intro|intros|rintro|obtain|set|let|cases'?|induction'?|rcases|fun)\s+((?:[^\W\d][\w'₀-₉]*\s*)+)"
)
_PATTERN_NAMES = re.compile(r"[⟨,]\s*([^\W\d][\w'₀-₉]*)\s*(?=[,⟩])")
_BINDER = re.compile(r"[(\[{⦃]\s*((?:[^\W\d][\w'₀-₉]*\s+)*[^\W\d][\w'₀-₉]*)\s*:")
_TOKEN = re.compile(r"[\w.'₀-₉]+|[^\s\w]")
_KEYWORDS = {"at", "with", "using", "only", "in", "fun", "by", "do", "then", "else", "if"}


class NoExamples(DataError):
    """Nothing to train on: a normal outcome for an early expert-iteration round that proved nothing new."""


def validate_example(rec: dict[str, Any], where: str = "") -> dict[str, Any]:
    missing = [f for f in ("prompt", "completion", "kind") if not isinstance(rec.get(f), str)]
    if missing:
        raise DataError(f"{where}: SFT example lacks string field(s) {', '.join(missing)}")
    if rec["kind"] not in KINDS:
        raise DataError(f"{where}: unknown SFT example kind {rec['kind']!r} (expected one of {', '.join(KINDS)})")
    return {f: str(rec.get(f) or "") for f in FIELDS}


def read_examples(path: str | Path) -> list[dict[str, Any]]:
    """SFT example records from a JSONL file (e.g. the tactic-level records the LeanDojo builder writes)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"example file {path} does not exist")
    out = []
    for lineno, rec in iter_jsonl(path):
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object")
        out.append(validate_example(rec, f"{path}:{lineno}"))
    return out


def verified_attempts(stores: Iterable[str | Path], runs: Iterable[str] | None = None) -> Iterator[Any]:
    """Every attempt with status `proved` in the given run stores (all runs, or only the named ones)."""
    from data.store import RunStore

    wanted = set(runs) if runs is not None else None
    for path in stores:
        if not Path(path).exists():
            raise DataError(f"run store {path} does not exist")
        with RunStore(path, create=False) as store:
            for run in store.runs():
                if wanted is not None and run.name not in wanted:
                    continue
                yield from store.attempts(run.run_id, status="proved")


def normalize_proof(text: str) -> str:
    """Canonical text of a proof for near-duplicate detection: no comments, single spaces, and the names the
    proof introduces (hypotheses, intro'd variables, pattern names) renamed in order of appearance."""
    text = strip_comments(text)
    names: set[str] = set()
    for group in _INTRODUCED.findall(text) + _BINDER.findall(text):
        names.update(n for n in group.split() if n not in _KEYWORDS)
    names.update(_PATTERN_NAMES.findall(text))
    renamed: dict[str, str] = {}
    out = []
    for tok in _TOKEN.findall(text):
        if tok in names:
            tok = renamed.setdefault(tok, f"h{len(renamed)}")
        out.append(tok)
    return " ".join(out)


def _shingles(norm: str, k: int) -> set[tuple[str, ...]]:
    toks = norm.split()
    return {tuple(toks[i : i + k]) for i in range(max(1, len(toks) - k + 1))}


def dedup_examples(
    examples: Iterable[dict[str, Any]], jaccard: float | None = 0.9, shingle: int = 5
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Drop near-identical examples of the same (problem, kind, prompt): equal normalized completions, or
    (when `jaccard` is set) completions whose token shingles overlap at least that much. First one wins."""
    kept: list[dict[str, Any]] = []
    removed: list[dict[str, Any]] = []
    seen: dict[tuple[str, str, str], list[tuple[str, set]]] = defaultdict(list)
    for ex in examples:
        group = (ex.get("problem", ""), ex["kind"], " ".join(ex["prompt"].split()))
        norm = normalize_proof(ex["completion"])
        sh = _shingles(norm, shingle)
        dup_reason = None
        for other_norm, other_sh in seen[group]:
            if norm == other_norm:
                dup_reason = "duplicate"
                break
            if jaccard is not None and len(sh & other_sh) / max(1, len(sh | other_sh)) >= jaccard:
                dup_reason = "near-duplicate"
                break
        if dup_reason:
            removed.append({"problem": ex.get("problem"), "kind": ex["kind"], "reason": dup_reason})
            continue
        seen[group].append((norm, sh))
        kept.append(ex)
    return kept, removed


@dataclass
class BuildReport:
    """What went in, what came out, and every removal with its reason."""

    examples_in: int = 0
    examples_out: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    contaminated: list[dict[str, Any]] = field(default_factory=list)
    benchmarks: dict[str, Any] = field(default_factory=dict)  # decontaminated against (and sets that failed to load)
    out_dir: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_sft_dataset(
    examples: Iterable[dict[str, Any]],
    out_dir: str | Path,
    decontaminator: Decontaminator | None,
    jaccard: float | None = 0.9,
) -> BuildReport:
    """Validate, dedup, decontaminate and `save_to_disk` the examples; writes `report.json` beside them.

    `decontaminator=None` skips decontamination (the caller has decided the data cannot overlap benchmarks).
    """
    import datasets

    examples = [validate_example(e, f"example {i}") for i, e in enumerate(examples)]
    report = BuildReport(examples_in=len(examples), out_dir=str(out_dir))
    kept, dups = dedup_examples(examples, jaccard=jaccard)
    report.duplicates = len(dups)
    if decontaminator is not None:
        kept, report.contaminated = decontaminator.filter(kept, key="statement")
        report.benchmarks = decontaminator.coverage.to_dict()
    report.examples_out = len(kept)
    report.by_kind = dict(Counter(e["kind"] for e in kept))
    out_dir = Path(out_dir)
    if not kept:  # the report still says what was removed and why
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        raise NoExamples(f"no SFT examples left after dedup and decontamination; nothing to train on (see "
                         f"{out_dir / 'report.json'})")
    ds = datasets.Dataset.from_list(kept, features=datasets.Features({f: datasets.Value("string") for f in FIELDS}))
    ds.save_to_disk(str(out_dir))
    (out_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    return report


def examples_from_attempts(attempts: Iterable[Any], render: Render) -> list[dict[str, Any]]:
    return [ex for att in attempts for ex in render(att)]


def load_sft_dataset(path: str | Path):
    """A dataset written by `build_sft_dataset` (or any `save_to_disk` dataset / JSONL with the same fields)."""
    import datasets

    path = Path(path)
    if not path.exists():
        raise DataError(f"SFT data {path} does not exist")
    if path.is_file() and path.suffix == ".jsonl":
        return datasets.Dataset.from_list(read_examples(path))
    if not (path / "dataset_info.json").is_file():
        raise DataError(f"{path} is not a dataset saved by `save_to_disk` (no dataset_info.json) nor a .jsonl file")
    ds = datasets.load_from_disk(str(path))
    missing = {"prompt", "completion"} - set(ds.column_names)
    if missing:
        raise DataError(f"dataset {path} lacks column(s) {', '.join(sorted(missing))}")
    return ds
