"""The page states and the RSS/PSS/USS rules (pagewalk.core.states), on literal pagemap
entries and kpageflags values, as the kernel defines them (Documentation/admin-guide/mm/pagemap.rst, include/uapi/linux/kernel-page-flags.h):
the way the Rust procfs crate tests its decoders.  The same entries go through the
integer path (v2p) and the numpy path (every bulk command): both must agree."""

from __future__ import annotations

import numpy as np
import pytest

from pagewalk.core import states
from pagewalk.kernel.pagemap import max_swapfiles
from pagewalk.core.pagetable import PageTable
from pagewalk.core.translate import Translation
from pagewalk.kernel.maps import Mapping

PRESENT, SWAP, FILE, EXCL, UFFD, GUARD = 1 << 63, 1 << 62, 1 << 61, 1 << 56, 1 << 57, 1 << 58
KPF_ZERO_PAGE = 1 << 24


def swap(type_: int, offset: int) -> int:
    return SWAP | offset << 5 | type_


# (entry, swapped, guard, ambiguous) with PFNs visible, then hidden
ENTRIES = [
    (0, False, False, False, False, False, False),                      # untouched
    (PRESENT | EXCL | 0x1234, False, False, False, False, False, False),  # a private page
    (PRESENT | FILE | 0x99, False, False, False, False, False, False),   # a file page
    (swap(0, 0x42), True, False, False, True, False, False),            # real swap, type 0
    (swap(31, 4), False, True, False, True, False, False),              # guard marker before bit 58 (hidden: swap)
    (SWAP | GUARD | 31 | 4 << 5, False, True, False, False, True, False),  # guard marker, 6.15+
    (SWAP | UFFD | 31 | 1 << 5, False, False, False, False, False, True),  # uffd-wp marker
    (swap(1, 7) | UFFD, True, False, False, False, False, True),         # write-protected page in swap
    (swap(max_swapfiles(), 3), False, False, False, True, False, False),  # migration entry: not swap
]


@pytest.mark.parametrize("entry,swapped,guard,ambiguous,h_swapped,h_guard,h_ambiguous", ENTRIES)
def test_swap_classes_of_literal_entries(entry, swapped, guard, ambiguous, h_swapped, h_guard, h_ambiguous):
    assert states.decode_swap(entry, True) == (swapped, guard, ambiguous)
    hidden = entry & ~((1 << 55) - 1)  # what an unprivileged reader gets: no type or offset
    assert states.decode_swap(hidden, False) == (h_swapped, h_guard, h_ambiguous)


def test_numpy_and_integer_paths_agree():
    raw = np.array([e[0] for e in ENTRIES], dtype=np.uint64)
    for visible in (True, False):
        entries = raw if visible else raw & np.uint64(~((1 << 55) - 1) & (1 << 64) - 1)
        table = PageTable(0, entries, pfn_visible=visible)
        for i, e in enumerate(entries.tolist()):
            t = Translation(i * 4096, object(), e, visible, False)
            assert bool(table.guard[i]) == t.guard
            swapped = t.swapped
            assert (bool(table.swapped[i]), bool(table.swap_ambiguous[i])) == (bool(swapped), swapped is None)
            assert bool(table.present[i]) == t.present and bool(table.file[i]) == t.file


def test_zero_page_by_pfn():
    ranges = [(0x1000, 0x1000), (0x200000, 0x2001FF)]  # the zero page, and a huge zero page
    frames = np.array([0x1000, 0x1001, 0x200000, 0x2001FF, 0x200200], dtype=np.int64)
    present = np.array([True, True, True, True, True])
    assert states.zero_by_pfn(present, frames, ranges).tolist() == [True, False, True, True, False]
    assert states.zero_by_pfn(False, 0x1000, ranges) is False  # not present: never the zero page
    assert states.zero_by_pfn(True, 0x1000, ranges) is True


def test_empty_entry_is_the_only_place_shared_memory_swap_can_be():
    assert states.empty_entry(0)
    assert states.empty_entry(1 << 55)  # soft-dirty alone: still no PTE
    assert not states.empty_entry(PRESENT | 5)
    assert not states.empty_entry(SWAP | GUARD)  # a marker is a PTE
    raw = np.array([0, PRESENT, SWAP, 1 << 55], dtype=np.uint64)
    assert states.empty_entry(raw).tolist() == [True, False, False, True]


