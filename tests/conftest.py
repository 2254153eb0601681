"""Markers that skip, with the reason, when their resource is absent: `gpu`, `lean`, `slow`."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO / "tests"))  # tests/fakes and tests/helpers import as top-level packages
# fixtures shared by several test modules (test modules never import each other). They need the dev extras
# (pydantic), which the bare GPU image lacks: there `pytest -m gpu tests/test_gpu_fp8.py` still runs.
try:
    import pydantic  # noqa: F401

    pytest_plugins = ["helpers.eval_runs", "helpers.train"]
except ImportError:
    pytest_plugins = []


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def _has_lean() -> bool:
    return bool(os.environ.get("SUBGOAL_LEAN__REPL_PATH") or shutil.which("repl")) and bool(shutil.which("lake"))


def pytest_collection_modifyitems(config, items):
    reasons = {
        "gpu": None if _has_cuda() else "needs a CUDA GPU; none here",
        "lean": None if _has_lean() else "needs a real Lean toolchain + REPL (see `subgoal lean doctor`); none here",
        "slow": None if config.getoption("--runslow") else "slow test: pass --runslow",
    }
    for item in items:
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True, scope="session")
def _hash_cache_in_tmp(tmp_path_factory):
    """Content hashes of run manifests are cached under $SUBGOAL_CACHE_DIR: a temporary one, not the user's."""
    old = os.environ.get("SUBGOAL_CACHE_DIR")
    os.environ["SUBGOAL_CACHE_DIR"] = str(tmp_path_factory.mktemp("subgoal-cache"))
    yield
    if old is None:
        os.environ.pop("SUBGOAL_CACHE_DIR", None)
    else:
        os.environ["SUBGOAL_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} (the shared reference data) is absent")
    return SHARED
