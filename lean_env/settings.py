"""`LeanSettings`: where Lean lives and how REPLs run; the `[lean]` section of the config (`data.config` loads it).

`Section` is every config section's base: unknown keys, infinite numbers and booleans where numbers belong are
refused (a TOML `workers = true` is a mistake, not 1).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class Section(BaseModel):
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


class LeanSettings(Section):
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
