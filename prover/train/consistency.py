"""DeepSeek-Prover-V2's consistency reward: in early RL, a CoT completion whose final proof leaves out `have`
lemmas that its own plan stated is penalized, so the model keeps the structure it announced.

The plan's lemmas are the `have` steps of every Lean block before the final one (the sketch a CoT completion
writes first); a lemma counts as kept when the final proof has a `have` with the same statement (spacing and
the step's name do not matter). A completion with no sketched lemma has nothing to be consistent with.
"""

from __future__ import annotations

from lean_env.decompose import have_steps
from prover.prompts.extract import lean_blocks


def plan_lemmas(completion: str) -> list[str]:
    """Statements of the `have` steps in the Lean blocks of the plan (all blocks but the last)."""
    blocks = lean_blocks(completion)
    return [s["statement"] for block in blocks[:-1] for s in have_steps(block)]


def missing_lemmas(completion: str, proof: str | None) -> list[str]:
    """The plan's lemma statements that the final proof does not state as a `have`."""
    planned = plan_lemmas(completion)
    if not planned:
        return []
    kept = {_key(s["statement"]) for s in have_steps(proof or "")}
    return [s for s in planned if _key(s) not in kept]


def consistency_penalty(completion: str, proof: str | None, penalty: float) -> float:
    """`-penalty` when the final proof leaves out a planned lemma (or there is no proof after a plan), else 0."""
    return -penalty if missing_lemmas(completion, proof) else 0.0


def _key(statement: str) -> str:
    return " ".join(statement.split())
