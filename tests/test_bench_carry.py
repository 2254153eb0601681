"""bench/carry.py: files cut into parts no larger than the carry limit, joined back byte for byte on the other
side; a folder already written is never overwritten."""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
carry = runpy.run_path(str(REPO / "bench" / "carry.py"))


def test_parts_stay_under_the_limit_and_the_pieces_join_back(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    files = {"big-1.0-py3-none-any.whl": 5 * 2**20 + 123, "small-1.0-py3-none-any.whl": 300_000,
             "built-1.0.tar.gz": 1_500_000}
    for name, size in files.items():
        (src / name).write_bytes(os.urandom(size))
    out = tmp_path / "parts"
    assert carry["main"]([str(out), *(str(src / n) for n in files), "--part-mib", "2"]) == 0
    parts = sorted(out.iterdir())
    assert len(parts) >= 4 and (parts[-1] / "install.sh").is_file()
    assert all(sum(f.stat().st_size for f in p.iterdir() if f.name != "install.sh") <= 2 * 2**20 for p in parts)
    there = tmp_path / "there"  # the machine's folder: every part copied in
    there.mkdir()
    for p in parts:
        for f in p.iterdir():
            shutil.copy(f, there / f.name)
    joins = [line for line in (there / "install.sh").read_text().splitlines() if line.startswith("cat ")]
    subprocess.run(["bash", "-c", "\n".join(joins)], cwd=there, check=True)
    for name in files:
        assert (there / name).read_bytes() == (src / name).read_bytes()
    assert not list(there.glob("*.piece*"))


def test_refuses_a_folder_with_something_in_it_and_files_it_cannot_install(tmp_path, capsys):
    out = tmp_path / "parts"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    wheel = tmp_path / "a-1.0-py3-none-any.whl"
    wheel.write_bytes(b"x")
    assert carry["main"]([str(out), str(wheel)]) == 2
    assert "not empty" in capsys.readouterr().err and (out / "keep.txt").read_text() == "mine"
    assert carry["main"]([str(tmp_path / "new"), str(tmp_path / "notes.txt")]) == 2
    assert "not a wheel" in capsys.readouterr().err


def _wheel(path: Path, name: str) -> None:
    """A pure-Python wheel of one module `name` (what pip needs of one: the module and its dist-info)."""
    import zipfile

    info = f"{name}-1.0.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}.py", "WHAT = 'wheel'\n")
        z.writestr("carried_pkg/__init__.py", "WHAT = 'package'\n")
        z.writestr(f"{name}_data.bin", os.urandom(1_500_000))  # incompressible: the wheel is cut at 1 MiB parts
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        listed = [f"{name}.py", "carried_pkg/__init__.py", f"{name}_data.bin", f"{info}/METADATA", f"{info}/WHEEL",
                  f"{info}/RECORD"]
        z.writestr(f"{info}/RECORD", "".join(f"{n},,\n" for n in listed))


def _sdist(path: Path, name: str) -> None:
    """A setuptools source package of one module `name`, built on install as TE's torch binding is."""
    import io
    import tarfile

    files = {"setup.py": f"from setuptools import setup\nsetup(name='{name}', version='1.0', py_modules=['{name}'], "
                         "packages=['carried_pkg'])\n",
             f"{name}.py": "WHAT = 'built'\n",
             "carried_pkg/binding.py": "WHAT = 'binding'\n",  # into the wheel's package folder, as TE's binding
             "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"}
    with tarfile.open(path, "w:gz") as t:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-1.0/{rel}")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


