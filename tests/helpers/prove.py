"""Helpers of the prove tests: the standard header, one attempt from synchronous code, the shared tiny checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HEADER = ("import Mathlib\nimport Aesop\n\nset_option maxHeartbeats 400000\n\n"
          "open BigOperators Real Nat Topology Rat\n\n")


def attempt_now(recipe: Any, backend: Any, verifier: Any, problem: Any, index: int = 0, **kw: Any) -> Any:
    """One `ProveRecipe.attempt` from synchronous test code, over a plain backend and verifier."""
    from prover.runner import AsyncChecker, Engine, run_async

    checker = AsyncChecker(verifier)
    try:
        return run_async(recipe.attempt(Engine(backend), checker, problem, index, **kw))
    finally:
        checker.close()


def tiny_checkpoint_dir(tmp_path_factory) -> Path:
    """One tiny random DeepSeek-V3 checkpoint (prover.model.testing) per test session, shared by these tests."""
    from filelock import FileLock

    from prover.model.testing import tiny_checkpoint

    path = tmp_path_factory.getbasetemp() / "prove-tiny-ckpt"
    with FileLock(str(path) + ".lock"):
        if not (path / "config.json").is_file():
            tiny_checkpoint(path)
    return path
