"""Value checks for flags, run by click while it parses: a nonsense value is a usage error (exit 2) before anything
starts. Whole-number ranges use typer's own `min=`/`max=`; these cover what those cannot say (open bounds, finite
floats)."""

from __future__ import annotations

import math
from collections.abc import Callable

import typer

# Attempts per problem: the largest budgets published are a few x 10^4 per problem (pass@8192; DeepSeek-Prover-V1.5's
# 16 x 6400). Past this the run's bookkeeping, not the prover, is what fills memory.
MAX_ATTEMPTS = 1 << 17


def _check(ok: Callable[[float], bool], wanted: str) -> Callable[[float | None], float | None]:
    def callback(value: float | None) -> float | None:
        if value is not None and (not math.isfinite(value) or not ok(value)):
            raise typer.BadParameter(f"must be {wanted}, got {value:g}")
        return value

    return callback


positive = _check(lambda v: v > 0, "a finite number > 0")
non_negative = _check(lambda v: v >= 0, "a finite number >= 0")
probability = _check(lambda v: 0 < v <= 1, "in (0, 1]")
