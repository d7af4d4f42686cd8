"""``dump --format seed`` is byte for byte the seed program's output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import cli, requires_root

ANCHOR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "anchors", "seed_dump.c")


@pytest.fixture(scope="module")
def seed_dump(tmp_path_factory):
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to build the seed anchor")
    if not os.path.exists(ANCHOR):
        pytest.skip(f"anchor source not found at {ANCHOR}")
    exe = tmp_path_factory.mktemp("anchor") / "seed_dump"
    subprocess.run(["gcc", "-O2", "-o", str(exe), ANCHOR], check=True)
    return str(exe)


@requires_root
def test_seed_format_is_byte_identical(specimen, seed_dump, tmp_path):
    """On a still process with anonymous, zero, file, shared, guard and untouched pages."""
    path = tmp_path / "file with space.bin"
    path.write_bytes(b"x" * 3 * 4096)
    specimen.run(
        f"a = mmap(64); write(a, 16); read(a + 20 * PAGE, 8)\n"
        f"fd = os.open({str(path)!r}, os.O_RDONLY); f = mmap(3, 'r', shared=True, fd=fd); read(f, 3)\n"
        "s = mmap(4, shared=True); write(s, 2)\n"
        "g = mmap(4); madvise(g, 1, MADV_GUARD_INSTALL)\n"
        "big = mmap(1 << 18, 'none', noreserve=True)\n")
    expected = subprocess.run([seed_dump, str(specimen.pid)], capture_output=True, check=True).stdout
    r = subprocess.run([sys.executable, "-m", "pagewalk", "dump", str(specimen.pid),
                        "--format", "seed"], capture_output=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == expected
    assert expected.count(b"\n") > (1 << 18)


@requires_root
def test_seed_format_honours_where_and_range(specimen):
    addr = specimen.run("a = mmap(8); write(a, 3); result = a")
    r = cli("dump", specimen.pid, "--format", "seed", "--range", f"{addr:x}+8K")
    lines = r.stdout.splitlines()
    assert lines[0] == "addr pfn soft-dirty file/shared swapped present library"
    assert [line.split()[0] for line in lines[1:]] == [f"{addr:x}", f"{addr + 4096:x}"]
    r = cli("dump", specimen.pid, "--format", "seed", "--range", f"{addr:x}-{addr + 8 * 4096:x}", "--where", "~present")
    assert [int(line.split()[0], 16) for line in r.stdout.splitlines()[1:]] == [addr + i * 4096 for i in range(3, 8)]
