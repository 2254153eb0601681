"""Problem sets, the benchmark registry, the run store and dataset builders."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from data.problem import Problem
    from data.registry import load_problems

__all__ = ["Problem", "load_problems"]


def __getattr__(name: str) -> Any:
    # lazy: `import data.config` (every CLI start-up) must not pay for the registry and its loaders
    if name == "Problem":
        from data.problem import Problem

        return Problem
    if name == "load_problems":
        from data.registry import load_problems

        return load_problems
    raise AttributeError(f"module 'data' has no attribute {name!r}")
