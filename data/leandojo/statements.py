"""LeanDojo theorems as `Problem`s: the statement read from a checkout of the repository, or rebuilt from the
first traced goal state (hypotheses as binders), and the registry's loaders."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from data.errors import DataError
from data.leandojo.format import SOURCE, SPLITS, TracedTheorem, benchmark_root, read_theorems
from data.problem import Problem
from lean_env.decompose import lemma_statement
from lean_env.text import declarations

log = logging.getLogger(__name__)

_UNIVERSE = re.compile(r"\b(?:Type|Sort)\s+(\((?:[^()]|\([^()]*\))*\)|[^\W\d][\w.]*)")
_UNIVERSE_KEYWORDS = {"max", "imax", "_"}


def _slice(lines: list[str], start: list[int], end: list[int]) -> str:
    """`lean_file[start:end]` of LeanDojo: 1-based lines, 1-based character columns, end exclusive."""
    (l0, c0), (l1, c1) = start, end
    if l0 == l1:
        return lines[l0 - 1][c0 - 1 : c1 - 1]
    return "\n".join([lines[l0 - 1][c0 - 1 :], *lines[l0 : l1 - 1], lines[l1 - 1][: c1 - 1]])


def _header_before(lines: list[str], line_nb: int) -> str:
    """The file up to the theorem's line, less the docstring/attributes that belong to the theorem itself."""
    k = line_nb - 1
    while k > 0:
        prev = lines[k - 1].strip()
        if prev.startswith("@[") and prev.endswith("]"):
            k -= 1
        elif prev.endswith("-/"):  # walk back over a docstring block ending right above
            j = k - 1
            while j >= 0 and "/--" not in lines[j]:
                j -= 1
            if j < 0:
                break
            k = j
        else:
            break
    return "".join(line + "\n" for line in lines[:k])


class SourceFiles:
    """Lines of the checkout's files, each read once (a split has many theorems per file, in shuffled order)."""

    def __init__(self, root: Path):
        self.root = root
        self._lines: dict[str, list[str] | None] = {}

    def lines(self, file_path: str) -> list[str] | None:
        if file_path not in self._lines:
            path = self.root / file_path
            self._lines[file_path] = path.read_text(encoding="utf-8").split("\n") if path.is_file() else None
        return self._lines[file_path]


def statement_from_source(thm: TracedTheorem, source: Path | SourceFiles) -> tuple[str, str] | None:
    """(header, formal_statement) read from a checkout of the theorem's repository, or None.

    The statement is the source text from `start` up to the top-level `:=`, ending in `:= by`; the header is
    the file before the theorem, so the statement elaborates in its own namespaces, variables and notation.
    """
    lines = (source if isinstance(source, SourceFiles) else SourceFiles(source)).lines(thm.file_path)
    if lines is None:
        return None
    try:
        text = _slice(lines, thm.start, thm.end)
    except IndexError:
        return None
    thms = [d for d in declarations(text) if d.kind in ("theorem", "lemma")]  # (a docstring may say "theorem")
    if not thms:
        return None
    d = thms[0]
    cut = -1 if d.sig_end is None else d.sig_end - 2 - d.keyword
    text = text[d.keyword :]
    short_name = thm.full_name.rsplit(".", 1)[-1].strip("«»")
    if cut < 0 or short_name not in text[:cut]:  # equation-compiler proof, or a checkout at another commit
        return None
    return _header_before(lines, thm.start[0]), text[:cut].rstrip() + " := by"


def _first_goal(state: str) -> str | None:
    goals = [g for g in state.split("\n\n") if "⊢" in g]
    return goals[0] if goals else None


def statement_from_state(name: str, state: str) -> tuple[str, str] | None:
    """(universe header, statement) rendering a pretty-printed goal as a theorem, by `lean_env.decompose`'s one
    goal -> statement rule. Only the first goal counts (it is the theorem's own goal before any tactic ran);
    None when it cannot be read."""
    goal = _first_goal(state)
    if goal is None:
        return None
    try:
        statement = lemma_statement(name, goal)
    except ValueError:  # a hypothesis line that is not `names : type`
        return None
    universes = []
    for m in _UNIVERSE.finditer(goal):
        for u in re.findall(r"[^\W\d][\w]*", m.group(1)):
            if u not in _UNIVERSE_KEYWORDS and u not in universes:
                universes.append(u)
    header = f"universe {' '.join(universes)}\n\n" if universes else ""
    return header, statement


