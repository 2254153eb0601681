"""One typed configuration for every command: defaults < config file < environment < flags.

Config file: `--config PATH`, else `$SUBGOAL_CONFIG`, else `./subgoal.toml` when present (TOML, sections as
below). Environment: `SUBGOAL_DATA_DIR`, `SUBGOAL_RUN_DIR`, and `SUBGOAL_<SECTION>__<KEY>` for any nested
field (e.g. `SUBGOAL_LEAN__REPL_PATH=/opt/repl/.lake/build/bin/repl`, `SUBGOAL_MODEL__BACKEND=vllm`).
Flags: the CLI passes its options as a nested dict of overrides.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from data.errors import DataError, read_text

ENV_PREFIX = "SUBGOAL_"
REPO_ROOT = Path(__file__).resolve().parent.parent


def default_data_dir(
    environ: Mapping[str, str] | None = None, repo_root: Path | None = None, cwd: Path | None = None
) -> Path:
    """`$SUBGOAL_DATA_DIR`, else `../shared/benchmarks` beside the checkout (or beside the working
    directory), else `./data`. The arguments default to the process's environment, checkout and cwd."""
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    if env := environ.get("SUBGOAL_DATA_DIR"):
        return Path(env)
    for root in (repo_root or REPO_ROOT, cwd):
        shared = root.parent / "shared" / "benchmarks"
        if shared.is_dir():
            return shared
    return cwd / "data"


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class _Section(BaseModel):
    # allow_inf_nan=False: `timeout_s = inf` would pass `gt=0` and then break every wait that uses it
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """`workers = true` in TOML is a mistake, not 1: numbers must be numbers (pydantic would take the bool)."""
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, bool) and annotation in (int, float, int | None, float | None):
            raise ValueError(f"expected a number, got {str(value).lower()}")
        return value


class LeanSettings(_Section):
    """Where Lean lives and how REPLs are run. Unset paths are searched for (PATH, ~/.elan, ...)."""

    # Pinned toolchain that `subgoal lean setup` installs: the one PutnamBench in the data dir is checked with
    # (Mathlib and the REPL are taken at the same tag).
    lean_version: str = "v4.27.0"
    project_dir: Path | None = None  # a Lake project with Mathlib built (the REPL runs inside it)
    repl_path: Path | None = None  # the leanprover-community/repl binary
    lake_path: Path | None = None
    workers: int = Field(default_factory=lambda: max(1, _cpu_count() - 1), ge=1)
    timeout_s: float = Field(default=300.0, gt=0)  # wall clock per REPL call
    memory_mb: int = Field(default=8192, ge=256)  # per REPL process
    max_proofs_per_repl: int = Field(default=200, ge=1)  # recycle a REPL after this many proofs
    comparator_path: Path | None = None  # leanprover/comparator, for `subgoal lean audit` (kernel replay)
    # verification through a running server (`subgoal lean serve`, or a kimina-lean-server) instead of local REPLs;
    # "auto": remote exactly when remote_url is set
    checker: Literal["auto", "local", "remote"] = "auto"
    remote_url: str | None = None
    remote_api_key: str | None = None
    remote_kind: Literal["auto", "subgoal", "kimina"] = "auto"  # auto: asks the server's /health
    remote_retries: int = Field(default=5, ge=0)
    remote_concurrency: int = Field(default=64, ge=1)  # requests in flight


class ModelSettings(_Section):
    """Which model generates, and through which backend."""

    model: str | None = None  # HF id or local checkpoint directory
    backend: Literal["transformers", "vllm", "openai"] = "transformers"
    base_url: str = "http://localhost:8000/v1"  # for the OpenAI-compatible backend
    api_key: str = "EMPTY"
    tensor_parallel_size: int = Field(default=1, ge=1)
    dtype: str = "auto"
    device: str = "auto"  # transformers backend: auto picks cuda when present
    # Sequences the backend holds at once for the streaming runner; None = the backend's own size (vLLM: twice
    # its scheduler's max_num_seqs; openai: 256 requests, what `vllm serve` batches; transformers: batch size).
    max_in_flight: int | None = Field(default=None, ge=1)


class Config(_Section):
    data_dir: Path = Field(default_factory=default_data_dir)
    run_dir: Path = Path("runs")
    leandojo_dir: Path | None = None  # LeanDojo Benchmark 4 root (random/, novel_premises/)
    proverbench_path: Path | None = None  # local ProverBench JSONL; else the hub id is tried
    gpu_workers: int = Field(default=1, ge=0)
    lean: LeanSettings = Field(default_factory=LeanSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    # Decomposition's planner (sketches), e.g. a large general model behind an OpenAI-compatible server; with no
    # planner.model the prover plans its own sketches.
    planner: ModelSettings = Field(default_factory=ModelSettings)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key == "SUBGOAL_CONFIG":
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        if path[0] not in Config.model_fields:
            continue
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Build the configuration: defaults < file < environment < `overrides` (flags; None values ignored)."""
    environ = dict(os.environ if environ is None else environ)
    layers: dict[str, Any] = {}
    path = path or environ.get("SUBGOAL_CONFIG") or ("subgoal.toml" if Path("subgoal.toml").is_file() else None)
    if path:
        path = Path(path)
        try:
            layers = tomllib.loads(read_text(path, "config file"))
        except tomllib.TOMLDecodeError as e:
            raise DataError(f"config file {path}: {e}") from None
    layers = _merge(layers, _env_overrides(environ))
    layers = _merge(layers, _drop_none(overrides or {}))
    layers.setdefault("data_dir", default_data_dir(environ))  # honour `environ`, not only os.environ
    try:
        return Config.model_validate(layers)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DataError(f"bad configuration value {where}: {first['msg'].removeprefix('Value error, ')}") from None


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _drop_none(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}
