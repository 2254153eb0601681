"""Everything that talks to Lean: toolchain, REPL process, pool, verifier, soundness checks, Lean text."""

from lean_env.verdict import Message, Pos, Sorry, Status, Verdict

__all__ = ["Message", "Pos", "Sorry", "Status", "Verdict"]