def find_source_dir(root: Path | None, url: str) -> Path | None:
    """A checkout of the benchmark's repository beside the data: `<root>/repos/<name>` or `<root>/<name>`."""
    if root is None:
        return None
    name = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    for cand in (root / "repos" / name, root / name):
        if cand.is_dir():
            return cand
    return None


def to_problem(
    thm: TracedTheorem,
    strategy: str,
    split: str,
    source_dir: Path | SourceFiles | None = None,
    header: str = "import Mathlib\n",
) -> Problem | None:
    """A `Problem` for one traced theorem; None when neither its source nor a traced state is available.

    With a checkout (`source_dir`) the statement is the theorem's own text; otherwise it is derived from the
    first `state_before`, under `header` (the imports the repository's theorems need), marked
    `extra["statement_origin"] = "state_before"`.
    """
    extra: dict[str, Any] = {
        "url": thm.url,
        "commit": thm.commit,
        "file_path": thm.file_path,
        "full_name": thm.full_name,
        "start": thm.start,
        "end": thm.end,
        "strategy": strategy,
        "num_tactics": len(thm.traced_tactics),
    }
    found = statement_from_source(thm, source_dir) if source_dir is not None else None
    if found is not None:
        head, stmt = found
        extra["statement_origin"] = "source"
        extra["prompt_header"] = scope_header(
            head
        )  # the file prefix can be long; prompts need only the scope
    else:
        if not thm.traced_tactics:
            return None
        derived = statement_from_state(thm.full_name, thm.traced_tactics[0].state_before)
        if derived is None:
            return None
        universes, stmt = derived
        head = (header.rstrip("\n") + "\n\n" if header.strip() else "") + universes
        extra["statement_origin"] = "state_before"
    return Problem(thm.full_name, stmt, header=head, split=split, source=f"{SOURCE}/{strategy}", extra=extra)


def _source_files(
    root: Path, theorems: list[TracedTheorem], source_dir: str | Path | None
) -> SourceFiles | None:
    src = Path(source_dir) if source_dir else (find_source_dir(root, theorems[0].url) if theorems else None)
    return SourceFiles(src) if src is not None else None


def load_problems(
    root: str | Path | None,
    strategy: str,
    split: str | None = None,
    source_dir: str | Path | None = None,
) -> list[Problem]:
    """The theorems of one split strategy as problems (all three splits when `split` is None)."""
    root = benchmark_root(root)
    problems: list[Problem] = []
    skipped = 0
    seen: dict[str, int] = {}
    for sp in [split] if split else list(SPLITS):
        theorems = read_theorems(root, strategy, sp)
        src = _source_files(root, theorems, source_dir)
        for thm in theorems:
            p = to_problem(thm, strategy, sp, src)
            if p is None:
                skipped += 1
                continue
            seen[p.name] = seen.get(p.name, 0) + 1
            if seen[p.name] > 1:  # private theorems of different files may share a name
                p.name = f"{p.name}__{seen[p.name]}"
            problems.append(p)
    if skipped:
        log.warning("%d LeanDojo theorems skipped: no source checkout and no traced tactic state", skipped)
    return problems


def missing(config: Any) -> str | None:
    """Why the benchmark under `config.leandojo_dir` cannot be loaded now (None when it can); no loading."""
    try:
        benchmark_root(getattr(config, "leandojo_dir", None))
    except DataError as e:
        return str(e)
    return None


def load(config: Any, strategy: str, split: str | None = None) -> list[Problem]:
    """The registry's loader: `leandojo-random` / `leandojo-novel` from `config.leandojo_dir`."""
    return load_problems(getattr(config, "leandojo_dir", None), strategy, split)

_SCOPE = re.compile(
    r"^(import|open|namespace|section|end|variable|universe|set_option|noncomputable section|local notation|"
    r"notation|scoped notation|attribute \[local)\b"
)


def scope_header(header: str) -> str:
    """The lines of a file prefix that set the scope (imports, opens, namespaces, sections, variables,
    universes, options, notation), without the declarations in between: a short header for prompts."""
    return "".join(line + "\n" for line in header.split("\n") if _SCOPE.match(line))
