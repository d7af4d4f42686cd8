"""``pagewalk ram``: every frame of RAM in one use, the uses agreeing with the kernel's
own totals, and the frames of known memory (a test process's anonymous pages, a THP,
a memfd, a file in the page cache, hugetlb pages) in the use they belong to.

Expected uses come from what the test made and from the kernel's accounting
(/proc/meminfo, /proc/zoneinfo), never from pagewalk.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import cli, hugetlb_pool, requires_root
from specimen import PAGE

from pagewalk.core import frames as fr

ANON, MMAP, LRU, SWAPBACKED, SLAB, BUDDY, HUGE, THP = 1 << 12, 1 << 11, 1 << 5, 1 << 14, 1 << 7, 1 << 10, 1 << 17, 1 << 22
FRAME = (1 << 55) - 1


def uses_of(values: list[int]) -> list[str]:
    return [fr.USES[u] for u in fr.classify(np.array(values, dtype=np.uint64))]


def test_each_frame_gets_the_first_use_whose_rule_holds():
    """Literal kpageflags values, as the kernel reports them (kernel.md 2.2)."""
    assert uses_of([
        0x101000000,  # the zero page: zero_page | reserved
        ANON | MMAP | LRU | SWAPBACKED | (1 << 3),  # a private anonymous page of a process
        ANON | LRU | SWAPBACKED | (1 << 13),  # anonymous, mapped by none, in the swap cache
        SLAB | ANON | (1 << 21),  # a slab page showing the anon and ksm bits (overlapping fields)
        SWAPBACKED | LRU | MMAP,  # tmpfs or shared anonymous memory
        LRU | (1 << 3),  # a file page in the cache, unmapped
        BUDDY, 0, HUGE | (1 << 15), 1 << 26, 1 << 32, 1 << 3, ANON | MMAP | (1 << 21), 1 << 19, 1 << 23,
    ]) == ["zero page", "anonymous", "swap cache", "slab", "shared memory", "page cache", "free", "no flags",
           "hugetlb", "page tables", "kernel reserved", "kernel other", "KSM", "hwpoison", "offline"]


def test_free_blocks_marked_on_their_first_page_only_are_found_by_alignment():
    """Older kernels mark only a free block's first page: a block of order k starts
    at a multiple of 2**k and its other pages have no flag."""
    flags = np.array([BUDDY, 0, 0, 0, BUDDY, 0, LRU, BUDDY, 0, 0, 0, 0, 0, 0, 0, 0, 0], dtype=np.uint64)
    assert fr.free_tails(flags, 0).astype(int).tolist() == [0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    # from PFN 1: PFN 1 and 5 start blocks of one page; PFN 8 one of 8
    assert fr.free_tails(flags, 1).astype(int).tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0]


@requires_root
def test_every_frame_is_in_one_use_and_the_uses_agree_with_the_kernel():
    from pagewalk.analysis.ram import walk_ram
    from pagewalk.kernel.physmem import system_ram

    report = walk_ram()
    assert sum(report.uses.values()) == report.frames
    ram = sum(r.end_pfn - r.start_pfn for r in system_ram())
    assert report.frames == ram or not ram  # every System RAM frame, once
    disagree = [(r.name, r.size_bytes, r.before_bytes, r.after_bytes) for r in report.reconciled
                if r.within_target is False]
    assert disagree == [], "uses beyond 2% (or 8 MiB) of the kernel's counts"
    with open("/proc/meminfo") as f:
        total_kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    assert report.frames * PAGE >= total_kb * 1024  # MemTotal leaves out what the kernel reserved at boot


@requires_root
def test_a_process_memory_is_where_it_belongs(specimen, tmp_path):
    """The frames of what a test process made, classed one by one: its anonymous
    pages and THP as anonymous, its memfd as shared memory, a file it read as page
    cache; the frames are found through its own pagemap (read by the test)."""
    data = tmp_path / "data"
    data.write_bytes(os.urandom(64 * PAGE))
    specimen.run(
        f"a = mmap(256); write(a, 256)\n"
        f"t = mmap(1024, align=2 << 20); madvise(t, 1024, MADV_HUGEPAGE); write(t, 1024)\n"
        f"fd = memfd('pagewalk-ram', 64); s = mmap(64, shared=True, fd=fd); write(s, 64)\n"
        f"f = open({str(data)!r}, 'rb'); fm = mmap(64, prot='r', shared=True, fd=f.fileno()); read(fm, 64)\n"
        f"result = (a, t, s, fm)")
    anon, thp, memfd, filemap = specimen.run("result = (a, t, s, fm)")
    classes = {}
    with open(f"/proc/{specimen.pid}/pagemap", "rb") as pm, open("/proc/kpageflags", "rb") as kf:
        for name, addr, pages in (("anon", anon, 256), ("thp", thp, 1024), ("memfd", memfd, 64),
                                  ("file", filemap, 64)):
            raw = np.frombuffer(os.pread(pm.fileno(), pages * 8, addr // PAGE * 8), dtype=np.uint64)
            present = raw[(raw >> np.uint64(63)) == 1]
            flags = [int.from_bytes(os.pread(kf.fileno(), 8, int(p & np.uint64(FRAME)) * 8), "little")
                     for p in present]
            classes[name] = set(uses_of(flags)), len(present), any(f & THP for f in flags)
    assert classes["anon"][:2] == ({"anonymous"}, 256)
    assert classes["thp"][0] == {"anonymous"} and classes["thp"][1] == 1024
    assert classes["memfd"][:2] == ({"shared memory"}, 64)
    assert classes["file"][:2] == ({"page cache"}, 64)


@requires_root
def test_hugetlb_pages_are_hugetlb_and_add_up_to_the_pool(specimen):
    """Two hugetlb pages the test reserves (and gives back): their frames are hugetlb,
    and the hugetlb use equals the pool meminfo reports (every frame of it, used or free)."""
    from pagewalk.analysis.ram import walk_ram

    with hugetlb_pool(2):
        try:
            a = specimen.run("a = mmap(512, align=2 << 20, extra_flags=MAP_HUGETLB); write(a, 512); result = a")
        except RuntimeError as exc:
            pytest.skip(f"no hugetlb page could be allocated: {exc}")
        with open(f"/proc/{specimen.pid}/pagemap", "rb") as pm, open("/proc/kpageflags", "rb") as kf:
            raw = np.frombuffer(os.pread(pm.fileno(), 512 * 8, a // PAGE * 8), dtype=np.uint64)
            flags = [int.from_bytes(os.pread(kf.fileno(), 8, int(p & np.uint64(FRAME)) * 8), "little") for p in raw]
        assert set(uses_of(flags)) == {"hugetlb"}
        report = walk_ram()
        line = next(r for r in report.reconciled if r.name == "hugetlb")
        assert line.size_bytes == line.before_bytes == line.after_bytes >= 2 * (2 << 20)
        specimen.run(f"munmap({a}, 512)")


@requires_root
def test_the_command_prints_the_uses_and_the_kernels_counts():
    r = cli("ram", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert sum(u["frames"] for u in doc["uses"]) == doc["frames"] > 0
    assert {r["name"] for r in doc["reconciled"]} >= {"anonymous", "page cache + buffers", "shared memory", "slab",
                                                      "page tables", "hugetlb", "free"}
    text = cli("ram")
    assert text.returncode == 0 and text.stdout.startswith("USE") and "total" in text.stdout
    assert "AnonPages" in text.stdout and "Cached + Buffers - Shmem" in text.stdout


@requires_root
def test_both_ways_of_walking_count_every_frame_once():
    """The walk by distinct flag values (every page of a free block marked: Linux 6.18)
    and the walk frame by frame (older kernels, first pages marked) cover the same
    frames, and agree on every use whose rule needs no neighbour."""
    from pagewalk.analysis.ram import _ram_ranges, _walk
    from pagewalk.kernel.kpage import KPAGEFLAGS, KpageFile

    with KpageFile(KPAGEFLAGS) as f:
        ranges = _ram_ranges(f)
        by_value, lists_v, walked_v = _walk(f, ranges, heads_only=False, progress=None)
        by_frame, lists_f, walked_f = _walk(f, ranges, heads_only=True, progress=None)
    assert walked_v == walked_f == sum(by_value.values()) == sum(by_frame.values())
    # the second walk may count flagless frames after a free block as free; the machine
    # moves on between the walks: within the targets' slack
    slack = lambda n: max(2048, n // 50)  # noqa: E731 - 8 MiB of frames, or 2%
    both = lambda c: c["free"] + c["no flags"]  # noqa: E731
    assert abs(both(by_frame) - both(by_value)) <= slack(both(by_value))
    assert by_frame["free"] >= by_value["free"] - slack(by_value["free"])
    for use in ("slab", "page tables", "kernel reserved", "hugetlb", "page cache"):
        assert abs(by_frame[use] - by_value[use]) <= slack(by_value[use]), use
