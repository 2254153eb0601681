#!/usr/bin/env python3
"""FAKE of leanprover/comparator's command line (no Lean here), for the `subgoal lean audit` driver tests.

It stands in for `lake env comparator config.json`, run in the challenge/solution Lake project, with the interface
comparator's README and Main.lean give: the config path as the only argument (else "Expected config file path as
first argument."), the config keys `challenge_module`, `solution_module`, `theorem_names`, `permitted_axioms`
(`definition_names` optional), the tools in `COMPARATOR_LANDRUN` / `COMPARATOR_LEAN4EXPORT`, progress on stdout,
"Your solution is okay!" and exit 0 on success, `uncaught exception: <reason>` on stderr and exit 1 otherwise.
Its judgement is a stand-in for the kernel's: a theorem whose statement text differs from the challenge's, a
`sorry`, or the marker FAKE_KERNEL_REJECT in the solution is rejected. Each call is logged (cwd, argv, config) as
one JSON line to `FAKE_COMPARATOR_LOG` when set.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path


def fail(reason: str) -> None:
    sys.stderr.write(f"uncaught exception: {reason}\n")
    sys.exit(1)


def statement(src: str, name: str) -> str | None:
    m = re.search(rf"(?:theorem|lemma)\s+{re.escape(name)}\b(.*?):=", src, re.S)
    return " ".join(m.group(1).split()) if m else None


def main() -> None:
    if len(sys.argv) < 2:
        fail("Expected config file path as first argument.")
    config = json.loads(Path(sys.argv[1]).read_text())
    if log := os.environ.get("FAKE_COMPARATOR_LOG"):
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"cwd": os.getcwd(), "argv": sys.argv[1:], "config": config}) + "\n")
    for key in ("challenge_module", "solution_module", "theorem_names", "permitted_axioms"):
        if key not in config:
            fail(f"Could not parse config: missing field {key}")
    for var in ("COMPARATOR_LANDRUN", "COMPARATOR_LEAN4EXPORT"):
        if not os.access(os.environ.get(var, ""), os.X_OK):
            fail(f"{var} is not an executable")
    challenge = Path(config["challenge_module"] + ".lean").read_text(encoding="utf-8")
    solution = Path(config["solution_module"] + ".lean").read_text(encoding="utf-8")
    for module in (config["challenge_module"], config["solution_module"]):
        print(f"Building {module}")
        print(f"Exporting #[{', '.join(config['theorem_names'])}] from {module}")
    for name in config["theorem_names"]:
        if statement(solution, name) != statement(challenge, name) or statement(solution, name) is None:
            fail(f"{name} does not match between challenge and solution")
        if re.search(r"\bsorry\b", solution.split(name, 1)[1]):
            fail(f"{name} uses the axiom sorryAx, which is not in permitted_axioms")
    print("Running Lean default kernel on solution.")
    if "FAKE_KERNEL_REJECT" in solution:
        print("Lean default kernel rejects the solution")
        fail("(kernel) declaration type mismatch")
    print("Lean default kernel accepts the solution")
    print("Your solution is okay!")


if __name__ == "__main__":
    main()
