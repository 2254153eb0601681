"""Read problems from JSONL files, Lean files and Hugging Face datasets into `Problem`s.

Every format goes through `problem_from_record`, so a bad field is reported the same way everywhere:
one `DataError` naming the file (or dataset), the line (or row) and the field.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from data.errors import DataError, read_text
from data.problem import Problem
from lean_env import text

REQUIRED_STR = ("name", "formal_statement")
OPTIONAL_STR = ("header", "split", "source")  # default ""
OPTIONAL_TEXT = ("informal_statement", "informal_proof")  # default None

# DeepSeek-Prover's own files (and ProverBench) call the informal statement `informal_prefix`, a Lean comment.
_PREFIX_COMMENT = re.compile(r"^\s*/-+\s*(.*?)\s*-/\s*$", re.S)
_HF_SAVED_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")


def open_statement(stmt: str) -> str | None:
    """The statement ending in `:= by`, or None when it cannot be made so.

    Accepts the forms users write: `... := by`, `... := by sorry`, `... := sorry`, `... :=`.
    """
    return text.open_statement(stmt)


def _check_unicode(value: str, what: str) -> None:
    """JSON can spell a lone surrogate (`"\\ud800"`); no UTF-8 file, SQLite row or Lean process can hold one, so it
    is refused here rather than where the run first writes it (the same place on every resume)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise DataError(f"{what} is not valid Unicode: a lone surrogate {value[e.start]!r} at character {e.start}"
                        ) from None


def problem_from_record(rec: Any, where: str, default_split: str = "", default_source: str = "") -> Problem:
    """Validate one record (a JSON object / dataset row) and build its Problem; unknown fields go to extra."""
    if not isinstance(rec, dict):
        raise DataError(
            f"{where}: expected a JSON object with fields name, formal_statement; got {type(rec).__name__}"
        )
    for key in REQUIRED_STR:
        if key not in rec or rec[key] is None:
            raise DataError(f"{where}: field '{key}' is missing (required: name, formal_statement)")
    for key in (*REQUIRED_STR, *OPTIONAL_STR, *OPTIONAL_TEXT):
        value = rec.get(key)
        if value is not None and not isinstance(value, str):
            raise DataError(
                f"{where}: field '{key}' must be a string, got {type(value).__name__} {value!r:.60}"
            )
        if value is not None:
            _check_unicode(value, f"{where}: field '{key}'")
    if not rec["name"].strip():
        raise DataError(f"{where}: field 'name' is empty")
    statement = open_statement(rec["formal_statement"])
    if statement is None:
        raise DataError(
            f"{where}: field 'formal_statement' must end in ':= by' (a statement without its proof), "
            f"got ...{rec['formal_statement'].rstrip()[-40:]!r}"
        )
    rec = {**rec, "formal_statement": statement}
    for key in OPTIONAL_STR:
        if not rec.get(key):
            rec[key] = {"split": default_split, "source": default_source}.get(key, "")
    if rec.get("informal_statement") is None and isinstance(rec.get("informal_prefix"), str):
        m = _PREFIX_COMMENT.match(rec["informal_prefix"])
        rec["informal_statement"] = m.group(1) if m else rec["informal_prefix"].strip()
    return Problem.from_dict(rec)


def _unique(problems: Iterable[tuple[Problem, str]]) -> list[Problem]:
    """Problems in order; a repeated name is an error at the place it repeats."""
    seen: dict[str, str] = {}
    out = []
    for problem, where in problems:
        if problem.name in seen:
            raise DataError(
                f"{where}: field 'name': duplicate name {problem.name!r} (first at {seen[problem.name]})"
            )
        seen[problem.name] = where
        out.append(problem)
    return out


