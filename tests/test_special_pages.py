"""Special page states: transparent huge pages, the huge zero page, guard regions,
uffd-wp markers, real swap, and pages dropped with MADV_DONTNEED.

Every expected value comes from the kernel or from what the test itself did:
``smaps`` fields, raw pagemap entries read here without pagewalk, ``/proc/kpageflags``,
or the pages the test wrote/advised.  pagewalk's answers are only ever compared
against those (Documentation/admin-guide/mm/pagemap.rst, fs/proc/task_mmu.c).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

import pagewalk
from conftest import (
    KPF_THP,
    smaps_rollup,
    swap_file,
    hugetlb_pool,
    KPF_ZERO_PAGE,
    cli,
    kpageflags,
    mapping_counts,
    requires_root,
    smaps_of,
)
from specimen import PAGE, Specimen

# Pagemap bits, spelled out here so the expectations do not depend on pagewalk's constants.
BIT_PRESENT = 1 << 63
BIT_SWAP = 1 << 62
BIT_GUARD = 1 << 58
BIT_UFFD_WP = 1 << 57
FRAME_MASK = (1 << 55) - 1
SWP_TYPE_MASK = 0x1F
FIRST_NON_SWAP_TYPE = 28  # here: migration 28..30, PTE marker 31 (include/linux/swap.h, MAX_SWAPFILES)

HPAGE = 2 << 20
HPAGE_PAGES = HPAGE // PAGE
MADV_NOHUGEPAGE = 15



def raw_entries(pid: int, addr: int, pages: int) -> np.ndarray:
    """Raw pagemap entries of ``pages`` pages from ``addr``, read here (not by pagewalk)."""
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        data = os.pread(fd, pages * 8, addr // PAGE * 8)
    finally:
        os.close(fd)
    assert len(data) == pages * 8
    return np.frombuffer(data, dtype="<u8").astype(np.uint64)


def bits(raw: np.ndarray, mask: int) -> np.ndarray:
    return (raw & np.uint64(mask)) != 0


def region_smaps(pid: int, addr: int, pages: int) -> dict:
    """The kernel's smaps block for the test's region, checking that the mapping is
    exactly that region (so smaps and per-mapping counts talk about the same pages)."""
    block = smaps_of(pid, addr)
    assert block["Size"] == pages * PAGE, f"region merged or split: smaps Size {block['Size']}"
    return block


def page_table(pid: int, addr: int, pages: int):
    with pagewalk.Process(pid) as p:
        return p.page_table(addr, addr + pages * PAGE)


# -- 1. transparent huge pages --------------------------------------------------------

def thp_region(specimen, pages: int = 2 * HPAGE_PAGES) -> int:
    """Map ``pages`` pages 2 MiB aligned, MADV_HUGEPAGE, write every page; then
    MADV_NOHUGEPAGE so khugepaged leaves the region alone while the test looks."""
    return specimen.run(
        f"a = mmap({pages}, align={HPAGE}); madvise(a, {pages}, MADV_HUGEPAGE); write(a, {pages}); "
        f"madvise(a, {pages}, {MADV_NOHUGEPAGE}); result = a")


def pmd_mapped_pages(raw: np.ndarray) -> np.ndarray:
    """Which pages are mapped by a PMD-level THP, decided from raw entries and kpageflags:
    a 2 MiB block whose 512 frames are present, consecutive, start 512-aligned, and all
    carry KPF_THP."""
    out = np.zeros(len(raw), dtype=bool)
    for lo in range(0, len(raw) - HPAGE_PAGES + 1, HPAGE_PAGES):
        block = raw[lo:lo + HPAGE_PAGES]
        if not bits(block, BIT_PRESENT).all():
            continue
        pfn = (block & np.uint64(FRAME_MASK)).astype(np.int64)
        if pfn[0] % HPAGE_PAGES or not (np.diff(pfn) == 1).all():
            continue
        if all(kpageflags(int(f)) & KPF_THP for f in pfn):
            out[lo:lo + HPAGE_PAGES] = True
    return out


@requires_root
def test_thp_counted_as_smaps_anon_huge_pages(specimen):
    """A written, 2 MiB-aligned MADV_HUGEPAGE region is PMD-mapped: smaps AnonHugePages
    says how much; pagewalk's huge count, its per-page huge column and its PFNs
    (consecutive inside a huge page) must agree with smaps and the raw entries."""
    pages = 2 * HPAGE_PAGES
    a = thp_region(specimen, pages)
    block = region_smaps(specimen.pid, a, pages)
    if block["AnonHugePages"] == 0:
        pytest.skip("the kernel could not allocate a transparent huge page (AnonHugePages 0)")

    raw = raw_entries(specimen.pid, a, pages)
    expected_huge = pmd_mapped_pages(raw)
    # The test's own reading of the raw entries must agree with the kernel's smaps.
    assert expected_huge.sum() * PAGE == block["AnonHugePages"]

    counts = mapping_counts(specimen.pid, a)
    assert counts.huge is not None, "PAGEMAP_SCAN exists on 6.18: huge must be known"
    assert counts.huge * PAGE == block["AnonHugePages"]
    assert counts.rss == block["Rss"]
    assert counts.present == pages

    table = page_table(specimen.pid, a, pages)
    assert table.huge is not None
    assert int(table.huge.sum()) == block["AnonHugePages"] // PAGE
    assert np.array_equal(table.huge, expected_huge)
    assert np.array_equal(table.pfn, (raw & np.uint64(FRAME_MASK)).astype(np.int64))
    for lo in np.flatnonzero(expected_huge)[::HPAGE_PAGES]:
        pfn = table.pfn[lo:lo + HPAGE_PAGES]
        assert (np.diff(pfn) == 1).all(), f"PFNs of the huge page at page {lo} are not consecutive"
        assert pfn[0] % HPAGE_PAGES == 0
    # usage's (and the exporter's) huge bytes: the whole process, as smaps_rollup sums it
    from pagewalk.analysis.usage import measure

    kernel = smaps_rollup(specimen.pid)
    expected = kernel["AnonHugePages"] + kernel["ShmemPmdMapped"] + kernel["FilePmdMapped"]
    assert expected >= block["AnonHugePages"] > 0
    assert measure([specimen.pid]).rows[0].huge == expected


@requires_root
def test_thp_split_by_dontneed_is_no_longer_huge(specimen):
    """MADV_DONTNEED of one 4 KiB page inside a PMD-mapped THP splits that PMD: smaps
    AnonHugePages drops by 2 MiB and the other 511 pages stay present but PTE-mapped.
    pagewalk must count only the intact huge page as huge (huge != present here)."""
    pages = 2 * HPAGE_PAGES
    a = thp_region(specimen, pages)
    if region_smaps(specimen.pid, a, pages)["AnonHugePages"] != 2 * HPAGE:
        pytest.skip("the kernel could not back both 2 MiB blocks with huge pages")
    hole = HPAGE_PAGES + 7
    specimen.run(f"madvise({a + hole * PAGE}, 1, MADV_DONTNEED)")

    block = region_smaps(specimen.pid, a, pages)
    assert block["AnonHugePages"] == HPAGE  # kernel fact: only the first block is PMD-mapped
    raw = raw_entries(specimen.pid, a, pages)
    assert not bits(raw[hole:hole + 1], BIT_PRESENT).any()
    expected_huge = np.zeros(pages, dtype=bool)
    expected_huge[:HPAGE_PAGES] = True

    counts = mapping_counts(specimen.pid, a)
    assert counts.huge * PAGE == block["AnonHugePages"]
    assert counts.present == pages - 1 == int(bits(raw, BIT_PRESENT).sum())
    assert counts.rss == block["Rss"] == (pages - 1) * PAGE

    table = page_table(specimen.pid, a, pages)
    assert np.array_equal(table.huge, expected_huge)


@requires_root
def test_huge_zero_page_counts_as_zero_not_huge(specimen):
    """A read-only fault on a 2 MiB-aligned MADV_HUGEPAGE region maps the huge zero page:
    512 present entries with consecutive frames whose kpageflags carry KPF_ZERO_PAGE.
    It holds no memory of the process (smaps Rss 0, AnonHugePages 0): pagewalk must
    count those pages as zero, not huge, and its rss must be 0."""
    z = specimen.run(f"z = mmap({HPAGE_PAGES}, prot='r', align={HPAGE}); "
                     f"madvise(z, {HPAGE_PAGES}, MADV_HUGEPAGE); read(z, {HPAGE_PAGES}); result = z")
    raw = raw_entries(specimen.pid, z, HPAGE_PAGES)
    pfn = (raw & np.uint64(FRAME_MASK)).astype(np.int64)
    if not (bits(raw, BIT_PRESENT).all() and (np.diff(pfn) == 1).all()
            and kpageflags(int(pfn[0])) & KPF_ZERO_PAGE):
        pytest.skip("the kernel did not map the huge zero page here "
                    f"(first entry 0x{int(raw[0]):x})")
    block = region_smaps(specimen.pid, z, HPAGE_PAGES)
    assert block["Rss"] == 0 and block["AnonHugePages"] == 0  # kernel facts (fs/proc/task_mmu.c)

    counts = mapping_counts(specimen.pid, z)
    assert counts.present == HPAGE_PAGES
    assert counts.zero == HPAGE_PAGES
    assert counts.huge == 0
    assert counts.rss == block["Rss"] == 0

    table = page_table(specimen.pid, z, HPAGE_PAGES)
    assert table.zero is not None and table.zero.all()
    assert table.huge is not None and not table.huge.any()


@requires_root
def test_huge_zero_page_v2p_says_zero(specimen):
    """v2p of an address backed by the huge zero page (raw entry present, frame has
    KPF_ZERO_PAGE) must call it the zero page.  The kernel sets PM_FILE on it (the
    huge zero folio is not anon, fs/proc/task_mmu.c's PMD path), so the FILE bit alone must
    not rule the zero page out."""
    z = specimen.run(f"z = mmap({HPAGE_PAGES}, prot='r', align={HPAGE}); "
                     f"madvise(z, {HPAGE_PAGES}, MADV_HUGEPAGE); read(z, {HPAGE_PAGES}); result = z")
    addr = z + 5 * PAGE
    entry = int(raw_entries(specimen.pid, addr, 1)[0])
    if not entry & BIT_PRESENT or not kpageflags(entry & FRAME_MASK) & KPF_ZERO_PAGE:
        pytest.skip(f"the kernel did not map the huge zero page here (entry 0x{entry:x})")

    r = cli("v2p", specimen.pid, hex(addr))
    assert r.returncode == 0, r.stderr
    assert "zero page" in r.stdout, (
        f"pagewalk BUG: v2p of a huge-zero-page address (raw entry 0x{entry:x}, kpageflags "
        f"has KPF_ZERO_PAGE) does not say 'zero page': {r.stdout.strip()!r}")
    r = cli("v2p", specimen.pid, hex(addr), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["zero"] is True, "pagewalk BUG: v2p --json zero is not true"


# -- 2. guard pages ------------------------------------------------------------------

@requires_root
def test_guard_pages(specimen):
    """MADV_GUARD_INSTALL on the even pages of a written 10-page mapping replaces them
    by guard markers: raw entries SWAP|GUARD (bit 58), not swap (smaps Swap 0) and
    not memory (smaps Rss = the 5 odd pages).  pagewalk must count 5 guard pages,
    0 swapped, and mark exactly the even pages; v2p and dump --where guard agree."""
    g = specimen.run("g = mmap(10); write(g, 10)\n"
                     "for i in range(0, 10, 2): madvise(g + i * PAGE, 1, MADV_GUARD_INSTALL)\n"
                     "result = g")
    even = np.arange(10) % 2 == 0
    raw = raw_entries(specimen.pid, g, 10)
    assert np.array_equal(bits(raw, BIT_GUARD), even)
    assert bits(raw[even], BIT_SWAP).all()
    assert np.array_equal(bits(raw, BIT_PRESENT), ~even)
    block = region_smaps(specimen.pid, g, 10)
    assert block["Swap"] == 0 and block["Rss"] == 5 * PAGE

    counts = mapping_counts(specimen.pid, g)
    assert counts.guard == 5
    assert counts.swapped == 0 == block["Swap"]
    assert counts.present == 5
    assert counts.rss == block["Rss"]

    table = page_table(specimen.pid, g, 10)
    assert np.array_equal(table.guard, even)
    assert not table.swapped.any()

    r = cli("v2p", specimen.pid, hex(g + 2 * PAGE))
    assert r.returncode == 0, r.stderr
    assert "guard page" in r.stdout

    r = cli("dump", specimen.pid, "--where", "guard", "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 5, r.stdout
    assert sorted(json.loads(line)["vaddr"] for line in lines) == [g + i * PAGE for i in range(0, 10, 2)]


# -- 3. uffd-wp markers --------------------------------------------------------------

@requires_root
def test_uffd_wp_markers_are_not_swap(specimen):
    """Async uffd write-protect with WP_UNPOPULATED puts uffd-wp PTE markers on the
    never-touched pages: raw entries SWAP|UFFD_WP (bits 62, 57) with no swap behind
    them (smaps Swap 0).  Writing page 3 makes it present.  pagewalk must count the
    markers as uffd_wp, never as swapped, and exactly one present page."""
    a = specimen.run("a = mmap(8); uffd_wp(a, 8); write(a + 3 * PAGE); result = a")
    raw = raw_entries(specimen.pid, a, 8)
    untouched = np.arange(8) != 3
    assert bits(raw[untouched], BIT_UFFD_WP).all()
    assert bits(raw[untouched], BIT_SWAP).all()
    assert np.array_equal(bits(raw, BIT_PRESENT), ~untouched)
    block = region_smaps(specimen.pid, a, 8)
    assert block["Swap"] == 0 and block["Rss"] == PAGE

    counts = mapping_counts(specimen.pid, a)
    assert counts.uffd_wp == int(bits(raw, BIT_UFFD_WP).sum())
    assert counts.swapped == 0 == block["Swap"]
    assert counts.present == 1
    assert counts.guard == 0
    assert counts.rss == block["Rss"]

    table = page_table(specimen.pid, a, 8)
    assert np.array_equal(table.uffd_wp, bits(raw, BIT_UFFD_WP))
    assert not table.swapped.any()


# -- 4. real swap --------------------------------------------------------------------

def _swap_stable(pid: int, addr: int, pages: int) -> dict:
    """smaps of the region once Swap has stopped moving (two equal reads in a row)."""
    previous = region_smaps(pid, addr, pages)
    for _ in range(20):
        time.sleep(0.05)
        block = region_smaps(pid, addr, pages)
        if block["Swap"] == previous["Swap"] and block["Rss"] == previous["Rss"]:
            return block
        previous = block
    return previous


@requires_root
def test_real_swap_entries():
    """With a swap file enabled, MADV_PAGEOUT on written private anonymous pages puts
    real swap entries in their PTEs (smaps Swap).  pagewalk's swapped count must
    equal smaps Swap, its swap type/offset must decode the raw entries (type of a
    real device, offset > 0), and v2p must say "swapped out (type ...".  (Shared
    anonymous memory would read as 0 when paged out: not tested as swapped.)"""
    pages = 256
    with swap_file() as path:
        with Specimen() as s:
            a = s.run(f"a = mmap({pages}); write(a, {pages}); result = a")
            deadline = time.monotonic() + 5
            while True:
                s.run(f"madvise({a}, {pages}, MADV_PAGEOUT)")
                if region_smaps(s.pid, a, pages)["Swap"] > 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            block = _swap_stable(s.pid, a, pages)
            if block["Swap"] == 0:
                pytest.skip(f"MADV_PAGEOUT swapped nothing out to {path} within 5 s")

            raw = raw_entries(s.pid, a, pages)
            frame = (raw & np.uint64(FRAME_MASK)).astype(np.int64)
            raw_type = frame & SWP_TYPE_MASK
            raw_swapped = bits(raw, BIT_SWAP) & ~bits(raw, BIT_GUARD) & (raw_type < FIRST_NON_SWAP_TYPE)
            assert raw_swapped.sum() * PAGE == block["Swap"]  # the test's decode agrees with smaps

            counts = mapping_counts(s.pid, a)
            assert counts.swapped * PAGE == block["Swap"]
            assert counts.rss == block["Rss"]
            assert counts.present + counts.swapped == pages

            table = page_table(s.pid, a, pages)
            assert np.array_equal(table.swapped, raw_swapped)
            assert (table.swap_type[raw_swapped] >= 0).all()
            assert (table.swap_offset[raw_swapped] > 0).all()
            assert np.array_equal(table.swap_type[raw_swapped], raw_type[raw_swapped])
            assert np.array_equal(table.swap_offset[raw_swapped], frame[raw_swapped] >> 5)

            first = int(np.flatnonzero(raw_swapped)[0])
            r = cli("v2p", s.pid, hex(a + first * PAGE))
            assert r.returncode == 0, r.stderr
            assert "swapped out (type" in r.stdout, r.stdout

            # usage: swap as smaps_rollup counts it, and the kernel's SwapPss beside it
            from pagewalk.analysis.usage import measure

            row = measure([s.pid]).rows[0]
            with open(f"/proc/{s.pid}/smaps_rollup") as f:
                rollup = {ln.split()[0].rstrip(":"): int(ln.split()[1]) * 1024 for ln in f if ln.endswith("kB\n")}
            assert row.swap == rollup["Swap"] > 0 and row.swap_pss == rollup["SwapPss"]
            # several processes, one with swap: the kernel's sums cannot count shared memory in
            # swap once in a total, so usage walks the pages (pagewalk.analysis.usage.measure_rollups)
            from pagewalk.analysis.usage import measure_rollups

            assert measure_rollups([s.pid, os.getpid()]) is None
            r = cli("usage", "--json", str(s.pid), str(os.getpid()))
            assert r.returncode == 0 and json.loads(r.stdout)["source"] == "pagemap", r.stderr

            # types -p: swapped pages count (raw mode marks them with page-types' swap bit),
            # in the summary (C, no numpy) and in the walk that -a makes (numpy) alike
            for extra in ([], ["-a", "0,"]):
                r = cli("types", "-p", str(s.pid), "-r", "--json", *extra)
                assert r.returncode == 0, r.stderr
                rows = json.loads(r.stdout)["rows"]
                assert sum(row["pages"] for row in rows if row["flags"] & (1 << 62)) * PAGE == rollup["Swap"], extra


# -- 5. MADV_DONTNEED ----------------------------------------------------------------

@requires_root
def test_dontneed_pages_are_not_present(specimen):
    """MADV_DONTNEED on written private anonymous pages frees them: their raw entries
    read 0 and smaps Rss drops.  A fully dropped mapping has Rss 0 and pagewalk must
    count 0 present; on a half-dropped one it must count exactly the kept half."""
    full = specimen.run("a = mmap(16); write(a, 16); madvise(a, 16, MADV_DONTNEED); result = a")
    raw = raw_entries(specimen.pid, full, 16)
    assert not raw.any()
    block = region_smaps(specimen.pid, full, 16)
    assert block["Rss"] == 0
    counts = mapping_counts(specimen.pid, full)
    assert counts.present == 0
    assert counts.rss == block["Rss"] == 0
    assert counts.swapped == 0

    half = specimen.run("b = mmap(16); write(b, 16); madvise(b, 8, MADV_DONTNEED); result = b")
    raw = raw_entries(specimen.pid, half, 16)
    kept = np.arange(16) >= 8
    assert np.array_equal(bits(raw, BIT_PRESENT), kept)
    block = region_smaps(specimen.pid, half, 16)
    assert block["Rss"] == 8 * PAGE
    counts = mapping_counts(specimen.pid, half)
    assert counts.present == 8
    assert counts.rss == block["Rss"]
    table = page_table(specimen.pid, half, 16)
    assert np.array_equal(table.present, kept)


@requires_root
def test_hugetlb_pages_are_huge_and_not_rss(specimen):
    """hugetlb memory: smaps reports it in *_Hugetlb, not in Rss; pagewalk counts its
    pages as present and huge, with rss 0 (the test reserves two 2 MiB pages itself)."""
    with hugetlb_pool(2):
        try:
            a = specimen.run("a = mmap(512, align=2 << 20, extra_flags=MAP_HUGETLB); write(a, 512); result = a")
        except RuntimeError as exc:
            pytest.skip(f"no hugetlb page could be allocated: {exc}")
        kernel = smaps_of(specimen.pid, a)
        counts = mapping_counts(specimen.pid, a)
        assert kernel["Private_Hugetlb"] == 2 << 20 and kernel["Rss"] == 0
        assert counts.present == 512 and counts.huge == 512
        assert counts.rss == kernel["Rss"] == 0
        specimen.run(f"munmap({a}, 512)")
