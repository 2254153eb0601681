"""Pack wheels and source packages into parts small enough for the GPU machine, which has no package index and
takes at most 64 MiB of carried files a call (docs/BENCHMARKS.md says which benches need what).

    python bench/carry.py OUTDIR FILE... [--part-mib 56]

Writes OUTDIR/part1 .. partN, each at most --part-mib MiB: a file bigger than that is cut into numbered pieces.
The last part also holds install.sh. On the machine, once every part's files are copied into one folder
(one device call per part, back to back, while the machine stays warm):

    bash install.sh FOLDER && export PYTHONPATH=/tmp/site:.

joins the pieces, installs the wheels into $SITE (default /tmp/site; pip runs under $PYTHON, default python3;
no dependencies resolved: name every one that the machine's image lacks) and then builds each source package
there against the machine's own torch and CUDA (no build isolation, nothing downloaded); a build reads its
settings from the caller's environment (Transformer Engine's binding: docs/BENCHMARKS.md, "FP8 libraries").
Written here because the carry limit is this workplace's own; vLLM's wheels have their own script in
../shared/tools.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

INSTALL = """#!/bin/bash
# Joins the cut files in FOLDER, installs its wheels into $SITE (/tmp/site), then builds its source packages there.
set -euo pipefail
cd "$1"
{joins}
SITE=${{SITE:-/tmp/site}}
PYTHON=${{PYTHON:-python3}}
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" ./*.whl
echo "installed $(ls ./*.whl | wc -l) wheels into $SITE"
export PYTHONPATH=$SITE${{PYTHONPATH:+:$PYTHONPATH}}
for sdist in ./*.tar.gz; do
    [ -e "$sdist" ] || continue
    echo "building $sdist"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target "$SITE" "$sdist"
done
"""


def pack(files: list[Path], out: Path, part_mib: int) -> list[Path]:
    """Fill parts in order, largest files first; returns the part folders."""
    limit = part_mib * 2**20
    pieces: list[tuple[Path, str, int, int]] = []  # (source, name in the part, offset, size)
    joins = []
    for f in sorted(files, key=lambda p: -p.stat().st_size):
        size = f.stat().st_size
        if size <= limit:
            pieces.append((f, f.name, 0, size))
            continue
        names = [f"{f.name}.piece{i:02d}" for i in range(-(-size // limit))]
        pieces += [(f, n, i * limit, min(limit, size - i * limit)) for i, n in enumerate(names)]
        joins.append(f"cat {' '.join(names)} > {f.name} && rm {' '.join(names)}")
    parts: list[list[tuple[Path, str, int, int]]] = []
    for piece in pieces:  # first fit
        home = next((p for p in parts if sum(q[3] for q in p) + piece[3] <= limit), None)
        if home is None:
            parts.append(home := [])
        home.append(piece)
    dirs = []
    for i, part in enumerate(parts, 1):
        d = out / f"part{i}"
        d.mkdir(parents=True)
        for src, name, offset, size in part:
            with src.open("rb") as fin, (d / name).open("wb") as fout:
                fin.seek(offset)
                fout.write(fin.read(size))
        dirs.append(d)
    (dirs[-1] / "install.sh").write_text(INSTALL.format(joins="\n".join(joins)))
    return dirs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("files", type=Path, nargs="+", help="wheels (.whl) and source packages (.tar.gz)")
    ap.add_argument("--part-mib", type=int, default=56)
    args = ap.parse_args(argv)
    bad = [str(f) for f in args.files if not f.is_file() or not f.name.endswith((".whl", ".tar.gz"))]
    if bad:
        print(f"carry: not a wheel or .tar.gz file: {', '.join(bad)}", file=sys.stderr)
        return 2
    if args.out.exists() and any(args.out.iterdir()):  # never over what is there
        print(f"carry: {args.out} exists and is not empty: remove it or name another", file=sys.stderr)
        return 2
    for d in pack(args.files, args.out, args.part_mib):
        mib = sum(f.stat().st_size for f in d.iterdir()) / 2**20
        print(f"{d}: {mib:.1f} MiB, {len(list(d.iterdir()))} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
