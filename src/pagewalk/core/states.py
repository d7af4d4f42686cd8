"""What a page is, decided once: the page states pagewalk names and the RSS, PSS
and USS rules.  Every command, format and picture takes its words and rules from
here, so that a state means the same everywhere.

The words (JSON keys, csv and Parquet columns, ``--where`` names, the text
dump, the picture's legend):

* ``present``: a frame is mapped here, the shared zero page included (maps'
  ``present``);
* ``zero``: present, and the frame is the shared zero page or the huge zero
  page: no memory of the process's own (not RSS);
* ``huge``: present and mapped by a PMD (THP or hugetlb), not the huge zero page;
* ``file``: pagemap bit 61, a file page or shared memory (shmem) page;
  ``anonymous`` the other present pages;
* ``exclusive``: pagemap bit 56, mapped only by this process;
* ``swapped``: in swap.  Either a real swap entry in the page table (PTE markers
  and migration entries are not swap: :func:`swap_classes`), or
  ``shmem_swapped``: a shared-memory page that the kernel swapped out of the
  shmem object, which leaves no entry in any page table (mm/shmem.c;
  fs/proc/task_mmu.c ``pte_to_pagemap_entry``);
  smaps counts both as ``Swap``;
* ``guard``: a guard-region marker; ``uffd_wp``: a userfaultfd write-protect
  marker or write-protected page;
* ``untouched``: none of the above (pagemap entry 0, and not in shared-memory swap);
* unknown (None, ``-``, null): what this kernel or reader cannot tell (a hidden
  PFN, soft-dirty on a kernel without it, zero page without PFNs or
  PAGEMAP_SCAN, shared-memory swap without cachestat or map_files).

Functions work alike on one entry (Python ints and bools: ``v2p`` imports no
numpy) and on many (numpy arrays), with the same expressions.
"""

from __future__ import annotations

from collections import namedtuple

from ..kernel.pagemap import (PAGE_SIZE, PM_GUARD_REGION, PM_PFRAME_MASK, PM_PRESENT, PM_SWAP, PM_UFFD_WP,
                              PTE_MARKER_GUARD, SWAP_TYPE_BITS, SWAP_TYPE_MASK, SWP_PTE_MARKER, max_swapfiles)

__all__ = [
    "PRESENT", "ZERO", "HUGE", "FILE", "ANONYMOUS", "EXCLUSIVE", "SWAPPED", "SHMEM_SWAPPED", "GUARD",
    "UFFD_WP", "SOFT_DIRTY", "UNTOUCHED", "UNKNOWN", "CLASSES", "CLASS_LABELS", "PRESENT_CLASSES",
    "PSS_SHIFT", "SwapClasses", "swap_classes", "decode_swap", "zero_by_pfn", "KPF_ZERO_PAGE",
    "zero_by_kpageflags", "empty_entry", "known_sum", "rss_pages", "rss_page_mask", "rss_pages_by_smaps",
    "pss_share", "uss_page", "classify"
]

PRESENT, ZERO, HUGE, FILE, ANONYMOUS, EXCLUSIVE = "present", "zero", "huge", "file", "anonymous", "exclusive"
SWAPPED, SHMEM_SWAPPED, GUARD, UFFD_WP, SOFT_DIRTY = "swapped", "shmem_swapped", "guard", "uffd_wp", "soft_dirty"
UNTOUCHED, UNKNOWN = "untouched", "unknown"

# One class per page for pictures and one-word summaries, in drawing order; the
# later a class in CLASS_PRIORITY, the more it wins where several apply.
# ``unknown``: an empty entry in shared memory whose swap this reader cannot look up
# (untouched, or swapped out): drawn for whole mappings, never decided page by page.
CLASSES = (UNTOUCHED, ANONYMOUS, FILE, HUGE, ZERO, SWAPPED, SHMEM_SWAPPED, GUARD, UNKNOWN)
CLASS_LABELS = {
    UNTOUCHED: "untouched", ANONYMOUS: "present: anonymous", FILE: "present: file or shared",
    HUGE: "present: huge", ZERO: "present: zero page", SWAPPED: "swapped",
    SHMEM_SWAPPED: "swapped (shared memory)", GUARD: "guard",
    UNKNOWN: "untouched or swapped (shared memory): unknown",
}
PRESENT_CLASSES = (ANONYMOUS, FILE, HUGE, ZERO)  # the classes maps' ``present`` counts

PSS_SHIFT = 12  # smaps' fixed point for PSS: 12 fractional bits


SwapClasses = namedtuple("SwapClasses", "swapped guard ambiguous")
SwapClasses.__doc__ = """The classes of swap entries (:func:`swap_classes`): bools, or bool arrays."""


def swap_classes(swap, guard_bit, uffd_wp, swap_type, swap_offset, pfn_visible: bool):
    """Tell the kinds of swap entries (pagemap bit 62) apart (fs/proc/task_mmu.c
    ``pte_to_pagemap_entry``, include/linux/swapops.h).

    Returns a :class:`SwapClasses` (bools, or bool arrays for arrays).  ``swapped`` is a real swap entry;
    ``guard`` a guard-region marker (bit 58 since 6.15; before that, a type-31
    marker with the guard offset bit).  With PFNs visible the swap type decides.
    Without them the type is hidden: a swap entry with the uffd-wp bit may be a
    uffd-wp marker or a write-protected page that was swapped out, so it is
    ``ambiguous`` and in neither class; and a migration entry cannot be told from
    swap."""
    if pfn_visible:
        guard = guard_bit | (swap & (swap_type == SWP_PTE_MARKER) & ((swap_offset & PTE_MARKER_GUARD) != 0))
        swapped = swap & (guard ^ True) & (swap_type < max_swapfiles())
        return SwapClasses(swapped, guard, swap & False)
    rest = swap & (guard_bit ^ True)
    return SwapClasses(rest & (uffd_wp ^ True), guard_bit, rest & uffd_wp)


