"""Find (and install) Lean: `lake`/`lean`, the leanprover-community/repl binary and a Mathlib project.

Search order for each piece: the settings (config file / `SUBGOAL_LEAN__*` environment), then PATH and
`~/.elan/bin`, then the directory `subgoal lean setup` installs into (`$SUBGOAL_LEAN_HOME`, default
`~/.subgoal/lean`: `mathlib4/` and `repl/` there).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lean_env.errors import LeanNotFound, SetupError

if TYPE_CHECKING:
    from lean_env.settings import LeanSettings

DEFAULT_LEAN_VERSION = "v4.19.0"
MATHLIB_GIT = "https://github.com/leanprover-community/mathlib4"
REPL_GIT = "https://github.com/leanprover-community/repl"
COMPARATOR_GIT = "https://github.com/leanprover/comparator"  # tags follow Lean's (v4.27.0, ...)
LANDRUN_GIT = "https://github.com/Zouuup/landrun"  # comparator's sandbox, built from main (its README)
LEAN4CHECKER_GIT = "https://github.com/leanprover/lean4checker"  # tags follow Lean's
ELAN_INIT = "https://raw.githubusercontent.com/leanprover/elan/master/elan-init.sh"

INSTALL_HINT = (
    "run `subgoal lean setup` on a machine with internet (installs elan, Lean {version}, Mathlib and the REPL "
    "under {home}), or point the config at an existing install: lean.project_dir = <Lake project with "
    "Mathlib built>, repl_path = <repl/.lake/build/bin/repl> (env SUBGOAL_LEAN__PROJECT_DIR, "
    "SUBGOAL_LEAN__REPL_PATH); `subgoal lean doctor` shows what is found"
)


def lean_home() -> Path:
    return Path(os.environ.get("SUBGOAL_LEAN_HOME") or Path.home() / ".subgoal" / "lean")


def _setting(settings: LeanSettings | None, name: str, default: Any = None) -> Any:
    return getattr(settings, name, default) if settings is not None else default


def _which(name: str) -> Path | None:
    found = shutil.which(name)
    if found:
        return Path(found)
    elan = Path(os.environ.get("ELAN_HOME") or Path.home() / ".elan") / "bin" / name
    return elan if elan.is_file() and os.access(elan, os.X_OK) else None


@dataclass
class Toolchain:
    """What was found. `repl` is always set; `lake`/`project_dir` may be absent (a REPL run on its own)."""

    repl: Path
    lake: Path | None = None
    lean: Path | None = None
    project_dir: Path | None = None
    lean_version: str | None = None  # from the project's lean-toolchain
    mathlib_version: str | None = None  # the mathlib rev in the project's lake-manifest.json

    def repl_command(self) -> list[str]:
        """argv that starts one REPL; run it in `self.cwd`. A `.py` REPL (a test fake) runs under this Python."""
        if self.repl.suffix == ".py":
            return [sys.executable, str(self.repl)]
        if self.lake and self.project_dir:
            return [str(self.lake), "env", str(self.repl)]
        return [str(self.repl)]

    @property
    def cwd(self) -> Path | None:
        """`lake env` finds the project from its working directory."""
        return self.project_dir if self.lake and self.project_dir and self.repl.suffix != ".py" else None


def project_versions(project: Path | None) -> tuple[str | None, str | None]:
    """(Lean toolchain, Mathlib rev) of a Lake project, read from its files."""
    if project is None:
        return None, None
    lean = mathlib = None
    tc = project / "lean-toolchain"
    if tc.is_file():
        lean = tc.read_text().strip().split(":")[-1] or None
    manifest = project / "lake-manifest.json"
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text())
            for pkg in data.get("packages", []):
                if pkg.get("name", "").lower() == "mathlib":
                    mathlib = pkg.get("inputRev") or pkg.get("rev")
        except (ValueError, OSError):
            pass
    if mathlib is None and (project / "Mathlib.lean").is_file():
        mathlib = _git_describe(project)  # the project *is* Mathlib
    return lean, mathlib


def _git_describe(path: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(path), "describe", "--tags", "--always"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _find_project(settings: LeanSettings | None) -> Path | None:
    configured = _setting(settings, "project_dir")
    if configured:
        return Path(configured).expanduser()
    default = lean_home() / "mathlib4"
    return default if (default / "lakefile.lean").is_file() or (default / "lakefile.toml").is_file() else None


def _find_repl(settings: LeanSettings | None, project: Path | None) -> Path | None:
    configured = _setting(settings, "repl_path")
    if configured:
        return Path(configured).expanduser()
    candidates = [lean_home() / "repl" / ".lake" / "build" / "bin" / "repl"]
    if project:
        candidates.append(project / ".lake" / "packages" / "REPL" / ".lake" / "build" / "bin" / "repl")
        candidates.append(project / ".lake" / "build" / "bin" / "repl")
    on_path = shutil.which("repl")
    if on_path:
        candidates.insert(0, Path(on_path))
    return next((c for c in candidates if c.is_file()), None)


def locate(settings: LeanSettings | None = None) -> Toolchain:
    """The toolchain the settings (duck-typed `LeanSettings`) point at, or `LeanNotFound` saying how to get it."""
    version = _setting(settings, "lean_version", DEFAULT_LEAN_VERSION)
    hint = INSTALL_HINT.format(version=version, home=lean_home())
    project = _find_project(settings)
    repl = _find_repl(settings, project)
    if repl is None:
        raise LeanNotFound(f"the Lean REPL was not found; {hint}")
    if not repl.is_file():
        raise LeanNotFound(f"the configured REPL {repl} does not exist; {hint}")
    lake_setting = _setting(settings, "lake_path")
    lake = Path(lake_setting).expanduser() if lake_setting else _which("lake")
    if lake is not None and not lake.is_file():
        raise LeanNotFound(f"the configured lake {lake} does not exist; {hint}")
    if repl.suffix != ".py":  # a real REPL needs Lean's libraries: through `lake env` in a project
        if project is None or not project.is_dir():
            raise LeanNotFound(f"no Lake project with Mathlib was found (REPL at {repl}); {hint}")
        if lake is None:
            raise LeanNotFound(f"`lake` was not found (REPL at {repl}); {hint}")
    lean_version, mathlib_version = project_versions(project)
    return Toolchain(repl=repl, lake=lake, lean=_which("lean"), project_dir=project, lean_version=lean_version,
                     mathlib_version=mathlib_version)


# ---- kernel replay (comparator) ---------------------------------------------------------------------
def _tool(env_var: str | None, configured: Any, name: str, *candidates: Path) -> Path | None:
    for given in (configured, os.environ.get(env_var) if env_var else None):
        if given:
            return Path(given).expanduser()
    on_path = shutil.which(name)
    return Path(on_path) if on_path else next((c for c in candidates if c.is_file()), None)


def comparator_paths(settings: LeanSettings | None = None) -> dict[str, Path | None]:
    """Where comparator, lean4export and landrun are (None: not found). Comparator's own environment variables
    COMPARATOR_LEAN4EXPORT / COMPARATOR_LANDRUN are honoured; `setup` installs all three under the Lean home."""
    home = lean_home()
    return {
        "comparator": _tool(None, _setting(settings, "comparator_path"), "comparator",
                            home / "comparator" / ".lake" / "build" / "bin" / "comparator"),
        "lean4export": _tool("COMPARATOR_LEAN4EXPORT", None, "lean4export",
                             home / "comparator" / ".lake" / "packages" / "lean4export" / ".lake" / "build" / "bin"
                             / "lean4export"),
        "landrun": _tool("COMPARATOR_LANDRUN", None, "landrun", home / "bin" / "landrun"),
    }


def lean4checker_path(settings: LeanSettings | None = None) -> Path | None:
    """leanprover/lean4checker: on PATH, else where `setup --comparator` builds it."""
    return _tool(None, None, "lean4checker", lean_home() / "lean4checker" / ".lake" / "build" / "bin" / "lean4checker")


def find_comparator(settings: LeanSettings | None = None) -> Any:
    """`audit.ComparatorTools`, or `LeanNotFound` naming what is missing and how to install it."""
    from lean_env.audit import ComparatorTools

    paths = comparator_paths(settings)
    missing = [name for name, path in paths.items() if path is None or not path.is_file()]
    if missing:
        raise LeanNotFound(f"kernel replay needs leanprover/comparator with lean4export and landrun; missing: "
                           f"{', '.join(missing)}. Run `subgoal lean setup --comparator` (needs internet and Go), "
                           "or set lean.comparator_path and COMPARATOR_LEAN4EXPORT / COMPARATOR_LANDRUN")
    return ComparatorTools(paths["comparator"], paths["lean4export"], paths["landrun"])


# ---- doctor -----------------------------------------------------------------------------------------
@dataclass
class Check:
    name: str
    ok: bool
    found: str = ""  # path or value
    version: str = ""
    fix: str = ""
    required: bool = True  # False: an optional piece (kernel replay); missing, Lean still works


def _version(argv: list[str], cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd)
        return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else ""
    except (OSError, subprocess.SubprocessError, IndexError):
        return ""


def doctor(settings: LeanSettings | None = None) -> list[Check]:
    """Each piece Lean needs: found or not, its version, and what to do when it is missing."""
    version = _setting(settings, "lean_version", DEFAULT_LEAN_VERSION)
    setup = f"run `subgoal lean setup` (needs internet; installs under {lean_home()})"
    checks: list[Check] = []
    elan = _which("elan")
    checks.append(Check("elan", elan is not None, str(elan or ""), _version([str(elan), "--version"]) if elan else "",
                        "" if elan else f"install elan: curl -sSfL {ELAN_INIT} | sh -s -- -y; or {setup}"))
    lake_setting = _setting(settings, "lake_path")
    lake = Path(lake_setting) if lake_setting else _which("lake")
    lake_ok = lake is not None and lake.is_file()
    checks.append(Check("lake", lake_ok, str(lake or ""), _version([str(lake), "--version"]) if lake_ok else "",
                        "" if lake_ok else f"`elan toolchain install leanprover/lean4:{version}`, or {setup}"))
    lean = _which("lean")
    checks.append(Check("lean", lean is not None, str(lean or ""), _version([str(lean), "--version"]) if lean else "",
                        "" if lean else f"`elan default leanprover/lean4:{version}`, or {setup}"))
    project = _find_project(settings)
    p_ok = project is not None and project.is_dir()
    lean_v, mathlib_v = project_versions(project if p_ok else None)
    built = p_ok and (project / ".lake" / "build").is_dir() or p_ok and (project / ".lake" / "packages").is_dir()
    checks.append(Check("mathlib project", p_ok and built, str(project or ""),
                        f"lean {lean_v or '?'}, mathlib {mathlib_v or '?'}" if p_ok else "",
                        "" if p_ok and built else (f"`lake exe cache get` in {project}" if p_ok else
                                                   f"{setup}, or set lean.project_dir in the config")))
    repl = _find_repl(settings, project)
    r_ok = repl is not None and repl.is_file()
    checks.append(Check("repl", r_ok, str(repl or ""), _git_describe(repl.parents[3]) or "" if r_ok and
                        len(repl.parents) > 3 and (repl.parents[3] / ".git").exists() else "",
                        "" if r_ok else f"{setup}, or build {REPL_GIT} at tag {version} (`lake build`) and set "
                                        "lean.repl_path in the config"))
    if r_ok and p_ok and lean_v and repl and repl.suffix != ".py":
        repl_tc = repl.parents[3] / "lean-toolchain" if len(repl.parents) > 3 else None
        if repl_tc and repl_tc.is_file():
            repl_v = repl_tc.read_text().strip().split(":")[-1]
            same = repl_v == lean_v
            checks.append(Check("versions match", same, f"repl {repl_v}, project {lean_v}", "",
                                "" if same else "build the REPL at the project's Lean version (`subgoal lean setup`)"))
    for name, path in {**comparator_paths(settings), "lean4checker": lean4checker_path(settings)}.items():
        ok = path is not None and path.is_file()
        fix = "" if ok else f"optional, for `subgoal lean audit`: `subgoal lean setup --comparator` ({COMPARATOR_GIT})"
        checks.append(Check(f"{name} (kernel replay)", ok, str(path or ""), "", fix, required=False))
    return checks


# ---- setup ------------------------------------------------------------------------------------------
@dataclass
class Step:
    what: str
    argv: list[str]
    cwd: Path | None = None
    skip: bool = False  # already done
    env: dict[str, str] = field(default_factory=dict)

    def shell(self) -> str:
        import shlex

        cmd = " ".join(shlex.quote(a) for a in self.argv)
        return f"(cd {shlex.quote(str(self.cwd))} && {cmd})" if self.cwd else cmd


def setup_plan(version: str = DEFAULT_LEAN_VERSION, home: Path | None = None) -> list[Step]:
    """The commands `subgoal lean setup` runs, in order (steps already done are marked `skip`)."""
    home = home or lean_home()
    elan_bin = Path(os.environ.get("ELAN_HOME") or Path.home() / ".elan") / "bin"
    elan = _which("elan")
    elan_cmd = str(elan or elan_bin / "elan")
    lake_cmd = str(_which("lake") or elan_bin / "lake")
    toolchain = f"leanprover/lean4:{version}"
    mathlib, repl = home / "mathlib4", home / "repl"
    return [
        Step("install elan (the Lean toolchain manager)",
             ["sh", "-c", f"curl -sSfL {ELAN_INIT} | sh -s -- -y --default-toolchain none"], skip=elan is not None),
        Step(f"install Lean {version}", [elan_cmd, "toolchain", "install", toolchain]),
        Step(f"clone Mathlib at tag {version}",
             ["git", "clone", "--depth", "1", "--branch", version, MATHLIB_GIT, str(mathlib)],
             skip=(mathlib / "lakefile.lean").is_file() or (mathlib / "lakefile.toml").is_file()),
        Step("download Mathlib's compiled .olean cache", [lake_cmd, "exe", "cache", "get"], cwd=mathlib),
        Step(f"clone the REPL at tag {version}",
             ["git", "clone", "--depth", "1", "--branch", version, REPL_GIT, str(repl)],
             skip=(repl / "lakefile.lean").is_file() or (repl / "lakefile.toml").is_file()),
        Step("build the REPL", [lake_cmd, "build"], cwd=repl),
    ]


def comparator_plan(version: str = DEFAULT_LEAN_VERSION, home: Path | None = None) -> list[Step]:
    """The extra steps of `setup --comparator`: comparator and lean4export at the pinned tag, landrun from main."""
    home = home or lean_home()
    elan_bin = Path(os.environ.get("ELAN_HOME") or Path.home() / ".elan") / "bin"
    lake_cmd = str(_which("lake") or elan_bin / "lake")
    comparator, landrun = home / "comparator", home / "landrun"
    return [
        Step(f"clone comparator at tag {version}",
             ["git", "clone", "--depth", "1", "--branch", version, COMPARATOR_GIT, str(comparator)],
             skip=(comparator / "lakefile.toml").is_file()),
        Step("build comparator and lean4export", [lake_cmd, "build", "lean4export", "comparator"], cwd=comparator),
        Step("clone landrun (main)", ["git", "clone", "--depth", "1", LANDRUN_GIT, str(landrun)],
             skip=(landrun / "go.mod").is_file()),
        Step("build landrun (needs Go)", ["go", "build", "-o", str(home / "bin" / "landrun"), "./cmd/landrun"],
             cwd=landrun),
        Step(f"clone lean4checker at tag {version}",
             ["git", "clone", "--depth", "1", "--branch", version, LEAN4CHECKER_GIT, str(home / "lean4checker")],
             skip=(home / "lean4checker" / "lakefile.toml").is_file()
             or (home / "lean4checker" / "lakefile.lean").is_file()),
        Step("build lean4checker", [lake_cmd, "build"], cwd=home / "lean4checker"),
    ]


def have_network(host: str = "github.com", port: int = 443, timeout_s: float = 5.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def run_setup(version: str = DEFAULT_LEAN_VERSION, home: Path | None = None, *, dry_run: bool = False,
              log=print, comparator: bool = False) -> list[Step]:
    """Run the plan (or only print it with `dry_run`). Fails fast, with one message, without a network."""
    plan = setup_plan(version, home) + (comparator_plan(version, home) if comparator else [])
    if dry_run:
        return plan
    if not have_network():
        raise SetupError("no network: cannot reach github.com:443, which `subgoal lean setup` needs "
                         "(run it on a machine with internet, or copy ~/.elan and "
                         f"{home or lean_home()} from one)")
    if not shutil.which("git"):
        raise SetupError("`git` is not installed; setup clones Mathlib and the REPL with it")
    if plan[0].skip is False and not shutil.which("curl"):
        raise SetupError("neither elan nor curl is installed; install elan by hand: " + ELAN_INIT)
    if comparator and not shutil.which("go"):
        raise SetupError("`go` is not installed; landrun (comparator's sandbox) is built with it: install Go "
                         "(https://go.dev/doc/install) or put a landrun binary on PATH and run setup without "
                         "--comparator")
    (home or lean_home()).mkdir(parents=True, exist_ok=True)
    for step in plan:
        if step.skip:
            log(f"[skip] {step.what}")
            continue
        log(f"[run] {step.what}: {step.shell()}")
        try:
            code = subprocess.run(step.argv, cwd=step.cwd, env={**os.environ, **step.env}).returncode
        except OSError as e:
            raise SetupError(f"{step.what} failed: {e}") from None
        if code != 0:
            raise SetupError(f"{step.what} failed (exit {code}): {step.shell()}")
    return plan

