"""Getting Lean out of a completion: the last Lean block, a continued code block, one tactic.

Completions are untrusted and often malformed: truncated at `max_tokens` inside a block, prose around the
code, several blocks (CoT: the sketch first, the complete proof last), or, in plain-completion mode, no
opening fence at all because the prompt left a ```lean4 block open. Everything returned here is only a
candidate; the Verifier decides.
"""

from __future__ import annotations

import re
from typing import Any

from lean_env.text import declarations, last_lean_block, lean_blocks, theorem_name  # the one fence parser

__all__ = ["candidate_proof", "extract_proof", "extract_tactic", "last_lean_block", "lean_blocks", "lean_errors"]

def candidate_proof(completion: str, problem: Any, continues_code: bool) -> str | None:
    """THE candidate of a completion to `problem`'s prompt: what the Verifier judges. Search, batched sampling and
    GRPO's reward all call this one, so the reward is computed on the candidate eval would verify."""
    from prover.prompts import statement_text

    statement = problem if isinstance(problem, str) else problem.formal_statement
    return extract_proof(completion, statement_text(statement), continues_code, theorem_name(statement))


def candidate_proofs(completions: list[str], problem: Any, continues_code: bool) -> list[str | None]:
    """`candidate_proof` of each completion (one call: what `prover.textwork` sends to a worker)."""
    return [candidate_proof(c, problem, continues_code) for c in completions]


def extract_proof(completion: str, statement: str, continues_code: bool, name: str | None = None) -> str | None:
    """The candidate proof (statement + proof text) in `completion`, or None when there is nothing usable.

    Preference: a block that restates the theorem (the model wrote the whole thing); else, when the prompt left
    a code block open, the statement followed by the completion up to the first closing fence; else the last
    Lean block, prefixed with the statement when it is a bare tactic script.
    """
    blocks = lean_blocks(completion)
    restated = [b for b in blocks if _declares(b, name)]
    if restated:
        return restated[-1].rstrip() + "\n"
    if continues_code:
        body = completion.split("```", 1)[0]
        if body.strip():
            if _declares(body, name):
                return body.strip("\n").rstrip() + "\n"
            return _join(statement, body)
    block = last_lean_block(completion) if blocks or "```" in completion else None
    if block is None:
        return None
    return block.rstrip() + "\n" if _declares(block) else _join(statement, block)


def _declares(src: str, name: str | None = None) -> bool:
    """`src` declares a theorem/lemma (named `name`, when given) or an example, as `lean_env.text` reads it."""
    if name:
        return any(d.kind in ("theorem", "lemma") and name in (d.name, d.full_name) for d in declarations(src))
    return any(d.kind in ("theorem", "lemma", "example") for d in declarations(src))


def _join(statement: str, body: str) -> str:
    """Statement + a tactic script: indent a script that starts flush left, keep one that is indented."""
    body = body.rstrip()
    if body.startswith((" ", "\t")) or body.startswith("\n"):
        return statement.rstrip() + ("\n" if not body.startswith("\n") else "") + body + "\n"
    lines = body.split("\n")
    indented = "\n".join("  " + line if line.strip() else line for line in lines)
    return statement.rstrip() + "\n" + indented + "\n"


def extract_tactic(completion: str) -> str | None:
    """One tactic from a tree-search completion: the first non-empty line, without fences or comments."""
    for line in completion.split("\n"):
        line = line.split("```", 1)[0]
        line = re.sub(r"\s--.*$", "", line).strip()
        if line and not line.startswith(("--", "/-")):
            return line
    return None


def lean_errors(messages, limit: int = 8) -> str:
    """Lean's error messages as the repair prompt shows them: `line L, col C: message`, at most `limit`."""
    out = []
    for m in messages:
        if getattr(m, "severity", "error") != "error":
            continue
        where = f"line {m.pos.line}, col {m.pos.column}: " if getattr(m, "pos", None) else ""
        out.append(f"- {where}{m.data.strip()}")
    return "\n".join(out[:limit]) if out else "(no error message; the proof was incomplete or rejected)"
