"""LeanDojo Benchmark 4: traced theorems as problem sets and as tactic-level training examples.

The layout is the one LeanDojo's `scripts/generate-benchmark-lean4.ipynb` writes and ReProver reads:

    <root>/corpus.jsonl       one line per Lean file: {"path", "imports": [path, ...],
                              "premises": [{"full_name", "code", "start": [l, c], "end": [l, c], "kind"}, ...]}
    <root>/metadata.json      optional: {"dataset_name", "creation_time", "from_repo": {"url", "commit"}, ...}
    <root>/{random,novel_premises}/{train,val,test}.json
                              a JSON list of theorems: {"url", "commit", "file_path", "full_name",
                              "start": [l, c], "end": [l, c], "traced_tactics": [{"tactic",
                              "annotated_tactic": [tactic with <a>premise</a> marks,
                                                   [{"full_name", "def_path", "def_pos", "def_end_pos"}, ...]],
                              "state_before", "state_after"}, ...]}

Positions are 1-based (line, column) with columns counted in characters, as LeanDojo's `Pos`.
Nothing is downloaded here: the benchmark is read from a local directory (config `leandojo_dir`).
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data.errors import DataError
from data.loaders import iter_jsonl
from data.problem import Problem

log = logging.getLogger(__name__)

BENCHMARK_DOI = "https://doi.org/10.5281/zenodo.8040109"
BENCHMARK_URL = (
    "https://zenodo.org/records/12740403/files/leandojo_benchmark_4.tar.gz"  # as ReProver fetches it
)
STRATEGIES = ("random", "novel_premises")
SPLITS = ("train", "val", "test")
SOURCE = "leandojo-benchmark-4"
MARK_START, MARK_END = "<a>", "</a>"

WHERE_TO_GET_IT = (
    f"download LeanDojo Benchmark 4 ({BENCHMARK_DOI}, file {BENCHMARK_URL}), unpack it and set "
    "`leandojo_dir` (config file, or env SUBGOAL_LEANDOJO_DIR) to the folder holding random/ and "
    "novel_premises/; or build one with `subgoal data trace`"
)


# --------------------------------------------------------------------------------------------- records
@dataclass
class PremiseUse:
    """One premise a tactic mentions (a provenance entry of `annotated_tactic`)."""

    full_name: str
    def_path: str = ""
    def_pos: list[int] = field(default_factory=list)
    def_end_pos: list[int] = field(default_factory=list)


@dataclass
class TracedTactic:
    tactic: str
    annotated_tactic: str  # the tactic with premises marked <a>...</a>
    premises: list[PremiseUse]
    state_before: str
    state_after: str

    def to_json(self) -> dict[str, Any]:
        return {
            "tactic": self.tactic,
            "annotated_tactic": [self.annotated_tactic, [asdict(p) for p in self.premises]],
            "state_before": self.state_before,
            "state_after": self.state_after,
        }


@dataclass
class TracedTheorem:
    url: str
    commit: str
    file_path: str
    full_name: str
    start: list[int]
    end: list[int]
    traced_tactics: list[TracedTactic]

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "traced_tactics"}
        return {**d, "traced_tactics": [t.to_json() for t in self.traced_tactics]}

    def premise_names(self) -> list[str]:
        return [p.full_name for t in self.traced_tactics for p in t.premises]


@dataclass
class CorpusFile:
    """One line of corpus.jsonl: the premises a Lean file defines and the files it imports."""

    path: str
    imports: list[str]
    premises: list[dict[str, Any]]  # {"full_name", "code", "start", "end", "kind"}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def remove_marks(s: str) -> str:
    return s.replace(MARK_START, "").replace(MARK_END, "")


def _pos(v: Any, what: str) -> list[int]:
    if not (isinstance(v, list | tuple) and len(v) == 2 and all(isinstance(x, int) for x in v)):
        raise DataError(f"{what}: expected a [line, column] pair, got {v!r}")
    return [int(v[0]), int(v[1])]


def _premise_use(p: dict[str, Any]) -> PremiseUse:
    return PremiseUse(
        p["full_name"],
        str(p.get("def_path", "")),
        list(p.get("def_pos") or []),
        list(p.get("def_end_pos") or []),
    )


def _tactic_from_json(d: Any, where: str) -> TracedTactic:
    if not isinstance(d, dict):
        raise DataError(f"{where}: a traced tactic must be a JSON object")
    for key in ("tactic", "state_before", "state_after"):
        if not isinstance(d.get(key), str):
            raise DataError(f"{where}: traced tactic lacks the string field {key!r}")
    annotated, premises = d["tactic"], []
    ann = d.get("annotated_tactic")
    if ann is not None:  # [marked tactic, provenances]; older dumps may hold only the string
        if isinstance(ann, str):
            annotated = ann
        elif isinstance(ann, list) and len(ann) == 2 and isinstance(ann[0], str) and isinstance(ann[1], list):
            annotated = ann[0]
            for p in ann[1]:
                if not isinstance(p, dict) or not isinstance(p.get("full_name"), str):
                    raise DataError(f"{where}: premise provenance without a full_name: {p!r}")
                premises.append(_premise_use(p))
        else:
            raise DataError(f"{where}: annotated_tactic must be [marked tactic, [provenance, ...]]")
    return TracedTactic(d["tactic"], annotated, premises, d["state_before"], d["state_after"])


def theorem_from_json(d: Any, where: str) -> TracedTheorem:
    if not isinstance(d, dict):
        raise DataError(f"{where}: a theorem must be a JSON object")
    for key in ("url", "commit", "file_path", "full_name"):
        if not isinstance(d.get(key), str):
            raise DataError(f"{where}: theorem lacks the string field {key!r}")
    tactics = d.get("traced_tactics", [])
    if not isinstance(tactics, list):
        raise DataError(f"{where}: traced_tactics must be a list")
    w = f"{where} ({d['full_name']})"
    return TracedTheorem(
        d["url"],
        d["commit"],
        d["file_path"],
        d["full_name"],
        _pos(d.get("start"), f"{w} start"),
        _pos(d.get("end"), f"{w} end"),
        [_tactic_from_json(t, f"{w} tactic {i}") for i, t in enumerate(tactics)],
    )


# --------------------------------------------------------------------------------------------- reading
def benchmark_root(path: str | Path | None) -> Path:
    """The benchmark directory, checked; the error says where to get it when it is unset or incomplete."""
    if path is None:
        raise DataError(f"no LeanDojo benchmark configured: {WHERE_TO_GET_IT}")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"LeanDojo benchmark directory {root} does not exist: {WHERE_TO_GET_IT}")
    if not any((root / s).is_dir() for s in STRATEGIES):
        raise DataError(
            f"{root} has neither random/ nor novel_premises/, so it is no LeanDojo benchmark: "
            f"{WHERE_TO_GET_IT}"
        )
    return root


def read_theorems(root: str | Path, strategy: str, split: str) -> list[TracedTheorem]:
    """The theorems of one `<strategy>/<split>.json` file."""
    if strategy not in STRATEGIES:
        raise DataError(
            f"unknown LeanDojo split strategy {strategy!r} (expected one of {', '.join(STRATEGIES)})"
        )
    if split not in SPLITS:
        raise DataError(f"unknown LeanDojo split {split!r} (expected one of {', '.join(SPLITS)})")
    path = Path(root) / strategy / f"{split}.json"
    if not path.is_file():
        raise DataError(f"{path} does not exist: {WHERE_TO_GET_IT}")
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of theorems")
    return [theorem_from_json(d, f"{path} item {i}") for i, d in enumerate(data)]


def read_corpus(root: str | Path) -> Iterator[CorpusFile]:
    """The premise corpus, one Lean file at a time (corpus.jsonl is large; it is streamed)."""
    path = Path(root) / "corpus.jsonl"
    if not path.is_file():
        raise DataError(f"{path} does not exist: {WHERE_TO_GET_IT}")
    for lineno, d in iter_jsonl(path):  # streamed
        if not isinstance(d, dict) or not isinstance(d.get("path"), str):
            raise DataError(f"{path}:{lineno}: expected an object with a string `path`")
        premises = d.get("premises", [])
        if not isinstance(premises, list) or any(not isinstance(p, dict) for p in premises):
            raise DataError(f"{path}:{lineno}: `premises` must be a list of objects")
        yield CorpusFile(d["path"], list(d.get("imports", [])), premises)


def premise_index(root: str | Path) -> dict[str, dict[str, Any]]:
    """full_name -> premise record (with its file `path`), skipping ill-formed entries as ReProver does."""
    out: dict[str, dict[str, Any]] = {}
    for cf in read_corpus(root):
        for p in cf.premises:
            name = p.get("full_name")
            if not isinstance(name, str) or not p.get("code") or "user__.n" in name or name.startswith("["):
                continue
            out[name] = {**p, "path": cf.path}
    return out


# --------------------------------------------------------------------------------------------- statements
_SUPERSCRIPT = "⁰¹²³⁴⁵⁶⁷⁸⁹"
_INACCESSIBLE = re.compile(rf"([^\W\d][\w'!?]*)?✝[{_SUPERSCRIPT}]*")
_DECL_KEYWORD = re.compile(r"\b(theorem|lemma)\s")
_OPEN, _CLOSE = "([{⦃⟨", ")]}⦄⟩"
_UNIVERSE = re.compile(r"\b(?:Type|Sort)\s+(\((?:[^()]|\([^()]*\))*\)|[^\W\d][\w.]*)")
_UNIVERSE_KEYWORDS = {"max", "imax", "_"}


_SCAN = re.compile(r'--|/-|"|:=|[([{⦃⟨]|[)\]}⦄⟩]')


def _top_level_assign(text: str) -> int:
    """Index of the first `:=` outside brackets, comments and strings; -1 when there is none."""
    depth, i = 0, 0
    while (m := _SCAN.search(text, i)) is not None:
        tok, i = m.group(), m.end()
        if tok == "--":
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl
        elif tok == "/-":
            close = text.find("-/", i)
            i = len(text) if close < 0 else close + 2
        elif tok == '"':
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
        elif tok == ":=":
            if depth == 0:
                return m.start()
        elif tok in _OPEN:
            depth += 1
        else:
            depth = max(0, depth - 1)
    return -1


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
    if text.lstrip().startswith("/-"):  # a docstring in the span may itself say "theorem"
        close = text.find("-/")
        text = text[close + 2 :] if close >= 0 else ""
    kw = _DECL_KEYWORD.search(text)
    if kw is None:
        return None
    text = text[kw.start() :]
    cut = _top_level_assign(text)
    short_name = thm.full_name.rsplit(".", 1)[-1].strip("«»")
    if cut < 0 or short_name not in text[:cut]:  # equation-compiler proof, or a checkout at another commit
        return None
    return _header_before(lines, thm.start[0]), text[:cut].rstrip() + " := by"


def _first_goal(state: str) -> str | None:
    goals = [g for g in state.split("\n\n") if "⊢" in g]
    return goals[0] if goals else None


def _fresh_names(goal: str) -> str:
    """Replace inaccessible names (`x✝`, `inst✝¹`) by valid identifiers, consistently across the goal."""
    taken = set(re.findall(r"[^\W\d][\w']*", goal))
    mapping: dict[str, str] = {}
    for m in _INACCESSIBLE.finditer(goal):
        if m.group(0) in mapping:
            continue
        base = m.group(1) or "x"
        k = 1
        while f"{base}_{k}" in taken:
            k += 1
        taken.add(f"{base}_{k}")
        mapping[m.group(0)] = f"{base}_{k}"
    return _INACCESSIBLE.sub(lambda m: mapping[m.group(0)], goal)


def statement_from_state(name: str, state: str) -> tuple[str, str] | None:
    """(universe header, statement) rendering a pretty-printed goal as a theorem: hypotheses become binders.

    Only the first goal counts (it is the theorem's own goal before any tactic ran). Returns None for goals
    that cannot be written back as binders (let-bound hypotheses).
    """
    goal = _first_goal(state)
    if goal is None:
        return None
    goal = _fresh_names(goal)
    hyps_text, concl = goal.split("⊢", 1)
    decls: list[list[str]] = []
    for line in hyps_text.split("\n"):
        if not line.strip() or re.fullmatch(r"case\s+\S+", line.strip()):
            continue
        if line[0].isspace() and decls:  # a long type wrapped onto the next line
            decls[-1].append(line.strip())
        else:
            decls.append([line.strip()])
    binders = []
    for parts in decls:
        decl = " ".join(parts)
        if " : " not in decl:
            return None
        names, typ = decl.split(" : ", 1)
        if _top_level_assign(typ) >= 0:  # `x : T := v` is a let, not a hypothesis
            return None
        if re.fullmatch(r"inst_\d+", names) and len(re.findall(rf"\b{names}\b", goal)) == 1:
            binders.append(f"[{typ}]")
        else:
            binders.append(f"({names} : {typ})")
    concl = " ".join(s.strip() for s in concl.strip().split("\n"))
    ident = name if re.fullmatch(r"[^\W\d][\w'.]*", name) else "«" + name.replace("»", "") + "»"
    statement = f"theorem {ident}{''.join(' ' + b for b in binders)} :\n    {concl} := by"
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


# --------------------------------------------------------------------------------------------- SFT examples
def tactic_prompt(state: str) -> str:
    """The prompt of a tactic-level example: the goal state, then the place for the next tactic."""
    return f"[GOAL]\n{state}\n[PROOFSTEP]\n"


TacticRender = Callable[
    [Problem, tuple[str, ...], str], str
]  # (problem, tactics so far, goal state) -> prompt

_SCOPE = re.compile(
    r"^(import|open|namespace|section|end|variable|universe|set_option|noncomputable section|local notation|"
    r"notation|scoped notation|attribute \[local)\b"
)


def scope_header(header: str) -> str:
    """The lines of a file prefix that set the scope (imports, opens, namespaces, sections, variables,
    universes, options, notation), without the declarations in between: a short header for prompts."""
    return "".join(line + "\n" for line in header.split("\n") if _SCOPE.match(line))


def tactic_examples(
    theorems: Iterable[TracedTheorem],
    strategy: str,
    split: str,
    source_dir: Path | SourceFiles | None = None,
    render: TacticRender | None = None,
) -> Iterator[dict[str, Any]]:
    """Tactic-level SFT records (goal state -> next tactic) in the common example format.

    `statement` is the theorem's statement (so decontamination sees the theorem the tactic came from);
    `premises` lists the full names of the premises the tactic used (from `annotated_tactic`). The prompt is
    `tactic_prompt(state)` unless `render(problem, tactics so far, state)` is given (e.g. the prover's tree-search
    template); "tactics so far" are the theorem's earlier traced tactics, which LeanDojo records in source order
    (nested tactic blocks included), so that history is approximate.
    """
    if isinstance(source_dir, Path):
        source_dir = SourceFiles(source_dir)
    for thm in theorems:
        problem = to_problem(thm, strategy, split, source_dir)
        statement = problem.formal_statement if problem is not None else ""
        before: list[str] = []
        for tac in thm.traced_tactics:
            if tac.state_before.strip() == "no goals":
                continue
            tactic = remove_marks(tac.tactic)
            if render is not None and problem is not None:
                prompt = render(problem, tuple(before), tac.state_before)
            else:
                prompt = tactic_prompt(tac.state_before)
            before.append(tactic)
            yield {
                "prompt": prompt,
                "completion": tactic,
                "kind": "tactic",
                "problem": thm.full_name,
                "statement": statement,
                "source": f"{SOURCE}/{strategy}/{split}",
                "premises": [p.full_name for p in tac.premises],
            }


def write_tactic_examples(
    root: str | Path | None,
    strategy: str,
    split: str,
    out: str | Path,
    source_dir: str | Path | None = None,
    render: TacticRender | None = None,
) -> int:
    """Write the tactic examples of one split as JSONL (what `data.sft_dataset.read_examples` reads)."""
    root = benchmark_root(root)
    theorems = read_theorems(root, strategy, split)
    src = _source_files(root, theorems, source_dir)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    tmp = out.with_name(out.name + ".part")  # never leave a half-written file under the final name
    with tmp.open("w", encoding="utf-8") as f:
        for ex in tactic_examples(theorems, strategy, split, src, render):
            f.write(json.dumps(ex, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(out)
    return n


# --------------------------------------------------------------------------------------------- splitting
Split = dict[str, list[TracedTheorem]]


def _sizes(n: int, num_val: int | None, num_test: int | None) -> tuple[int, int]:
    """LeanDojo Benchmark 4 holds out 2000 + 2000; a small repository holds out a tenth each."""
    default = min(2000, n // 10)
    return (default if num_val is None else num_val), (default if num_test is None else num_test)


def split_randomly(
    theorems: list[TracedTheorem], num_val: int | None = None, num_test: int | None = None, seed: int = 3407
) -> Split:
    nv, nt = _sizes(len(theorems), num_val, num_test)
    shuffled = list(theorems)
    random.Random(seed).shuffle(shuffled)
    n_train = max(0, len(shuffled) - nv - nt)
    return {
        "train": shuffled[:n_train],
        "val": shuffled[n_train : n_train + nv],
        "test": shuffled[n_train + nv :],
    }


def split_by_premise(
    theorems: list[TracedTheorem], num_val: int | None = None, num_test: int | None = None, seed: int = 3407
) -> Split:
    """Held-out theorems each use at least one premise that no training theorem uses (LeanDojo's scheme:
    take the premises used by the fewest theorems first and move all their users to val/test)."""
    nv, nt = _sizes(len(theorems), num_val, num_test)
    users: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(theorems):
        for p in dict.fromkeys(t.premise_names()):
            users[p].append(i)
    held: dict[int, None] = {}
    for _, idx in sorted(users.items(), key=lambda kv: (len(kv[1]), kv[0])):
        if len(held) >= nv + nt:
            break
        held.update(dict.fromkeys(idx))
    held_out = [theorems[i] for i in held]
    random.Random(seed).shuffle(held_out)
    return {
        "train": [t for i, t in enumerate(theorems) if i not in held],
        "val": held_out[:nv],
        "test": held_out[nv:],
    }


def write_benchmark(
    out_dir: str | Path,
    theorems: list[TracedTheorem],
    corpus: Iterable[CorpusFile],
    metadata: dict[str, Any] | None = None,
    num_val: int | None = None,
    num_test: int | None = None,
    seed: int = 3407,
) -> dict[str, dict[str, int]]:
    """Write theorems in the LeanDojo Benchmark 4 layout (both split strategies) plus corpus.jsonl.

    Returns the number of theorems per strategy and split. Refuses to overwrite an existing benchmark.
    """
    out = Path(out_dir)
    if any((out / s).exists() for s in STRATEGIES):
        raise DataError(f"{out} already holds a benchmark; choose an empty --out directory")
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, dict[str, int]] = {}
    for strategy, split_fn in (("random", split_randomly), ("novel_premises", split_by_premise)):
        (out / strategy).mkdir()
        splits = split_fn(theorems, num_val, num_test, seed)
        counts[strategy] = {}
        for name, thms in splits.items():
            with (out / strategy / f"{name}.json").open("w", encoding="utf-8") as f:
                json.dump([t.to_json() for t in thms], f, ensure_ascii=False)
            counts[strategy][name] = len(thms)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for cf in corpus:
            f.write(json.dumps(cf.to_json(), ensure_ascii=False) + "\n")
    (out / "metadata.json").write_text(json.dumps({**(metadata or {}), "splits": counts}, indent=2))
    return counts


# --------------------------------------------------------------------------------------------- tracing
def import_lean_dojo() -> Any:
    """`lean_dojo`, imported only when needed (it is the optional `dojo` extra, and slow to import)."""
    try:
        import lean_dojo
    except ImportError as e:
        raise DataError(
            f"LeanDojo is not installed ({e}): install the optional extra with `pip install 'subgoal[dojo]'` "
            "(or `pip install lean-dojo`)"
        ) from None
    return lean_dojo


def _require_lean() -> None:
    import shutil

    missing = [tool for tool in ("lean", "lake") if shutil.which(tool) is None]
    if missing:
        raise DataError(
            f"tracing needs a Lean 4 toolchain, and {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            "not on PATH: install elan "
            "(https://github.com/leanprover/elan), then re-run; LeanDojo also needs network access to clone "
            "the repository and its dependencies (set GITHUB_ACCESS_TOKEN for the GitHub API)"
        )


def _file_path(traced_repo: Any, thm: Any) -> str:
    """Benchmark `file_path`: relative to the traced repo; a dependency's files under .lake/packages/<name>."""
    if thm.repo == traced_repo.repo:
        return str(thm.theorem.file_path)
    for name, dep in traced_repo.dependencies.items():
        if dep == thm.repo:
            return f".lake/packages/{name}/{thm.theorem.file_path}"
    raise DataError(f"theorem {thm.theorem.full_name} belongs to no repository of the trace")


def theorem_from_traced(traced_repo: Any, thm: Any) -> TracedTheorem:
    """One `lean_dojo.TracedTheorem` as a benchmark record (the fields LeanDojo's own exporter writes)."""
    tactics = []
    for t in thm.get_traced_tactics():
        if t.state_before == "no goals" or "·" in t.tactic:  # LeanDojo's exporter skips these too
            continue
        annotated, provenance = t.get_annotated_tactic()
        premises = [_premise_use(p) for p in provenance]
        tactics.append(TracedTactic(t.tactic, annotated, premises, t.state_before, t.state_after))
    return TracedTheorem(
        traced_repo.repo.url,
        traced_repo.repo.commit,
        _file_path(traced_repo, thm),
        thm.theorem.full_name,
        list(thm.start),
        list(thm.end),
        tactics,
    )


def corpus_from_traced(traced_repo: Any) -> Iterator[CorpusFile]:
    """Every traced file's premise definitions, dependencies first (LeanDojo's corpus.jsonl order)."""
    import networkx as nx

    graph = traced_repo.traced_files_graph
    for node in reversed(list(nx.topological_sort(graph))):
        tf = graph.nodes[node]["traced_file"]
        yield CorpusFile(str(tf.path), [str(s) for s in graph.successors(node)], tf.get_premise_definitions())


def trace_repo(
    url: str,
    commit: str,
    out_dir: str | Path,
    num_val: int | None = None,
    num_test: int | None = None,
    build_deps: bool = True,
) -> dict[str, dict[str, int]]:
    """Trace a Lean repository with LeanDojo and write it in the benchmark layout to `out_dir`.

    The traced checkout is copied to `out_dir/repos/<name>`, where `load_problems` finds it to read statements
    from source. Needs `lean_dojo`, a Lean toolchain and network; each missing piece is one clear error.
    """
    out = Path(out_dir)
    if any((out / s).exists() for s in STRATEGIES) or (out / "repos").exists():
        raise DataError(
            f"{out} already holds a benchmark or a traced repository; choose an empty --out directory"
        )
    lean_dojo = import_lean_dojo()
    _require_lean()
    try:
        repo = lean_dojo.LeanGitRepo(url, commit)
    except Exception as e:  # PyGithub / GitPython / network errors alike: the user can only fix the input
        raise DataError(
            f"cannot open {url} at {commit} ({type(e).__name__}: {e}); check the URL and commit, "
            "and that the network (GitHub) is reachable"
        ) from None
    try:
        traced = lean_dojo.trace(repo, dst_dir=out / "repos", build_deps=build_deps)
    except Exception as e:
        raise DataError(f"LeanDojo could not trace {url} at {commit}: {type(e).__name__}: {e}") from None
    theorems = [theorem_from_traced(traced, t) for t in traced.get_traced_theorems() if not t.repo.is_lean4]
    metadata = {
        "dataset_name": f"LeanDojo trace of {url}",
        "from_repo": {"url": repo.url, "commit": repo.commit},
        "leandojo_version": getattr(lean_dojo, "__version__", ""),
    }
    return write_benchmark(out, theorems, corpus_from_traced(traced), metadata, num_val, num_test)