def decode_swap(entry: int, pfn_visible: bool) -> SwapClasses:
    """:func:`swap_classes` of one raw pagemap entry."""
    frame = entry & PM_PFRAME_MASK
    return swap_classes(bool(entry & PM_SWAP), bool(entry & PM_GUARD_REGION), bool(entry & PM_UFFD_WP),
                        frame & SWAP_TYPE_MASK, frame >> SWAP_TYPE_BITS, pfn_visible)


def zero_by_pfn(present, frame, zero_pfn_ranges):
    """Whether present pages are the zero page, from their frames: ``frame`` (an
    int or an int64 array) against ``zero_pfn_ranges``, inclusive ``(first, last)``
    PFN ranges of the zero page and the huge zero page (:func:`pagewalk.kernel.probes.zero_pfns`).
    Only meaningful where PFNs are visible; PAGEMAP_SCAN's PFNZERO says the same
    without them."""
    out = present & False
    for lo, hi in zero_pfn_ranges:
        out = out | ((frame >= lo) & (frame <= hi))
    return present & out


KPF_ZERO_PAGE = 1 << 24  # include/uapi/linux/kernel-page-flags.h


def zero_by_kpageflags(flags):
    """Whether frames are the zero page or a frame of the huge zero page, by their
    kpageflags (an int or a uint64 array): the kernel's own word where the
    kpage files can be read, which :func:`zero_by_pfn` repeats from PFNs found once."""
    return (flags & KPF_ZERO_PAGE) != 0


def empty_entry(raw):
    """Where the page table holds nothing (no frame, no swap entry, no marker): the
    only pages a shared-memory page in swap can be (mm/shmem.c; smaps looks them
    up for ``pte_none`` entries only: fs/proc/task_mmu.c ``smaps_pte_hole``)."""
    return (raw & (PM_PRESENT | PM_SWAP)) == 0


def known_sum(values) -> int | None:
    """The sum of counts, or None (unknown) if any of them is unknown: a total of
    partly unknown counts is unknown, never a smaller number."""
    total = 0
    for v in values:
        if v is None:
            return None
        total += v
    return total


def rss_pages(present: int, zero: int | None, hugetlb: bool) -> int:
    """Pages smaps counts in ``Rss``: present pages, not the zero page (where it is
    unknown, every present page: an upper bound), not hugetlb pages (smaps
    reports those apart)."""
    return 0 if hugetlb else present - (zero or 0)


def rss_page_mask(resident, hugetlb):
    """:func:`rss_pages` page by page: ``resident`` (bool array: present, not the zero
    page, or every present page where that is unknown) and not ``hugetlb`` (bool
    array: in a hugetlb mapping).  Returns a bool array."""
    return resident & ~hugetlb


def rss_pages_by_smaps(smaps_rss: int | None, present: int) -> int:
    """Pages in ``Rss`` where pagemap cannot tell the zero page (no PFNs, no
    PAGEMAP_SCAN): smaps' own ``Rss`` (``smaps_rss``, bytes; it leaves out the zero
    page and hugetlb pages: fs/proc/task_mmu.c ``smaps_pte_entry``,
    ``smaps_hugetlb_range``), or where smaps has no block for the mapping (None: it
    changed in between), :func:`rss_pages` with the zero page unknown: every
    present page, an upper bound.  The one fallback of ``maps`` and ``usage``."""
    return rss_pages(present, None, False) if smaps_rss is None else smaps_rss // PAGE_SIZE


def pss_share(mapcount):
    """What one page mapped ``mapcount`` times (an int, or an int64 array) adds to
    PSS, in smaps' fixed point: ``PAGE_SIZE << PSS_SHIFT`` divided by the map count
    (a count of 0, a frame unmapped meanwhile, counts as 1)."""
    unit = PAGE_SIZE << PSS_SHIFT
    return unit // max(mapcount, 1) if isinstance(mapcount, int) else unit // mapcount.clip(1)


def uss_page(mapcount):
    """Whether a page counts in USS: mapped by one process only."""
    return mapcount == 1


def classify(present, file, huge, zero, swapped, guard, shmem_swapped=None):
    """One class per page (an index into :data:`CLASSES`), from boolean numpy
    columns: the last that applies of anonymous, file, huge, zero, swapped,
    shmem_swapped, guard; untouched where none does.  ``huge``, ``zero`` and
    ``shmem_swapped`` may be None (unknown): such pages keep the class of what is
    known (a zero page not told apart is drawn as present anonymous memory)."""
    import numpy as np  # this module is on the v2p path: numpy only when classifying columns

    state = np.zeros(len(present), dtype=np.uint8)
    for name, where in ((ANONYMOUS, present), (FILE, present & file),
                        (HUGE, None if huge is None else present & huge),
                        (ZERO, None if zero is None else present & zero), (SWAPPED, swapped),
                        (SHMEM_SWAPPED, shmem_swapped), (GUARD, guard)):
        if where is not None:
            state[where] = CLASSES.index(name)
    return state
