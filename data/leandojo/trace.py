"""Tracing a Lean repository with LeanDojo into the Benchmark 4 layout (needs the `dojo` extra, Lean and
network; each missing piece is one clear error)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data.errors import DataError
from data.leandojo.format import STRATEGIES, CorpusFile, TracedTactic, TracedTheorem, _premise_use
from data.leandojo.splits import write_benchmark


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
