"""Kernel replay of proved attempts with a trusted checker (leanprover/comparator, or lean4checker), beside our verdict.

The REPL verifier is fast and `honest+`; a checker replays the solution's constants through the kernel in a
fresh process and compares the statement with the challenge's, so what only a kernel-level exploit or an
elaboration-time trick could pass is caught. One rule: the solution the checker sees is exactly the text our
verifier sent to Lean (`Verifier.prepare`), in a fresh Lake project per attempt (comparator's assumption 2: the
solution was never compiled in the checking environment before).

Comparator's interface (its README): in a Lake project with `Challenge` and `Solution` libraries, run
`lake env comparator config.json`, config `{"challenge_module", "solution_module", "theorem_names",
"definition_names", "permitted_axioms"}`, with `landrun` and `lean4export` on PATH or in `COMPARATOR_LANDRUN` /
`COMPARATOR_LEAN4EXPORT`; exit 0 and "Your solution is okay!" when every listed theorem proves the challenge's
statement with the permitted axioms and the kernel accepts the replayed environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from lean_env import text
from lean_env.problem import LeanProblem
from lean_env.verifier import STANDARD_AXIOMS, Prepared, Verifier

COMPARATOR_OK = "Your solution is okay!"


@dataclass(frozen=True)
class AuditVerdict:
    """A checker's verdict on one attempt: accepted True/False, or None when the checker could not run."""

    checker: str
    accepted: bool | None
    detail: str = ""  # the checker's reason (its last line of output) or why it could not run
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ComparatorTools:
    """The programs comparator needs (found by `toolchain.find_comparator`)."""

    comparator: Path
    lean4export: Path
    landrun: Path


def write_project(problem: LeanProblem, proof_src: str, where: Path, mathlib_dir: Path,
                  permitted_axioms: frozenset[str] = STANDARD_AXIOMS) -> Path | None:
    """Write the challenge/solution Lake project of one attempt under `where`; None when the proof cannot be
    prepared (the verifier would not have sent it to Lean either)."""
    prep = Verifier(None, lexical=False).prepare(problem, proof_src)
    if not isinstance(prep, Prepared):
        return None
    header = prep.header if prep.header.endswith("\n") or not prep.header else prep.header + "\n"
    where.mkdir(parents=True, exist_ok=True)
    (where / "Challenge.lean").write_text(header + text.with_proof(prep.statement, "sorry"), encoding="utf-8")
    (where / "Solution.lean").write_text(header + prep.body, encoding="utf-8")
    toolchain = mathlib_dir / "lean-toolchain"
    if toolchain.is_file():
        shutil.copyfile(toolchain, where / "lean-toolchain")
    (where / "lakefile.toml").write_text(
        'name = "subgoal_audit"\nversion = "0.1.0"\n\n[[require]]\nname = "mathlib"\n'
        f"path = {json.dumps(str(mathlib_dir))}\n\n"
        '[[lean_lib]]\nname = "Challenge"\n\n[[lean_lib]]\nname = "Solution"\n', encoding="utf-8")
    # answer produced: the answer abbrevs are definition holes (name, type, universes and safety must
    # match; their values are the solution's own)
    holes = [d.full_name for d in text.declarations(text.preamble(prep.statement))
             if d.full_name and text.normalize(text.decl_value(prep.statement, d)) == "sorry"]
    config = {"challenge_module": "Challenge", "solution_module": "Solution", "theorem_names": [prep.name],
              "definition_names": holes, "permitted_axioms": sorted(permitted_axioms)}
    (where / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return where


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess | str:
    """The finished process, or why it could not run (a timeout, a missing program): never a rejection."""
    try:
        return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s,
                              start_new_session=True)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout_s:g}s: {' '.join(argv[:3])}"
    except OSError as e:
        return f"could not run {argv[0]}: {e}"


def _reason(out: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in (out.stderr + "\n" + out.stdout).splitlines() if ln.strip()]
    detail = next((ln for ln in lines if "uncaught exception" in ln or "rejects" in ln or "error" in ln),
                  lines[-1] if lines else "")
    return f"exit {out.returncode}: {detail}"[:500]


