"""Pack wheels and source packages into parts small enough for the GPU machine, which has no package index and
takes at most 64 MiB of carried files a call (docs/BENCHMARKS.md says which benches need what).

    python bench/carry.py OUTDIR FILE... [--part-mib 56] [--keep-arch SM]

Writes OUTDIR/part1 .. partN, each at most --part-mib MiB: a file bigger than that is cut into numbered pieces.
The last part also holds install.sh. On the machine, once every part's files are copied into one folder
(one device call per part, back to back, while the machine stays warm):

    bash install.sh FOLDER && export PYTHONPATH=/tmp/site:.

joins the pieces, installs the wheels into $SITE (default /tmp/site; pip runs under $PYTHON, default python3;
no dependencies resolved: name every one that the machine's image lacks) and then builds each source package
there against the machine's own torch and CUDA (no build isolation, nothing downloaded); a build reads its
settings from the caller's environment (Transformer Engine's binding: docs/BENCHMARKS.md, "FP8 libraries").
`--keep-arch 90` shrinks wheels of CUDA libraries to what the H200 runs: in each shared library's fatbins, the
GPU code (cubins) for every other architecture is overwritten with zeros in place, so the file keeps its layout and
the CUDA driver, which reads only the entry that matches the GPU, loads it as before; the zeros compress to nothing
(Transformer Engine's 276 MB wheel: 31 MiB). No tool of NVIDIA's does this to a shared library (nvprune takes
object files and static libraries only). Written here because the carry limit is this workplace's own; vLLM's
wheels have their own script in ../shared/tools.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import struct
import sys
import zipfile
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
    # Built into a folder of its own, then merged: pip --target skips a package folder that is already there
    # (TE's binding puts its library inside the transformer_engine folder of the core wheel).
    built=$(mktemp -d)
    "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target "$built" "$sdist"
    cp -r "$built/." "$SITE/"
    rm -r "$built"
done
"""


FATBIN_MAGIC = struct.pack("<I", 0xBA55ED50)  # a fatbin's header: magic, version 1, header size 16, payload size


def prune_fatbins(data: bytearray, keep: set[int]) -> int:
    """Zero, in place, the payload of every cubin (entry kind 2) whose SM architecture is not in `keep`; the fatbin
    headers and all other bytes stay. Returns the bytes zeroed. Entry header: kind u16, u16, header size u32,
    payload size u64, ..., architecture u32 at offset 28 (as cuobjdump lists them)."""
    pos, zeroed = 0, 0
    while (i := data.find(FATBIN_MAGIC, pos)) >= 0:
        version, header, size = struct.unpack_from("<HHQ", data, i + 4)
        if version != 1 or header != 16:  # the magic bytes by chance, not a fatbin
            pos = i + 4
            continue
        j, end = i + header, i + header + size
        while j < end:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, j)
            arch = struct.unpack_from("<I", data, j + 28)[0]
            if kind == 2 and arch not in keep:
                start = j + entry_header
                data[start:start + payload] = bytes(payload)
                zeroed += payload
            j += entry_header + payload
        pos = end
    return zeroed


def prune_wheel(src: Path, dst: Path, keep: set[int]) -> int:
    """Copy wheel `src` to `dst` with its shared libraries' other-architecture cubins zeroed and RECORD's hashes
    and sizes for them rewritten (pip checks neither, a careful installer may). Returns the bytes zeroed."""
    zeroed, changed = 0, {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zout:
        names = zin.namelist()
        record = next(n for n in names if n.endswith(".dist-info/RECORD"))
        for name in names:
            if name == record:
                continue
            data = zin.read(name)
            if name.endswith(".so") or ".so." in name:
                buf = bytearray(data)
                if n := prune_fatbins(buf, keep):
                    zeroed += n
                    data = bytes(buf)
                    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                    changed[name] = f"{name},sha256={digest},{len(data)}"
            zout.writestr(zin.getinfo(name), data, zipfile.ZIP_DEFLATED)  # not the entry's own: may be stored
        lines = [changed.get(line.split(",")[0], line) for line in zin.read(record).decode().splitlines()]
        zout.writestr(zin.getinfo(record), "\n".join(lines) + "\n", zipfile.ZIP_DEFLATED)
    return zeroed


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
    ap.add_argument("--keep-arch", type=int, action="append", metavar="SM",
                    help="keep only this GPU architecture's code in the wheels' shared libraries (90: H100/H200)")
    args = ap.parse_args(argv)
    bad = [str(f) for f in args.files if not f.is_file() or not f.name.endswith((".whl", ".tar.gz"))]
    if bad:
        print(f"carry: not a wheel or .tar.gz file: {', '.join(bad)}", file=sys.stderr)
        return 2
    if args.out.exists() and any(args.out.iterdir()):  # never over what is there
        print(f"carry: {args.out} exists and is not empty: remove it or name another", file=sys.stderr)
        return 2
    files = args.files
    if args.keep_arch:
        pruned = args.out / "pruned"
        pruned.mkdir(parents=True)
        files = []
        for f in args.files:
            if f.name.endswith(".whl") and (n := prune_wheel(f, pruned / f.name, set(args.keep_arch))):
                print(f"{f.name}: {n / 2**20:.0f} MiB of other architectures' GPU code zeroed, "
                      f"{f.stat().st_size / 2**20:.0f} -> {(pruned / f.name).stat().st_size / 2**20:.0f} MiB")
                files.append(pruned / f.name)
            else:
                (pruned / f.name).unlink(missing_ok=True)
                files.append(f)
    for d in pack(files, args.out, args.part_mib):
        mib = sum(f.stat().st_size for f in d.iterdir()) / 2**20
        print(f"{d}: {mib:.1f} MiB, {len(list(d.iterdir()))} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
