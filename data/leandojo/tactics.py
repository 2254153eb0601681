"""Tactic-level SFT examples (goal state -> next tactic, with the premises it used) from LeanDojo theorems."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from data.leandojo.format import SOURCE, TracedTheorem, benchmark_root, read_theorems, remove_marks
from data.leandojo.statements import SourceFiles, _source_files, to_problem
from data.problem import Problem


def tactic_prompt(state: str) -> str:
    """The prompt of a tactic-level example: the goal state, then the place for the next tactic."""
    return f"[GOAL]\n{state}\n[PROOFSTEP]\n"


TacticRender = Callable[
    [Problem, tuple[str, ...], str], str
]  # (problem, tactics so far, goal state) -> prompt



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