class KernelAuditor(Protocol):
    """A trusted checker that re-checks one proved attempt (`Comparator`, `Lean4Checker`); `name` keys its
    verdicts in the run store."""

    name: str

    def check(self, problem: LeanProblem, proof_src: str) -> AuditVerdict: ...


class Comparator:
    """Runs leanprover/comparator on one attempt at a time. `command` is the argv prefix that runs comparator
    in a project directory (default `lake env <comparator>`); the config path is appended."""

    name = "comparator"

    def __init__(self, tools: ComparatorTools, mathlib_dir: Path, *, lake: Path | None = None,
                 command: list[str] | None = None, timeout_s: float = 1800.0, workdir: Path | None = None,
                 permitted_axioms: frozenset[str] = STANDARD_AXIOMS):
        self.tools = tools
        self.mathlib_dir = Path(mathlib_dir)
        self.command = command or [str(lake or shutil.which("lake") or "lake"), "env", str(tools.comparator)]
        self.timeout_s = timeout_s
        self.workdir = workdir
        self.permitted_axioms = permitted_axioms

    def project(self, problem: LeanProblem, proof_src: str, where: Path) -> Path | None:
        return write_project(problem, proof_src, where, self.mathlib_dir, self.permitted_axioms)

    def check(self, problem: LeanProblem, proof_src: str) -> AuditVerdict:
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="subgoal-audit-", dir=self.workdir) as tmp:
            project = self.project(problem, proof_src, Path(tmp) / "project")
            if project is None:
                return AuditVerdict(self.name, False, "the proof could not be prepared for Lean")
            env = {**os.environ, "COMPARATOR_LANDRUN": str(self.tools.landrun),
                   "COMPARATOR_LEAN4EXPORT": str(self.tools.lean4export)}
            out = _run([*self.command, "config.json"], project, env, self.timeout_s)
        wall = time.monotonic() - t0
        if isinstance(out, str):
            return AuditVerdict(self.name, None, out, wall)
        if out.returncode == 0 and COMPARATOR_OK in out.stdout:
            return AuditVerdict(self.name, True, COMPARATOR_OK, wall)
        return AuditVerdict(self.name, False, _reason(out), wall)


class Lean4Checker:
    """leanprover/lean4checker: the solution is compiled by a fresh `lean` (`lake build Solution`), then its
    environment is replayed through the kernel (`lake env lean4checker Solution`, its README). Kernel replay
    only: it compares no statement and lists no axioms, so the statement and axioms stay the verifier's verdict;
    it catches environment hacking and what the REPL process could forge."""

    name = "lean4checker"

    def __init__(self, checker: Path, mathlib_dir: Path, *, lake: list[str] | None = None, timeout_s: float = 1800.0,
                 workdir: Path | None = None):
        self.checker = Path(checker)
        self.mathlib_dir = Path(mathlib_dir)
        self.lake = lake or [shutil.which("lake") or "lake"]
        self.timeout_s = timeout_s
        self.workdir = workdir

    def check(self, problem: LeanProblem, proof_src: str) -> AuditVerdict:
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="subgoal-audit-", dir=self.workdir) as tmp:
            project = write_project(problem, proof_src, Path(tmp) / "project", self.mathlib_dir)
            if project is None:
                return AuditVerdict(self.name, False, "the proof could not be prepared for Lean")
            for argv in ([*self.lake, "build", "Solution"], [*self.lake, "env", str(self.checker), "Solution"]):
                out = _run(argv, project, dict(os.environ), self.timeout_s)
                if isinstance(out, str):
                    return AuditVerdict(self.name, None, out, time.monotonic() - t0)
                if out.returncode != 0:
                    step = "build" if argv[-2] == "build" else "kernel replay"
                    return AuditVerdict(self.name, False, f"{step}: {_reason(out)}", time.monotonic() - t0)
        return AuditVerdict(self.name, True, "the kernel replayed the solution's environment", time.monotonic() - t0)
