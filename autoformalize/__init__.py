"""Autoformalization: natural-language problems -> Lean 4 statements, filtered by Lean (DeepSeek-Prover-V1 style).

    from autoformalize import formalize, read_informal, FormalizeConfig
"""

from autoformalize.formalize import FormalizeConfig, FormalizeReport, formalize, read_informal, write_problems

__all__ = ["FormalizeConfig", "FormalizeReport", "formalize", "read_informal", "write_problems"]
