"""Verified attempts -> SFT examples in the prover's own prompt formats (`prover.prompts`), and the dataset
build that `subgoal train data` / expert iteration run.

Kinds: `whole_proof` (the `complete` template: prompt ends inside the open ```lean4 block after the statement,
completion = the tactic proof + closing fence, exactly what whole-proof sampling generates); from a
decomposition trace, `sketch` (the `sketch` template -> the sketch block) and `lemma` (each proved lemma as its
own `complete` example); from a repair trace, `repair` (the `repair` template with the failed proof and Lean's
errors -> the fixed proof); and `cold_start`, DeepSeek-Prover-V2's cold-start CoT data: for a problem that no
attempt solved end to end but whose decomposition had every lemma proved, the `cot` prompt -> the planner's
analysis and sketch followed by the composed, verified complete proof. Every example's `statement` is the
original problem's statement, so decontamination of a benchmark problem also removes everything derived from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data.errors import DataError
from data.problem import Problem
from data.sft_dataset import (
    KINDS,
    BuildReport,
    NoExamples,
    build_sft_dataset,
    examples_from_attempts,
    read_examples,
    verified_attempts,
)
from lean_env import text as lean_text
from lean_env.verdict import Status
from prover.prompts import PromptSet, load_prompts

if TYPE_CHECKING:
    from data.config import Config
    from data.store import Attempt

# The `prover.prompts` template each example kind's prompt is rendered with (rendered as plain text: SFT applies
# the trained tokenizer's chat template to the kinds whose template is a chat turn, as generation does).
TEMPLATE_OF_KIND = {"whole_proof": "complete", "lemma": "complete", "sketch": "sketch", "repair": "repair",
                    "tactic": "tactic", "cold_start": "cot"}


def proof_body(src: str, name: str | None = None) -> str | None:
    """The tactic proof of theorem `name` (default: the last theorem) in `src`: the lines after `:= by`,
    indented as a continuation of the statement. None when the proof is not a tactic block."""
    name = name or lean_text.theorem_name(src)
    d = lean_text.find_decl(src, name, ("theorem", "lemma")) if name else None
    if d is None or d.sig_end is None:
        return None
    rest = src[d.sig_end : d.end]
    stripped = rest.lstrip()
    if not stripped.startswith("by"):
        return None
    tactics = stripped[2:]
    if not tactics.startswith("\n"):  # `:= by tac` on one line
        tactics = "\n  " + tactics.strip()
    body = tactics.strip("\n").rstrip()
    return body + "\n" if body.strip() else None


def problem_of(attempt: Attempt, problems: dict[str, Problem]) -> Problem | None:
    """The attempted problem: from the problem set when given, else recovered from the submitted text."""
    if attempt.problem in problems:
        return problems[attempt.problem]
    header, body = lean_text.split_header(attempt.text)
    name = lean_text.theorem_name(body)
    statement = lean_text.theorem_statement(body, name) if name else None
    if statement is None:
        return None
    return Problem(name=attempt.problem, formal_statement=lean_text.preamble(body) + statement + " by",
                   header=header, split=attempt.split)


def _example(kind: str, prompt: str, completion: str, problem: Problem, source: str) -> dict[str, str]:
    return {"prompt": prompt, "completion": completion, "kind": kind, "problem": problem.name,
            "statement": problem.formal_statement, "source": source}


def composed_sketch(trace: dict[str, Any]) -> dict[str, Any] | None:
    """The sketch node of a decompose trace that was proved by composing proved lemmas (not proved outright)."""
    for node in trace.get("sketches") or []:
        if node.get("status") == "proved" and node.get("subgoals") and (node.get("recomposed") or {}).get("text"):
            return node
    return None


def solved_end_to_end(attempts: Iterable[Attempt]) -> set[str]:
    """Problems with a verified proof that did not come from composing lemmas (whole proof, repair, tree, or a
    sketch that was already a proof)."""
    return {a.problem for a in attempts if composed_sketch(a.trace or {}) is None}


def make_renderer(problems: dict[str, Problem] | None = None, prompts: PromptSet | None = None,
                  end_to_end: set[str] | None = None):
    """A `render(attempt) -> list[example]` for `data.sft_dataset` (only ever given verified attempts).
    `end_to_end`: the problems solved end to end (no cold-start example for them); None: no cold-start kind."""
    prompts = prompts or load_prompts()
    problems = problems or {}

    def whole_proof(problem: Problem, src: str, source: str) -> list[dict[str, str]]:
        name = lean_text.theorem_name(problem.formal_statement)
        body = proof_body(src, name)
        others = [d for d in lean_text.declarations(lean_text.split_header(src)[1])
                  if d.full_name != name and d.kind in ("theorem", "lemma")]
        if body is None or others:  # helper lemmas before the theorem cannot continue the open statement
            return []
        return [_example("whole_proof", prompts.render("complete", problem), body + "```", problem, source)]

    def decomposition(problem: Problem, trace: dict, root: Problem, source: str) -> list[dict[str, str]]:
        """`sketch` and `lemma` examples from a decompose trace (`prover.search.decompose`): the sketch that
        led to the proof, and every proved lemma (recursively through lemmas that were decomposed again)."""
        out = []
        for node in trace.get("sketches") or []:
            if node.get("status") not in ("proved", "proved_outright") or not node.get("sketch"):
                continue
            out.append(_example("sketch", prompts.render("sketch", problem), f"```lean4\n{node['sketch'].strip()}\n```",
                                root, source))
            for sub in node.get("subgoals") or []:
                if sub.get("status") != Status.PROVED or not sub.get("statement"):
                    continue
                lemma = Problem(name=sub.get("name", "lemma"), formal_statement=sub["statement"], header=problem.header)
                body = proof_body(sub.get("proof") or "", lean_text.theorem_name(sub["statement"]))
                if body:
                    out.append(_example("lemma", prompts.render("complete", lemma), body + "```", root, source))
                deeper = (sub.get("trace") or {}).get("decompose")
                if isinstance(deeper, dict):
                    out += decomposition(lemma, deeper, root, source)
        return out

    def repairs(problem: Problem, trace: dict, src: str, source: str) -> list[dict[str, str]]:
        """`repair` examples from a repair trace whose chain entries carry the candidate `text` and its
        `errors`: the failed candidate right before the accepted fix, with Lean's errors -> the fix."""
        out = []
        for chain in trace.get("chains") or []:
            if len(chain) < 2 or chain[-1].get("status") != Status.PROVED or chain[-1].get("kind") != "repair":
                continue
            failed = chain[-2]
            body = proof_body(src, lean_text.theorem_name(problem.formal_statement))
            if failed.get("text") and body:
                errors = failed.get("feedback") or "\n".join(f"- {e}" for e in failed.get("errors") or []) \
                    or "(no error message)"
                prompt = prompts.render("repair", problem, proof=failed["text"], errors=errors)
                out.append(_example("repair", prompt, body + "```", problem, source))
        return out

    def cold_start(problem: Problem, trace: dict, source: str) -> list[dict[str, str]]:
        """The planner's analysis and sketch, then the composed complete proof: one CoT-mode answer."""
        node = composed_sketch(trace)
        if end_to_end is None or problem.name in end_to_end or node is None or not node.get("plan", "").strip():
            return []
        proof = node["recomposed"]["text"].strip()
        completion = f"{node['plan'].rstrip()}\n\n```lean4\n{proof}\n```"
        return [_example("cold_start", prompts.render("cot", problem), completion, problem, source)]

    def render(attempt: Attempt) -> list[dict[str, str]]:
        problem = problem_of(attempt, problems)
        if problem is None:
            return []
        source = f"{attempt.model or 'model'}:{attempt.strategy or 'sample'}"
        trace = attempt.trace or {}
        return (whole_proof(problem, attempt.text, source) + decomposition(problem, trace, problem, source)
                + repairs(problem, trace, attempt.text, source) + cold_start(problem, trace, source))

    return render


