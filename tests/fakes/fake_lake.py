#!/usr/bin/env python3
"""FAKE of `lake build <lib>` and `lake env lean4checker <module>` (no Lean here), for the lean4checker audit
driver. Interface from lean4checker's README: `lake env path/to/lean4checker Mod` replays the environment of the
compiled module `Mod` through the kernel; exit 0 when the kernel accepts every declaration. The fake "compiles"
`<lib>.lean` into `.lake/build/lib/lean/<lib>.olean` (a copy of the source; FAKE_BUILD_ERROR in it: a Lean error,
exit 1) and "replays" a module whose olean exists (FAKE_KERNEL_REJECT in it: the kernel rejects, exit 1).
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "build":
        src = Path(f"{args[1]}.lean")
        if not src.is_file():
            sys.stderr.write(f"error: unknown target '{args[1]}'\n")
            sys.exit(1)
        if "FAKE_BUILD_ERROR" in src.read_text(encoding="utf-8"):
            print(f"✖ [1/1] Building {args[1]}\nerror: {src}:1:0: unknown identifier 'FAKE_BUILD_ERROR'")
            sys.exit(1)
        out = Path(".lake/build/lib/lean") / f"{args[1]}.olean"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
        print(f"✔ [1/1] Built {args[1]}\nBuild completed successfully.")
    elif len(args) == 3 and args[0] == "env" and Path(args[1]).name == "lean4checker":
        olean = Path(".lake/build/lib/lean") / f"{args[2]}.olean"
        if not olean.is_file():
            sys.stderr.write(f"uncaught exception: object file '{olean}' of module {args[2]} does not exist\n")
            sys.exit(1)
        if "FAKE_KERNEL_REJECT" in olean.read_text(encoding="utf-8"):
            sys.stderr.write("uncaught exception: (kernel) declaration type mismatch\n")
            sys.exit(1)
    else:
        sys.stderr.write(f"fake_lake: unsupported arguments {args}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
