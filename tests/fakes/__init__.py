"""FAKES for what cannot exist here (a Lean toolchain and its REPL, lake, comparator, LeanDojo's Lean process,
vLLM's GPU engine, a model server): each is named as a fake and says what it stands in for. The script fakes
run as processes, so tests and benchmarks name them by path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FAKE_LEAN = HERE / "fake_lean.py"  # a FAKE Lean REPL that really checks a small fragment of Lean
FAKE_REPL = HERE / "fake_repl.py"  # a FAKE REPL answering by rules or replaying recorded transcripts
FAKE_COMPARATOR = HERE / "fake_comparator.py"  # a FAKE of comparator's command line
FAKE_LAKE = HERE / "fake_lake.py"  # a FAKE `lake env lean` for the audit


def fake_lean_settings(**overrides: Any):
    """LeanSettings whose REPL is the FAKE Lean (one worker, 30 s unless overridden)."""
    from data.config import LeanSettings

    return LeanSettings(repl_path=FAKE_LEAN, workers=overrides.pop("workers", 1), timeout_s=overrides.pop(
        "timeout_s", 30), **overrides)
