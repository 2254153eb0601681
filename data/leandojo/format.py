"""LeanDojo Benchmark 4: traced theorems as problem sets and as tactic-level training examples.

The layout is the one LeanDojo's `scripts/generate-benchmark-lean4.ipynb` writes and ReProver reads:

    <root>/corpus.jsonl       one line per Lean file: {"path", "imports": [path, ...],
                              "premises": [{"full_name", "code", "start": [l, c], "end": [l, c], "kind"}, ...]}
    <root>/metadata.json      optional: {"dataset_name", "creation_time", "from_repo": {"url", "commit"}, ...}
    <root>/{random,novel_premises}/{train,val,test}.json
                              a JSON list of theorems: {"url", "commit", "file_path", "full_name",
                              "start": [l, c], "end": [l, c], "traced_tactics": [{"tactic",
                              "annotated_tactic": [tactic with <a>premise</a> marks,
                                                   [{"full_name", "def_path", "def_pos", "def_end_pos"}, ...]],
                              "state_before", "state_after"}, ...]}

Positions are 1-based (line, column) with columns counted in characters, as LeanDojo's `Pos`.
Nothing is downloaded here: the benchmark is read from a local directory (config `leandojo_dir`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data.errors import DataError
from data.loaders import iter_jsonl

log = logging.getLogger(__name__)

BENCHMARK_DOI = "https://doi.org/10.5281/zenodo.8040109"
BENCHMARK_URL = (
    "https://zenodo.org/records/12740403/files/leandojo_benchmark_4.tar.gz"  # as ReProver fetches it
)
STRATEGIES = ("random", "novel_premises")
SPLITS = ("train", "val", "test")
SOURCE = "leandojo-benchmark-4"
MARK_START, MARK_END = "<a>", "</a>"

WHERE_TO_GET_IT = (
    f"download LeanDojo Benchmark 4 ({BENCHMARK_DOI}, file {BENCHMARK_URL}), unpack it and set "
    "`leandojo_dir` (config file, or env SUBGOAL_LEANDOJO_DIR) to the folder holding random/ and "
    "novel_premises/; or build one with `subgoal data trace`"
)


@dataclass
class PremiseUse:
    """One premise a tactic mentions (a provenance entry of `annotated_tactic`)."""

    full_name: str
    def_path: str = ""
    def_pos: list[int] = field(default_factory=list)
    def_end_pos: list[int] = field(default_factory=list)


@dataclass
class TracedTactic:
    tactic: str
    annotated_tactic: str  # the tactic with premises marked <a>...</a>
    premises: list[PremiseUse]
    state_before: str
    state_after: str

    def to_json(self) -> dict[str, Any]:
        return {
            "tactic": self.tactic,
            "annotated_tactic": [self.annotated_tactic, [asdict(p) for p in self.premises]],
            "state_before": self.state_before,
            "state_after": self.state_after,
        }


@dataclass
class TracedTheorem:
    url: str
    commit: str
    file_path: str
    full_name: str
    start: list[int]
    end: list[int]
    traced_tactics: list[TracedTactic]

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "traced_tactics"}
        return {**d, "traced_tactics": [t.to_json() for t in self.traced_tactics]}

    def premise_names(self) -> list[str]:
        return [p.full_name for t in self.traced_tactics for p in t.premises]


@dataclass
class CorpusFile:
    """One line of corpus.jsonl: the premises a Lean file defines and the files it imports."""

    path: str
    imports: list[str]
    premises: list[dict[str, Any]]  # {"full_name", "code", "start", "end", "kind"}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def remove_marks(s: str) -> str:
    return s.replace(MARK_START, "").replace(MARK_END, "")


def _pos(v: Any, what: str) -> list[int]:
    if not (isinstance(v, list | tuple) and len(v) == 2 and all(isinstance(x, int) for x in v)):
        raise DataError(f"{what}: expected a [line, column] pair, got {v!r}")
    return [int(v[0]), int(v[1])]


def _premise_use(p: dict[str, Any]) -> PremiseUse:
    return PremiseUse(
        p["full_name"],
        str(p.get("def_path", "")),
        list(p.get("def_pos") or []),
        list(p.get("def_end_pos") or []),
    )


def _tactic_from_json(d: Any, where: str) -> TracedTactic:
    if not isinstance(d, dict):
        raise DataError(f"{where}: a traced tactic must be a JSON object")
    for key in ("tactic", "state_before", "state_after"):
        if not isinstance(d.get(key), str):
            raise DataError(f"{where}: traced tactic lacks the string field {key!r}")
    annotated, premises = d["tactic"], []
    ann = d.get("annotated_tactic")
    if ann is not None:  # [marked tactic, provenances]; older dumps may hold only the string
        if isinstance(ann, str):
            annotated = ann
        elif isinstance(ann, list) and len(ann) == 2 and isinstance(ann[0], str) and isinstance(ann[1], list):
            annotated = ann[0]
            for p in ann[1]:
                if not isinstance(p, dict) or not isinstance(p.get("full_name"), str):
                    raise DataError(f"{where}: premise provenance without a full_name: {p!r}")
                premises.append(_premise_use(p))
        else:
            raise DataError(f"{where}: annotated_tactic must be [marked tactic, [provenance, ...]]")
    return TracedTactic(d["tactic"], annotated, premises, d["state_before"], d["state_after"])


def theorem_from_json(d: Any, where: str) -> TracedTheorem:
    if not isinstance(d, dict):
        raise DataError(f"{where}: a theorem must be a JSON object")
    for key in ("url", "commit", "file_path", "full_name"):
        if not isinstance(d.get(key), str):
            raise DataError(f"{where}: theorem lacks the string field {key!r}")
    tactics = d.get("traced_tactics", [])
    if not isinstance(tactics, list):
        raise DataError(f"{where}: traced_tactics must be a list")
    w = f"{where} ({d['full_name']})"
    return TracedTheorem(
        d["url"],
        d["commit"],
        d["file_path"],
        d["full_name"],
        _pos(d.get("start"), f"{w} start"),
        _pos(d.get("end"), f"{w} end"),
        [_tactic_from_json(t, f"{w} tactic {i}") for i, t in enumerate(tactics)],
    )


# --------------------------------------------------------------------------------------------- reading
def benchmark_root(path: str | Path | None) -> Path:
    """The benchmark directory, checked; the error says where to get it when it is unset or incomplete."""
    if path is None:
        raise DataError(f"no LeanDojo benchmark configured: {WHERE_TO_GET_IT}")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"LeanDojo benchmark directory {root} does not exist: {WHERE_TO_GET_IT}")
    if not any((root / s).is_dir() for s in STRATEGIES):
        raise DataError(
            f"{root} has neither random/ nor novel_premises/, so it is no LeanDojo benchmark: "
            f"{WHERE_TO_GET_IT}"
        )
    return root


def read_theorems(root: str | Path, strategy: str, split: str) -> list[TracedTheorem]:
    """The theorems of one `<strategy>/<split>.json` file."""
    if strategy not in STRATEGIES:
        raise DataError(
            f"unknown LeanDojo split strategy {strategy!r} (expected one of {', '.join(STRATEGIES)})"
        )
    if split not in SPLITS:
        raise DataError(f"unknown LeanDojo split {split!r} (expected one of {', '.join(SPLITS)})")
    path = Path(root) / strategy / f"{split}.json"
    if not path.is_file():
        raise DataError(f"{path} does not exist: {WHERE_TO_GET_IT}")
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of theorems")
    return [theorem_from_json(d, f"{path} item {i}") for i, d in enumerate(data)]


def read_corpus(root: str | Path) -> Iterator[CorpusFile]:
    """The premise corpus, one Lean file at a time (corpus.jsonl is large; it is streamed)."""
    path = Path(root) / "corpus.jsonl"
    if not path.is_file():
        raise DataError(f"{path} does not exist: {WHERE_TO_GET_IT}")
    for lineno, d in iter_jsonl(path):  # streamed
        if not isinstance(d, dict) or not isinstance(d.get("path"), str):
            raise DataError(f"{path}:{lineno}: expected an object with a string `path`")
        premises = d.get("premises", [])
        if not isinstance(premises, list) or any(not isinstance(p, dict) for p in premises):
            raise DataError(f"{path}:{lineno}: `premises` must be a list of objects")
        yield CorpusFile(d["path"], list(d.get("imports", [])), premises)


def premise_index(root: str | Path) -> dict[str, dict[str, Any]]:
    """full_name -> premise record (with its file `path`), skipping ill-formed entries as ReProver does."""
    out: dict[str, dict[str, Any]] = {}
    for cf in read_corpus(root):
        for p in cf.premises:
            name = p.get("full_name")
            if not isinstance(name, str) or not p.get("code") or "user__.n" in name or name.startswith("["):
                continue
            out[name] = {**p, "path": cf.path}
    return out
