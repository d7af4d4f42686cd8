"""The maps parser on every form the kernel prints (a captured file, and live processes)."""

from __future__ import annotations

import os

import pytest

import pagewalk
from pagewalk.kernel.maps import parse_line

DATA = os.path.join(os.path.dirname(__file__), "data", "maps_forms.txt")


def test_every_form_from_a_saved_file():
    maps = pagewalk.load_maps(DATA)
    by_path = {m.path: m for m in maps}
    assert len(maps) == 14
    sleep = maps[0]
    assert (sleep.start, sleep.end, sleep.perms, sleep.offset, sleep.dev, sleep.inode) == (
        0x55D0C8A5E000, 0x55D0C8A60000, "r--p", 0, "fe:00", 260875)
    assert sleep.kind == "file" and sleep.size_bytes == 0x2000
    assert maps[2].path == "" and maps[2].kind == "anon" and maps[2].label() == "[anon]"
    assert by_path["[heap]"].kind == "heap"
    assert by_path["/dev/zero (deleted)"].kind == "anon_shared"
    memfd = by_path["/memfd:pagewalk test (deleted)"]
    assert memfd.kind == "memfd" and memfd.deleted and memfd.name == "/memfd:pagewalk test"
    assert by_path["/SYSV00003039 (deleted)"].kind == "sysv"
    spaced = by_path["/tmp/dir with spaces/my file.bin"]
    assert spaced.offset == 0x1000 and spaced.kind == "file" and not spaced.deleted
    gone = by_path["/tmp/gone.bin (deleted)"]
    assert gone.deleted and gone.kind == "file" and gone.name == "/tmp/gone.bin"
    assert by_path["[anon:jit heap]"].kind == "anon"
    assert by_path["[anon_shmem:ring buffer]"].kind == "anon_shared"
    assert by_path["[anon_shmem:ring buffer]"].shared
    assert by_path["[stack]"].kind == "stack"
    assert by_path["[vvar]"].kind == "vvar" and by_path["[vdso]"].kind == "vdso"
    vsyscall = by_path["[vsyscall]"]
    assert vsyscall.is_vsyscall and vsyscall.start == 0xFFFFFFFFFF600000


def test_parse_from_string_round_trips_lines():
    with open(DATA) as f:
        text = f.read()
    maps = pagewalk.parse_maps(text)
    for m, line in zip(maps, text.splitlines()):
        assert parse_line(m.as_maps_line()) == m
        assert m.as_maps_line().split() == line.split()


def test_bad_lines_are_rejected():
    for bad in ("", "zzzz-1000 r--p 0 00:00 0", "1000-2000 r--p 00000000 00:00"):
        with pytest.raises(pagewalk.InvalidArgument):
            parse_line(bad)


def test_live_named_anonymous_memory_and_memfd(specimen):
    """Names set with prctl(PR_SET_VMA_ANON_NAME) and memfd names come back as the kernel prints them."""
    addr = specimen.run("result = mmap(2)")
    try:
        specimen.run(f"set_anon_name({addr}, 2, 'pagewalk test')")
    except RuntimeError as exc:
        pytest.skip(f"kernel lacks anonymous VMA names: {exc}")
    shared = specimen.run("import os\nfd = memfd('with space', 1)\nresult = mmap(1, shared=True, fd=fd)")
    maps = {m.start: m for m in pagewalk.read_maps(specimen.pid)}
    assert maps[addr].path == "[anon:pagewalk test]" and maps[addr].kind == "anon"
    assert maps[shared].path == "/memfd:with space (deleted)" and maps[shared].kind == "memfd"
    with open(f"/proc/{specimen.pid}/maps") as f:
        assert [m.as_maps_line().split() for m in pagewalk.read_maps(specimen.pid)] == [
            line.split() for line in f.read().splitlines()]