def test_install_sh_installs_the_wheels_and_builds_the_sources_offline(tmp_path):
    """install.sh end to end with the Python running the tests: a wheel cut in pieces is joined and installed, and a
    source package is built with no index and no build isolation, as on the GPU machine."""
    import sys

    src = tmp_path / "src"
    src.mkdir()
    _wheel(src / "carried_wheel-1.0-py3-none-any.whl", "carried_wheel")
    _sdist(src / "carried_src-1.0.tar.gz", "carried_src")
    out = tmp_path / "parts"
    assert carry["main"]([str(out), *map(str, src.iterdir()), "--part-mib", "1"]) == 0
    assert len(list(out.glob("part*/carried_wheel-*.piece*"))) == 2
    there = tmp_path / "there"
    there.mkdir()
    for p in out.iterdir():
        for f in p.iterdir():
            shutil.copy(f, there / f.name)
    site = tmp_path / "site"
    env = {**os.environ, "SITE": str(site), "PYTHON": sys.executable}
    run = subprocess.run(["bash", str(there / "install.sh"), str(there)], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    check = subprocess.run([sys.executable, "-c", "import carried_wheel, carried_src, carried_pkg, "
                            "carried_pkg.binding as b; "
                            "print(carried_wheel.WHAT, carried_src.WHAT, carried_pkg.WHAT, b.WHAT)"],
                           env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True)
    assert check.stdout.split() == ["wheel", "built", "package", "binding"], check.stderr


def _fatbin(entries: list[tuple[int, int, bytes]]) -> bytes:
    """A fatbin laid out as cuobjdump reads one: a 16-byte header, then per entry a 64-byte header (kind, header
    size, payload size, SM architecture at byte 28) and its payload."""
    import struct

    body = b""
    for kind, arch, payload in entries:
        head = bytearray(64)
        struct.pack_into("<HHIQ", head, 0, kind, 0x101, 64, len(payload))
        struct.pack_into("<I", head, 28, arch)
        body += bytes(head) + payload
    return struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(body)) + body


def test_keep_arch_zeroes_other_architectures_cubins_only(tmp_path):
    sm80, sm90, ptx = os.urandom(3000), os.urandom(2000), os.urandom(1000)
    fat = _fatbin([(2, 80, sm80), (2, 90, sm90), (1, 80, ptx)])
    lib = b"\x7fELF" + os.urandom(500) + fat + os.urandom(200) + fat  # a library holds several fatbins
    data = bytearray(lib)
    assert carry["prune_fatbins"](data, {90}) == 2 * len(sm80)
    assert len(data) == len(lib)  # layout kept: only payload bytes change
    pruned_fat = _fatbin([(2, 80, bytes(len(sm80))), (2, 90, sm90), (1, 80, ptx)])  # PTX (kind 1) is kept
    assert bytes(data) == lib[:504] + pruned_fat + lib[504 + len(fat):504 + len(fat) + 200] + pruned_fat


def test_keep_arch_rewrites_the_wheel_and_its_record(tmp_path, capsys):
    import base64
    import hashlib
    import zipfile

    lib = b"\x7fELF" + _fatbin([(2, 75, os.urandom(400_000)), (2, 90, os.urandom(1000))])
    wheel = tmp_path / "cudalib-1.0-py3-none-manylinux_2_28_x86_64.whl"
    info = "cudalib-1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("cudalib/libcuda_thing.so", lib)
        z.writestr("cudalib/__init__.py", "")
        z.writestr(f"{info}/RECORD", f"cudalib/libcuda_thing.so,sha256=old,{len(lib)}\ncudalib/__init__.py,,\n"
                                     f"{info}/RECORD,,\n")
    out = tmp_path / "parts"
    assert carry["main"]([str(out), str(wheel), "--keep-arch", "90"]) == 0
    assert "other architectures' GPU code zeroed" in capsys.readouterr().out
    carried = out / "part1" / wheel.name
    assert carried.stat().st_size < 100_000 < wheel.stat().st_size  # the zeroed sm_75 code compresses away
    with zipfile.ZipFile(carried) as z:
        so = z.read("cudalib/libcuda_thing.so")
        record = z.read(f"{info}/RECORD").decode().splitlines()
    assert len(so) == len(lib) and so[-1000:] == lib[-1000:] and so != lib
    digest = base64.urlsafe_b64encode(hashlib.sha256(so).digest()).rstrip(b"=").decode()
    assert record == [f"cudalib/libcuda_thing.so,sha256={digest},{len(so)}", "cudalib/__init__.py,,",
                      f"{info}/RECORD,,"]
