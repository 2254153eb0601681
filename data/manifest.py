"""Run manifests: what produced a training or evaluation run, and the resume check built on it.

A manifest (`<out>/manifest.json`) holds the command's full settings, its seeds, content ids (sha256) of the base
weights and data, package versions and the git commit with a dirty flag. The one rule: resuming compares
settings, seeds and content ids with the manifest written when the run started and refuses any difference
with one message naming each change (`--lr 1e-05 -> 3e-05`); versions and the commit are recorded, not
compared (a resumed run may pick up a bug-fix release), and logged when they differ.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from data.errors import DataError

MANIFEST_FILE = "manifest.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_SKIP_FILES = {"trainer_state.pt", "state.json"}  # optimizer state; `datasets`' per-save random fingerprint
_REPO_ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)


class ManifestMismatch(DataError):
    """Resuming a run with other settings, seeds or inputs than it started with."""


@dataclass
class Manifest:
    command: str  # sft | grpo | iterate | eval
    settings: dict[str, Any]  # every setting that decides the result (compared on resume)
    seeds: dict[str, Any] = field(default_factory=dict)  # compared on resume
    inputs: dict[str, str] = field(default_factory=dict)  # role -> content id (compared on resume)
    versions: dict[str, Any] = field(default_factory=dict)  # recorded only
    git: dict[str, Any] = field(default_factory=dict)  # {"commit", "dirty"}, recorded only
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- content ids


def _cache_path() -> Path:
    return Path(os.environ.get("SUBGOAL_CACHE_DIR") or Path.home() / ".cache" / "subgoal") / "sha256.json"


def _cache() -> dict[str, str]:
    try:
        return json.loads(_cache_path().read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, cached by (path, size, mtime): a 100 GB checkpoint is hashed once, not on every
    resume."""
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    cache = _cache()
    if key in cache:
        return cache[key]
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    cache[key] = h.hexdigest()
    try:  # best effort: a read-only home only costs a re-hash next time
        path = _cache_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        tmp.replace(path)
    except OSError:
        pass
    return cache[key]


def _files_of(path: Path, weights_only: bool) -> list[Path]:
    """The files a directory's content id covers: top level only (a model dir's `checkpoints/` are not the
    model), weights and config.json for a model, every data file for a dataset."""
    files = []
    for p in sorted(path.iterdir()):
        if not p.is_file() or p.name in _SKIP_FILES or p.name.startswith("."):
            continue
        if weights_only and not (p.suffix in WEIGHT_SUFFIXES or p.name == "config.json"):
            continue
        files.append(p)
    return files


def content_id(target: str | Path | None, weights_only: bool = False) -> str:
    """What identifies a model or data input by content: `sha256:<hex>` over a file, or over the (name, sha256)
    of a directory's files; a name that is no local path (an HF hub id, a registry set) is `name:<it>`."""
    if target is None or str(target) == "":
        return ""
    path = Path(target)
    if path.is_file():
        return "sha256:" + file_sha256(path)
    if path.is_dir():
        files = _files_of(path, weights_only)
        if not files:
            raise DataError(f"{path} holds no {'weights' if weights_only else 'files'} to identify it by")
        h = hashlib.sha256()
        for f in files:
            h.update(f"{f.name}\0{file_sha256(f)}\n".encode())
        return "sha256:" + h.hexdigest()
    return f"name:{target}"


def json_sha256(obj: Any) -> str:
    """Content id of JSON-able data (e.g. the problems a registry set resolved to)."""
    return "sha256:" + hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def problems_id(problems: Iterable[Any]) -> str:
    """Content id of a problem list: names, headers and statements (what a prover is asked), in order."""
    return json_sha256([[p.name, p.header, p.formal_statement] for p in problems])


# ---------------------------------------------------------------- provenance


def git_state(root: Path = _REPO_ROOT) -> dict[str, Any]:
    """The checkout's commit and whether it has uncommitted changes (empty when not a git checkout)."""
    if not (root / ".git").exists():
        return {}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if commit.returncode != 0:
        return {}
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def package_versions() -> dict[str, Any]:
    from data.store import collect_versions

    return {k: v for k, v in collect_versions().items() if k != "git_commit"}


def make_manifest(command: str, settings: Mapping[str, Any], seeds: Mapping[str, Any] | None = None,
                  inputs: Mapping[str, str] | None = None) -> Manifest:
    return Manifest(command, json.loads(json.dumps(dict(settings), default=str)), dict(seeds or {}),
                    dict(inputs or {}), package_versions(), git_state(),
                    datetime.now(UTC).isoformat(timespec="seconds"))


# ---------------------------------------------------------------- the resume check


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def differences(old: Mapping[str, Any], new: Manifest) -> list[str]:
    """Each compared difference between a recorded manifest (as read from JSON) and this run's, one phrase each."""
    out = []
    if old.get("command") != new.command:
        out.append(f"command {old.get('command')} -> {new.command}")
    for section in ("settings", "seeds"):
        before, now = old.get(section) or {}, getattr(new, section)
        for key in sorted(set(before) | set(now)):
            if before.get(key) != now.get(key):
                out.append(f"{_flag(key)} {before.get(key, '(unset)')} -> {now.get(key, '(unset)')}")
    before, now = old.get("inputs") or {}, new.inputs
    for key in sorted(set(before) | set(now)):
        if before.get(key) != now.get(key):
            out.append(f"{key} content {_short(before.get(key))} -> {_short(now.get(key))}")
    return out


def _short(cid: str | None) -> str:
    if not cid:
        return "(none)"
    return cid[:19] + "…" if cid.startswith("sha256:") and len(cid) > 19 else cid


def read_manifest(out_dir: str | Path) -> dict[str, Any] | None:
    path = Path(out_dir) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e}); restore it or use a new --out") from None


def write_manifest(out_dir: str | Path, manifest: Manifest) -> Path:
    path = Path(out_dir) / MANIFEST_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest.to_dict(), indent=1, default=str))
    tmp.replace(path)  # atomic: never half a manifest
    return path


def check_resume(out_dir: str | Path, manifest: Manifest, resuming: bool, what: Iterable[str] = ("checkpoints",),
                 write: bool = True) -> None:
    """Before any work: when `resuming` (the run found work of an earlier start in `out_dir`), refuse unless the
    recorded manifest matches this one; otherwise (a new run, or a deliberate restart) record this manifest."""
    out_dir = Path(out_dir)
    recorded = read_manifest(out_dir)
    if resuming:
        found = " and ".join(what)
        if recorded is None:
            raise ManifestMismatch(
                f"{out_dir} holds {found} of an earlier run but no {MANIFEST_FILE}, so its settings cannot be "
                "checked; use a new --out (or --no-resume to start over there)")
        changed = differences(recorded, manifest)
        if changed:
            raise ManifestMismatch(
                f"refusing to resume {out_dir}: it was started with other settings ({'; '.join(changed)}); use a "
                "new --out, the original settings to resume, or --no-resume to start over there")
        for key in sorted(set(recorded.get("versions") or {}) | set(manifest.versions)):
            a, b = (recorded.get("versions") or {}).get(key), manifest.versions.get(key)
            if a != b:
                log.warning("resuming %s with %s %s (it started with %s)", out_dir, key, b, a)
        return
    if write:
        write_manifest(out_dir, manifest)