# ---------------------------------------------------------------------------------------------- JSONL


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) for each non-blank line; bad JSON -> DataError with file and line."""
    try:
        fh = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from None
    with fh:
        try:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{lineno}: bad JSON at column {e.colno}: {e.msg}") from None
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _starts_with(path: Path, char: str) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4096).lstrip().startswith(char.encode())
    except OSError:
        return False


def _read_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: bad JSON at column {e.colno}: {e.msg}") from None


def load_jsonl(path: str | Path) -> list[Problem]:
    """Problems from a JSONL file in the format of the shared benchmarks (one object per line).

    A `.json` file may instead hold one JSON array of the same objects."""
    path = Path(path)
    source = path.name

    def records() -> Iterator[tuple[Problem, str]]:
        if path.suffix == ".json" and _starts_with(path, "["):  # a .json file holding one array of problems
            for i, rec in enumerate(_read_json(path)):
                yield problem_from_record(rec, f"{path} item {i}", default_source=source), f"{path} item {i}"
            return
        for lineno, rec in iter_jsonl(path):
            where = f"{path}:{lineno}"
            yield problem_from_record(rec, where, default_source=source), where

    problems = _unique(records())
    if not problems:
        raise DataError(f"{path}: no problems in the file")
    return problems


# ------------------------------------------------------------------------------------ Hugging Face


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _hub_offline() -> bool:
    """Whether the Hugging Face libraries run offline (they read HF_HUB_OFFLINE once, when imported)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_unreachable_reason(timeout_s: float = 3.0) -> str | None:
    """Why loading from the Hugging Face hub would fail now; None when it can be tried.

    Online, `datasets` retries an unreachable hub for ~25 s before failing; this probe answers within
    `timeout_s`, so `subgoal data list` stays quick. Offline (HF_HUB_OFFLINE=1), `datasets` looks only in
    its cache and fails fast, so it may always try.
    """
    if _hub_offline():
        return None
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE was set after the Hugging Face libraries were loaded"
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # a proxy may reach what a direct connection cannot: let `datasets` try
    url = urlparse(_hub_endpoint())
    try:
        with socket.create_connection((url.hostname or "", url.port or 443), timeout=timeout_s):
            return None
    except OSError as e:
        return f"{url.hostname}: {e.strerror or e}"


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in _HF_SAVED_MARKERS)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def open_hf_dataset(id_or_path: str | Path) -> Any:
    """A `datasets.Dataset` or `DatasetDict`: saved-to-disk directory, local json/parquet data, or hub id."""
    import datasets

    path = Path(id_or_path)
    try:
        if _is_saved_dataset(path):
            return datasets.load_from_disk(str(path))
        if path.is_file():
            kind = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}.get(path.suffix)
            if kind is None:
                raise DataError(f"{path}: unknown data file type (use .jsonl, .json, .parquet or .csv)")
            return datasets.load_dataset(kind, data_files=str(path))
        if path.is_dir():
            return datasets.load_dataset(str(path))
    except DataError:
        raise
    except Exception as e:  # datasets raises many types for one cause: a file it cannot read
        raise DataError(f"{path}: cannot load as a Hugging Face dataset: {_one_line(e)}") from None
    if reason := hub_unreachable_reason():
        raise DataError(
            f"{id_or_path!r} is not a local file or directory, and the Hugging Face hub cannot be reached "
            f"to load it as a dataset id ({reason}); use a local copy (a JSONL file or a directory saved "
            "with save_to_disk), or set HF_HUB_OFFLINE=1 to use a copy already in the Hugging Face cache"
        )
    try:
        return datasets.load_dataset(str(id_or_path))
    except Exception as e:
        offline = (
            " (HF_HUB_OFFLINE is set: only the local Hugging Face cache was searched)"
            if _hub_offline()
            else ""
        )
        raise DataError(
            f"Hugging Face dataset {id_or_path!r}: cannot load{offline}: {_one_line(e)}"
        ) from None


def load_hf(id_or_path: str | Path, split: str | None = None) -> list[Problem]:
    """Problems from a Hugging Face dataset (hub id or local path), same fields as the JSONL format.

    `split` picks a dataset split when the dataset has one of that name; otherwise it filters by the
    problems' own `split` field (done by `load_problems`). A problem without a `split` field gets the name
    of the dataset split it came from.
    """
    import datasets

    ds = open_hf_dataset(id_or_path)
    parts = dict(ds) if isinstance(ds, datasets.DatasetDict) else {"": ds}
    if split is not None and split in parts:
        parts = {split: parts[split]}
    source = str(id_or_path)

    def records() -> Iterator[tuple[Problem, str]]:
        for part, rows in parts.items():
            for i, row in enumerate(rows):
                where = f"{id_or_path}[{part}] row {i}" if part else f"{id_or_path} row {i}"
                yield problem_from_record(row, where, default_split=part, default_source=source), where

    problems = _unique(records())
    if not problems:
        raise DataError(f"{id_or_path}: the dataset has no rows")
    return problems