def build_dataset(
    stores: Iterable[str | Path],
    out: str | Path,
    config: Config,
    examples: Iterable[str | Path] = (),
    problems: str | None = None,
    decontaminate: bool = True,
    ngram: int = 8,
    threshold: float = 0.6,
    near_dup: float | None = 0.9,
    prompts: PromptSet | None = None,
    runs: Iterable[str] | None = None,
    kinds: Iterable[str] | None = None,
) -> BuildReport:
    """Verified proofs of the run stores (all their runs, or those named in `runs`) + example files ->
    deduplicated, decontaminated dataset at `out`, of the example `kinds` asked for (default: all)."""
    from data import load_problems
    from data.decontam import Decontaminator

    wanted = None if kinds is None else {k.replace("-", "_") for k in kinds}
    unknown = (wanted or set()) - set(KINDS)
    if unknown:
        raise DataError(f"unknown example kind(s) {', '.join(sorted(unknown))} (expected one of "
                        f"{', '.join(k.replace('_', '-') for k in KINDS)})")
    by_name = {p.name: p for p in load_problems(problems, config)} if problems else {}
    stores = list(stores)
    runs = None if runs is None else list(runs)
    end_to_end = solved_end_to_end(verified_attempts(stores, runs))  # a first pass: cold-start needs the whole set
    records = examples_from_attempts(verified_attempts(stores, runs), make_renderer(by_name, prompts, end_to_end))
    for path in examples:
        records += read_examples(path)
    if wanted is not None:
        records = [r for r in records if r["kind"] in wanted]
        if not records:
            raise NoExamples(f"no {'/'.join(sorted(wanted))} examples in the given runs"
                             + (" (cold-start needs decompose attempts whose lemmas were all proved, on problems "
                                "not solved end to end)" if "cold_start" in wanted else ""))
    decon = None
    if decontaminate:
        decon = Decontaminator.from_registry(config, n=ngram, threshold=threshold)
    return build_sft_dataset(records, out, decon, jaccard=near_dup if near_dup is not None and near_dup < 1 else None)
