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