def test_rss_pss_uss_rules():
    # smaps Rss: present pages, not the zero page, not hugetlb
    assert states.rss_pages(10, 3, False) == 7
    assert states.rss_pages(10, 3, True) == 0
    assert states.rss_pages(10, None, False) == 10  # zero page unknown: an upper bound
    resident, hugetlb = np.array([True, True, False, True]), np.array([False, True, False, False])
    assert states.rss_page_mask(resident, hugetlb).tolist() == [True, False, False, True]  # page by page
    assert states.rss_pages_by_smaps(8192, 5) == 2 and states.rss_pages_by_smaps(None, 5) == 5  # smaps' Rss, else all
    # PSS in smaps' fixed point: page_size / mapcount, a count of 0 as 1
    unit = 4096 << states.PSS_SHIFT
    assert states.pss_share(1) == unit and states.pss_share(0) == unit and states.pss_share(3) == unit // 3
    assert states.pss_share(np.array([0, 1, 2, 3])).tolist() == [unit, unit, unit // 2, unit // 3]
    assert states.uss_page(1) and not states.uss_page(2)


def test_classes_pick_one_state_per_page():
    present = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    file = np.array([0, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    huge = np.array([0, 0, 1, 0, 0, 0, 0, 0], dtype=bool)
    zero = np.array([0, 0, 0, 1, 0, 0, 0, 0], dtype=bool)
    swapped = np.array([0, 0, 0, 0, 1, 0, 0, 0], dtype=bool)
    shmem = np.array([0, 0, 0, 0, 0, 1, 0, 0], dtype=bool)
    guard = np.array([0, 0, 0, 0, 0, 0, 1, 0], dtype=bool)
    got = [states.CLASSES[c] for c in states.classify(present, file, huge, zero, swapped, guard, shmem)]
    assert got == ["anonymous", "file", "huge", "zero", "swapped", "shmem_swapped", "guard", "untouched"]
    # unknown zero and huge: present pages stay present, never untouched
    got = [states.CLASSES[c] for c in states.classify(present, file, None, None, swapped, guard)]
    assert got[:4] == ["anonymous", "file", "file", "anonymous"] and got[5] == "untouched"
    assert set(states.PRESENT_CLASSES) <= set(states.CLASSES)
    assert set(states.CLASS_LABELS) == set(states.CLASSES)


def test_soft_dirty_is_unknown_on_a_kernel_without_it():
    from pagewalk.kernel import probes

    table = PageTable(0, np.array([1 << 55, 0], dtype=np.uint64), pfn_visible=True)
    if probes.soft_dirty_supported():
        assert table.soft_dirty.tolist() == [True, False]
    else:
        assert table.soft_dirty is None
    assert PageTable(0, table.raw, pfn_visible=True, soft_dirty_known=True).soft_dirty.tolist() == [True, False]
    assert PageTable(0, table.raw, pfn_visible=True, soft_dirty_known=False).soft_dirty is None


@pytest.mark.parametrize("entry, visible, expect", [
    # present, file, exclusive, uffd_wp, guard, swapped, pfn, swap type, swap offset, the words
    ((1 << 63) | (1 << 61) | (1 << 56) | 0x12345, True,
     (True, True, True, False, False, False, 0x12345, None, None, "present (file or shared memory, mapped only here)")),
    ((1 << 62) | (0xABCDE << 5) | 3, True,
     (False, False, False, False, False, True, None, 3, 0xABCDE, "swapped out (type 3, offset 0xabcde)")),
    ((1 << 62) | (1 << 58) | (4 << 5) | 31, True,  # a guard region's PTE marker (include/linux/swapops.h)
     (False, False, False, False, True, False, None, 31, 4, "guard page")),
    ((1 << 62) | (1 << 57) | (1 << 5) | 31, True,  # userfaultfd's write-protect marker
     (False, False, False, True, False, False, None, 31, 1, "uffd-wp marker (write-protected, never touched)")),
    (1 << 63, False,  # the PFN hidden from this reader: unknown, never 0
     (True, False, False, False, False, False, None, None, None, "present (anonymous, not exclusive)")),
    (0, True, (False, False, False, False, False, False, None, None, None, "not present (never touched, or dropped)")),
])
def test_translation_of_literal_entries(entry, visible, expect):
    """One address decoded from a literal pagemap entry (the single-address decoder,
    without numpy): every field and the words v2p prints."""
    t = Translation(0x1234, Mapping(0x1000, 0x9000, "rw-p", 0, "00:00", 0, ""), entry, visible, False)
    assert (t.present, t.file, t.exclusive, t.uffd_wp, t.guard, t.swapped, t.pfn, t.swap_type, t.swap_offset,
            t.state) == expect
    assert t.paddr == (None if t.pfn is None else t.pfn * 4096 + 0x234)
