"""The check service over the FAKE Lean, shared by the serve, remote, MCP and verl-reward tests."""

from __future__ import annotations

from fakes import fake_lean_settings

from data.problem import Problem
from helpers.prove import HEADER
from lean_env import make_verifier
from lean_env.service import CheckService

STATEMENT = "theorem add_comm2 (a b : ℕ) : a + b = b + a := by"
PROBLEM = Problem("add_comm2", STATEMENT, HEADER)


def served(workers: int = 2, problems: dict | None = None, timeout_s: float = 20, **kwargs):
    verifier = make_verifier(fake_lean_settings(workers=workers, timeout_s=timeout_s))
    service = CheckService(verifier, problems, max_timeout_s=timeout_s, **{"max_wait_s": 30, **kwargs})
    return verifier, service
