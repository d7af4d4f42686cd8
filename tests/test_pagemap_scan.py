"""The PAGEMAP_SCAN binding: feature detection, the resume loop, and the kernel
defect with vec_len over 512 (fs/proc/task_mmu.c, do_pagemap_scan): reproduced with 10,000 one-page
mappings, the conditions under which the defect double-counted."""

from __future__ import annotations

import os

import pytest

import pagewalk
from pagewalk.kernel import scan
from conftest import PAGE, cli_json, pagemap_entry

MAPPINGS = 10_000

MANY = f"""
span = check(libc.mmap(None, (2 * {MAPPINGS} + 1) * PAGE, 0, 0x22 | 0x4000, -1, 0), 'mmap')
libc.munmap(span, (2 * {MAPPINGS} + 1) * PAGE)
for i in range({MAPPINGS}):
    q = check(libc.mmap(span + (2 * i + 1) * PAGE, PAGE, 3, 0x22 | 0x100000, -1, 0), 'mmap')  # FIXED_NOREPLACE
    ctypes.memset(q, 1, 1)
result = span
"""


@pytest.fixture
def scanner_on(specimen):
    fd = os.open(f"/proc/{specimen.pid}/pagemap", os.O_RDONLY)
    if not scan.supported(fd):
        os.close(fd)
        pytest.skip("this kernel has no PAGEMAP_SCAN (before 6.7)")
    yield fd
    os.close(fd)


def test_ten_thousand_one_page_mappings_are_counted_once(specimen, scanner_on):
    span = specimen.run(MANY)
    end = span + (2 * MAPPINGS + 1) * PAGE
    expected = sum(pagemap_entry(specimen.pid, span + (2 * i + 1) * PAGE) >> 63 for i in range(MAPPINGS))
    assert expected == MAPPINGS  # the test's own reading of pagemap
    for vec_len in (1, 7, 512, 4096):  # 4096 is clamped to 512
        scanner = scan.Scanner(scanner_on, vec_len=vec_len)
        regions = scanner.region_array(span, end, anyof=scan.PAGE_IS_PRESENT, return_mask=scan.PAGE_IS_PRESENT)
        assert int(((regions[:, 1] - regions[:, 0]) // PAGE).sum()) == MAPPINGS, vec_len
        assert len(regions) == MAPPINGS  # one region a mapping: holes between VMAs are never reported
    with pagewalk.Process(specimen.pid) as p:
        report = p.counts()
    # every mapping its own page: none counted into a neighbour or into the holes read between them
    inside = [(mc.counts.pages, mc.counts.present, mc.counts.exclusive) for mc in report.mappings
              if span <= mc.mapping.start < end]
    assert inside == [(1, 1, 1)] * MAPPINGS
    doc = cli_json("maps", str(specimen.pid), "--no-scan")
    assert doc["totals"]["present"] == report.totals.present and doc["totals"]["huge"] is None


def test_feature_detection_and_categories(scanner_on):
    cats = scan.categories_supported(scanner_on)
    base = (scan.PAGE_IS_WPALLOWED | scan.PAGE_IS_WRITTEN | scan.PAGE_IS_FILE | scan.PAGE_IS_PRESENT
            | scan.PAGE_IS_SWAPPED | scan.PAGE_IS_PFNZERO | scan.PAGE_IS_HUGE)
    assert cats & base == base  # everything 6.7 has
    with pytest.raises(OSError):
        scan._call(scanner_on, 0, 0, 0, 0, return_mask=1 << 20)  # no such category: EINVAL


def test_resume_loop_covers_a_range_in_small_steps(specimen, scanner_on):
    """With vec_len 1 every call stops after one region; resuming from walk_end must
    still visit every region exactly once (the selftests' walk_end cases)."""
    addr = specimen.run("a = mmap(64); [write(a + 2 * i * PAGE) for i in range(32)]; result = a")
    scanner = scan.Scanner(scanner_on, vec_len=1)
    regions = list(scanner.regions(addr, addr + 64 * PAGE, anyof=scan.PAGE_IS_PRESENT,
                                   return_mask=scan.PAGE_IS_PRESENT))
    assert [r[0] for r in regions] == [addr + 2 * i * PAGE for i in range(32)]
    assert all(r[1] - r[0] == PAGE for r in regions)
