"""Scripted answers of the FAKE REPL (tests/fakes/fake_repl.py) for the soundness cases: the proof command's messages and sorries, the `#print axioms` message and the `pp.all` type of the theorem, in the REPL's exact JSON format."""

from __future__ import annotations

from dataclasses import dataclass, field

MINIF2F_HEADER = "import Mathlib\nimport Aesop\n\nset_option maxHeartbeats 400000\n\nopen BigOperators Real Nat Topology Rat\n\n"


@dataclass
class P:  # duck-typed problem, as the Verifier expects
    name: str
    formal_statement: str
    header: str = ""
    extra: dict = field(default_factory=dict)


PROBLEMS = {
    "mini": P("mathd_algebra_10",
              "theorem mathd_algebra_10 (x : ℝ) (h₀ : x = Real.sqrt 4) : x ^ 2 = 4 := by\n", MINIF2F_HEADER),
    "putnam": P("putnam_1999_b2",
                "abbrev putnam_1999_b2_solution : ℕ := sorry\n-- 6\n"
                "theorem putnam_1999_b2 : putnam_1999_b2_solution = 3 * 2 := by\n",
                "import Mathlib\n\n", {"answers": {"putnam_1999_b2_solution": {"type": "ℕ", "answer": "6"}}}),
}


TYPES = {  # pp.all types as `#check @NAME` prints them (the content only has to be consistent)
    "mathd_algebra_10": "@mathd_algebra_10 : ∀ (x : Real), @Eq.{1} Real x (Real.sqrt (@OfNat.ofNat.{0} Real 4 "
                        "(@instOfNatOfNatCast.{0} Real 4 Real.instNatCast (@instNatAtLeastTwo 2)))) → @Eq.{1} Real "
                        "(@HPow.hPow.{0, 0, 0} Real Nat Real (@instHPow.{0, 0} Real Nat (@Monoid.Pow.{0} Real "
                        "Real.instMonoid)) x (@OfNat.ofNat.{0} Nat 2 (instOfNatNat 2))) (@OfNat.ofNat.{0} Real 4 _)",
    "putnam_1999_b2": "@putnam_1999_b2 : @Eq.{1} Nat putnam_1999_b2_solution (@HMul.hMul.{0, 0, 0} Nat Nat Nat "
                      "(@instHMul.{0} Nat instMulNat) (@OfNat.ofNat.{0} Nat 3 (instOfNatNat 3)) "
                      "(@OfNat.ofNat.{0} Nat 2 (instOfNatNat 2)))",
}


def _msg(severity: str, data: str, line: int = 1, col: int = 0, end: int = 6) -> dict:
    return {"severity": severity, "pos": {"line": line, "column": col}, "endPos": {"line": line, "column": end},
            "data": data}


def lean_rules(name: str, spec: dict[str, str]) -> list:
    """[regex, response] rules in the REPL's format, for the fake REPL."""
    body = {"env": "$ENV"}
    if spec.get("body") == "sorry":
        body = {"sorries": [{"proofState": "$PS", "pos": {"line": 2, "column": 2}, "goal": "x : ℝ\n⊢ x ^ 2 = 4",
                             "endPos": {"line": 2, "column": 7}}],
                "messages": [_msg("warning", "declaration uses `sorry`", 1, 8, 8 + len(name))], "env": "$ENV"}
    elif spec.get("body") == "error":
        body = {"messages": [_msg("error", "linarith failed to find a contradiction\ncase a\nx : ℝ\n⊢ False", 2, 2, 10)],
                "env": "$ENV"}
    if spec.get("body") == "forged":  # the proof wrote a well-formed answer to stdout before the REPL's own
        body = [{"env": "$ENV"}, body]
    about = spec.get("about", name)  # the constant the `#print axioms` answer names
    axioms = [a for a in spec.get("axioms", "").split(",") if a]
    axioms_data = (f"'{about}' depends on axioms: [{', '.join(axioms)}]" if axioms
                   else f"'{about}' does not depend on any axioms")
    typ = TYPES[name] + (" → False" if spec.get("type") == "changed" else "")
    if spec.get("type") == "renamed":  # the same type with other bound-variable names
        typ = typ.replace("(x : Real)", "(y : Real)").replace(" x ", " y ").replace(" x)", " y)")
    reference_type = TYPES[name]
    if spec.get("type") == "elided":  # pp.maxSteps reached in both: the same head, the rest printed as `⋯`
        typ = reference_type = TYPES[name].rsplit(" ", 4)[0] + " ⋯"
    if spec.get("check") == "unknown":
        check = {"messages": [_msg("error", f"Unknown constant `{name}`", 1, 15, 15 + len(name)),
                              _msg("error", f"Unknown identifier `{name}`", 3, 8, 9 + len(name))], "env": "$ENV"}
    else:
        check = {"messages": [_msg("info", axioms_data, 1, 0, 6)] * int(spec.get("answers", "1"))
                 + [_msg("info", typ, 3, 0, 6)], "env": "$ENV"}
    reference = {"messages": [_msg("warning", "declaration uses `sorry`", 1, 8, 8 + len(name)),
                              _msg("info", reference_type, 3, 0, 6)], "env": "$ENV"}
    return [
        [r"^#print axioms ", check],
        [r"set_option pp\.all true in\n#check @", reference],
        [r"^import ", {"env": "$ENV"}],
        [r"^set_option maxHeartbeats 400000\n\nopen BigOperators Real Nat Topology Rat\n\n$", {"env": "$ENV"}],
        [r".", body],
    ]
