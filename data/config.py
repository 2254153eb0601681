"""One typed configuration for every command: defaults < config file < environment < flags.

Config file: `--config PATH`, else `$SUBGOAL_CONFIG`, else `./subgoal.toml` when present (TOML, sections as
below). Environment: `SUBGOAL_DATA_DIR`, `SUBGOAL_RUN_DIR`, and `SUBGOAL_<SECTION>__<KEY>` for any nested
field (e.g. `SUBGOAL_LEAN__REPL_PATH=/opt/repl/.lake/build/bin/repl`, `SUBGOAL_MODEL__BACKEND=vllm`).
Flags: the CLI passes its options as a nested dict of overrides. Each section lives with the package that reads
it where that keeps the layers (`lean_env.settings.LeanSettings`); `ModelSettings` stays here, below `prover`,
which reads it (`prover.generate.make_backend`). This module loads them all.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from data.errors import DataError, read_text
from lean_env.settings import LeanSettings, Section

__all__ = ["Config", "LeanSettings", "ModelSettings", "default_data_dir", "load_config"]

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


class ModelSettings(Section):
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


class Config(Section):
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
