"""Pagemap entries decoded with numpy: per-page arrays (``maps``' per-mapping counts are
:mod:`pagewalk.core.counting`, in C; tests/test_native.py proves both agree).

Everything here is vectorised: no Python loop runs per page.  Meanings follow
the kernel's ``pte_to_pagemap_entry`` (see :mod:`pagewalk.kernel.pagemap`):

* ``present``: a page is mapped (includes the shared zero page);
* ``zero``: present, and the page is the shared zero page or the huge zero page
  (it holds no memory of the process: not RSS);
* ``swapped``: a real swap entry: PTE markers (guard pages, uffd-wp markers on
  unpopulated pages) and migration entries are not swap;
* ``huge``: mapped by a PMD-level transparent huge page or hugetlb (the huge zero
  page counts as ``zero``, not ``huge``).  Pagemap itself has no bit for this:
  it comes from PAGEMAP_SCAN's ``PAGE_IS_HUGE``, and is None without it.
* ``pfn``, ``swap_type``, ``swap_offset``: -1 where they do not apply or are hidden
  from this reader (no CAP_SYS_ADMIN); never 0 for "unknown".
"""

from __future__ import annotations

import functools
import sys

import numpy as np

from ..kernel.maps import Mapping
from ..kernel.pagemap import (PAGE_SIZE, PM_FILE, PM_GUARD_REGION, PM_MMAP_EXCLUSIVE, PM_PFRAME_MASK,
                              PM_PRESENT, PM_SOFT_DIRTY, PM_SWAP, PM_UFFD_WP, SWAP_TYPE_BITS, SWAP_TYPE_MASK)
from ..kernel.probes import soft_dirty_supported
from ..runs import ramps, run_arrays, runs_of
from .states import SwapClasses, empty_entry, swap_classes, zero_by_pfn

__all__ = ["U64", "PageTable", "zero_pfn_mask"]

U64 = np.uint64
_LITTLE_ENDIAN = sys.byteorder == "little"


def _bit(raw: np.ndarray, mask: int) -> np.ndarray:
    """Where ``raw`` has any bit of ``mask`` set.  A single bit is read from the byte
    that holds it where the layout allows: no temporary of a u64 per page (fresh
    memory page-faults)."""
    bit = mask.bit_length() - 1
    if mask == 1 << bit and _LITTLE_ENDIAN and raw.ndim == 1 and raw.flags.c_contiguous and raw.dtype == U64:
        return (raw.view(np.uint8)[bit >> 3 :: 8] & np.uint8(1 << (bit & 7))) != 0
    return (raw & U64(mask)) != 0


class PageTable:
    """Decoded pagemap entries of consecutive virtual pages from ``start``.

    ``raw`` holds the u64 entries exactly as the kernel gave them; the other
    attributes are computed from it on first use.  ``zero`` and ``huge`` may be
    given by the caller (from PAGEMAP_SCAN); otherwise ``zero`` is derived from
    the known zero-page PFNs when PFNs are visible, and both are None when they
    cannot be known.  ``kpageflags``, when the reader asked for it, holds each
    present page's frame flags (0 for pages without a frame), else None.

    Rows that are not consecutive pages have an explicit ``vaddr``, given as an
    array or as ``runs``: ``(first, pages)``, each run's first address and its
    length in pages, from which ``vaddr`` is made when it is first asked for.
    """

    def __init__(self, start: int, raw: np.ndarray, *, pfn_visible: bool,
                 zero: np.ndarray | None = None, huge: np.ndarray | None = None,
                 zero_pfns: frozenset[int] = frozenset(), page_size: int = PAGE_SIZE,
                 vaddr: np.ndarray | None = None, runs: tuple[np.ndarray, np.ndarray] | None = None,
                 kpageflags: np.ndarray | None = None, soft_dirty_known: bool | None = None) -> None:
        self.start = start
        self.raw = raw
        self.pfn_visible = pfn_visible
        self.page_size = page_size
        self._zero = zero
        self.huge = huge
        self._zero_pfns = zero_pfns
        self.kpageflags = kpageflags
        # shared memory in swap (set by mark_shmem_swap; None: none looked up)
        self.shmem_swapped: np.ndarray | None = None
        self.shmem_unknown: np.ndarray | None = None
        # resident tables: the shmem lookup's records, what it could not look up, and why
        self.shmem_records: dict = {}
        self.shmem_unknown_mappings: list[Mapping] = []
        self.shmem_note: str | None = None
        # resident tables: the mappings read with, and those that changed during the walk
        self.mappings: list[Mapping] | None = None
        self.changed_mappings: list[Mapping] = []
        self.runs = runs
        # whether bit 55 means anything: None asks this kernel (a snapshot says for its own)
        self._soft_dirty_known = soft_dirty_known
        self._explicit_vaddr = vaddr is not None or runs is not None
        if vaddr is not None:  # pages that are not consecutive (see concat)
            self.vaddr = vaddr

    @classmethod
    def concat(cls, parts: list[tuple[PageTable, np.ndarray | None]]) -> PageTable:
        """The kept pages of several tables, one after another, as one table whose
        ``vaddr`` says where each page is (``start`` and slicing do not apply)."""
        def joined(column):
            cols = [getattr(t, column) for t, _ in parts]
            if any(c is None for c in cols):
                return None
            return np.concatenate([c if k is None else c[k] for c, (_, k) in zip(cols, parts)])

        def joined_marks(column):  # None in a part: nothing marked there
            if all(getattr(t, column) is None for t, _ in parts):
                return None
            cols = [np.zeros(len(t), dtype=bool) if getattr(t, column) is None else getattr(t, column)
                    for t, _ in parts]
            return np.concatenate([c if k is None else c[k] for c, (_, k) in zip(cols, parts)])

        first = parts[0][0]
        # Zero-page masks given by PAGEMAP_SCAN are joined; otherwise the joined table
        # derives its own from the PFNs, once for all rows.
        table = cls(first.start, joined("raw"), pfn_visible=first.pfn_visible, zero=joined("_zero"),
                    huge=joined("huge"), zero_pfns=first._zero_pfns, page_size=first.page_size,
                    vaddr=joined("vaddr"), kpageflags=joined("kpageflags"),
                    soft_dirty_known=first.soft_dirty_known)
        table.shmem_swapped, table.shmem_unknown = joined_marks("shmem_swapped"), joined_marks("shmem_unknown")
        return table

    def __len__(self) -> int:
        return len(self.raw)

    def take(self, index: np.ndarray) -> PageTable:
        """The rows ``index`` (an integer array) of this table, as a table with
        explicit ``vaddr``."""
        def pick(column):
            return None if column is None else column[index]

        table = PageTable(self.start, self.raw[index], pfn_visible=self.pfn_visible, zero=pick(self._zero),
                          huge=pick(self.huge), zero_pfns=self._zero_pfns, page_size=self.page_size,
                          vaddr=self.vaddr[index], kpageflags=pick(self.kpageflags),
                          soft_dirty_known=self.soft_dirty_known)
        table.shmem_swapped, table.shmem_unknown = pick(self.shmem_swapped), pick(self.shmem_unknown)
        return table

    def __getitem__(self, part: slice) -> PageTable:
        """The pages ``part`` (a slice with step 1) of this table, as a table (rows, for
        a table with explicit ``vaddr``).  Raises ValueError for another step."""
        a, b, step = part.indices(len(self.raw))
        if step != 1:
            raise ValueError("page tables slice with step 1 only")
        cut = slice(a, max(a, b))
        part = PageTable(self.start + a * self.page_size, self.raw[cut], pfn_visible=self.pfn_visible,
                         zero=None if self._zero is None else self._zero[cut],
                         huge=None if self.huge is None else self.huge[cut],
                         zero_pfns=self._zero_pfns, page_size=self.page_size,
                         vaddr=self.vaddr[cut] if self._explicit_vaddr else None,
                         kpageflags=None if self.kpageflags is None else self.kpageflags[cut],
                         soft_dirty_known=self.soft_dirty_known)
        part.shmem_swapped = None if self.shmem_swapped is None else self.shmem_swapped[cut]
        part.shmem_unknown = None if self.shmem_unknown is None else self.shmem_unknown[cut]
        return part

    @property
    def end(self) -> int:
        """The address just past the last page, in bytes (``start + len(self) * page_size``;
        meaningless for a table with explicit ``vaddr``)."""
        return self.start + len(self.raw) * self.page_size

    @functools.cached_property
    def vaddr(self) -> np.ndarray:
        """Each row's virtual address in bytes (uint64 array)."""
        if self.runs is not None:
            first, pages = self.runs
            return ramps(first, pages, self.page_size)
        return np.arange(len(self.raw), dtype=U64) * U64(self.page_size) + U64(self.start)

    @functools.cached_property
    def present(self) -> np.ndarray:
        """Pagemap bit 63 (fs/proc/task_mmu.c): the page is in memory, the zero page included (bool array)."""
        return _bit(self.raw, PM_PRESENT)

    @functools.cached_property
    def swap_entry(self) -> np.ndarray:
        """Pagemap bit 62: any non-present, non-empty entry (swap, migration or marker; bool array)."""
        return _bit(self.raw, PM_SWAP)

    @functools.cached_property
    def file(self) -> np.ndarray:
        """Pagemap bit 61: a file page or shared anonymous (shmem) page (bool array)."""
        return _bit(self.raw, PM_FILE)

    @functools.cached_property
    def exclusive(self) -> np.ndarray:
        """Pagemap bit 56: the page is mapped by this process only (bool array)."""
        return _bit(self.raw, PM_MMAP_EXCLUSIVE)

    @property
    def soft_dirty_known(self) -> bool:
        """Whether the kernel that wrote these entries has soft-dirty bits."""
        if self._soft_dirty_known is None:
            self._soft_dirty_known = soft_dirty_supported()
        return self._soft_dirty_known

    @functools.cached_property
    def soft_dirty(self) -> np.ndarray | None:
        """Pagemap bit 55: written since the soft-dirty bits were cleared (bool array;
        fs/proc/task_mmu.c).  None on a kernel without soft-dirty bits (CONFIG_MEM_SOFT_DIRTY
        off), where it is always 0 and means nothing."""
        return _bit(self.raw, PM_SOFT_DIRTY) if self.soft_dirty_known else None

    @functools.cached_property
    def uffd_wp(self) -> np.ndarray:
        """Pagemap bit 57: userfaultfd write-protected, present or as a marker (bool array)."""
        return _bit(self.raw, PM_UFFD_WP)

    @functools.cached_property
    def _frame(self) -> np.ndarray:
        return (self.raw & U64(PM_PFRAME_MASK)).view(np.int64)

    @functools.cached_property
    def _swap_classes(self) -> SwapClasses:
        frame = self._frame
        return swap_classes(self.swap_entry, _bit(self.raw, PM_GUARD_REGION), self.uffd_wp,
                            frame & SWAP_TYPE_MASK, frame >> SWAP_TYPE_BITS, self.pfn_visible)

    @property
    def guard(self) -> np.ndarray:
        """Guard-region markers (MADV_GUARD_INSTALL, mm/madvise.c; bool array)."""
        return self._swap_classes.guard

    @property
    def swapped(self) -> np.ndarray:
        """In swap (bool array): real swap entries (markers and, with PFNs visible, migration
        entries excluded) and shared-memory pages in swap (:attr:`shmem_swapped`)."""
        if self.shmem_swapped is None:
            return self._swap_classes.swapped
        return self._swap_classes.swapped | self.shmem_swapped

    @property
    def swapped_unknown(self) -> np.ndarray | None:
        """Pages whose swap state this reader cannot tell (a swap entry or a uffd-wp
        marker, without PFNs; an empty entry of shared memory whose swap cannot be
        looked up); None where there is none."""
        unknown = self.swap_ambiguous if self.swap_ambiguous.any() else None
        if self.shmem_unknown is not None:
            unknown = self.shmem_unknown if unknown is None else unknown | self.shmem_unknown
        return unknown

    @property
    def untouched_pages(self) -> np.ndarray:
        """Untouched pages (bool array): what :func:`pagewalk.core.states.classify`
        calls untouched, where the page table holds nothing and the page is in no
        shared-memory swap, nor unknown there."""
        empty = empty_entry(self.raw)
        for marks in (self.shmem_swapped, self.shmem_unknown):
            if marks is not None:
                empty = empty & ~marks
        return empty

    def untouched(self) -> bool:
        """Whether every page is untouched: no entry, and none in shared-memory swap."""
        return (not self.raw.any() and (self.shmem_swapped is None or not self.shmem_swapped.any())
                and (self.shmem_unknown is None or not self.shmem_unknown.any()))

    def mark_shmem_swap(self, runs) -> None:
        """Mark the pages of this table that are shared memory in swap, which
        pagemap shows as empty (mm/shmem.c): ``runs`` are the ``(first, end)``
        virtual page numbers of the object's pages in swap (:mod:`pagewalk.kernel.shmem`),
        as a list or as two arrays (:func:`run_arrays`, for a mapping read in many
        chunks); only empty entries count (a private mapping's copied page has an
        entry of its own).  None: shared memory whose swap this reader cannot look
        up, so its empty entries are unknown rather than untouched."""
        empty = empty_entry(self.raw)
        if runs is None:
            self.shmem_unknown = empty if self.shmem_unknown is None else self.shmem_unknown | empty
            return
        starts, ends = run_arrays(runs)
        n = len(self.raw)
        inside = np.zeros(n, dtype=bool)
        if n and len(starts):
            vpn = (self.vaddr >> U64(self.page_size.bit_length() - 1)).astype(np.int64)
            # the runs that reach into this table, then their rows (runs are sorted, disjoint)
            k0, k1 = np.searchsorted(ends, vpn[0], side="right"), np.searchsorted(starts, vpn[-1], side="right")
            lo, hi = np.searchsorted(vpn, starts[k0:k1]), np.searchsorted(vpn, ends[k0:k1])
            delta = np.zeros(n + 1, dtype=np.int32)
            np.add.at(delta, lo, 1)
            np.add.at(delta, hi, -1)
            inside = np.cumsum(delta[:n]) > 0
        found = inside & empty
        self.shmem_swapped = found if self.shmem_swapped is None else self.shmem_swapped | found

    @property
    def swap_ambiguous(self) -> np.ndarray:
        """Entries an unprivileged reader cannot class: swap or uffd-wp marker (never
        set when PFNs are visible); they are in neither ``swapped`` nor ``guard``."""
        return self._swap_classes.ambiguous

    @functools.cached_property
    def pfn(self) -> np.ndarray:
        """The page frame number of present pages (int64 array; a page index, not bytes);
        -1 where not present or hidden from this reader (no CAP_SYS_ADMIN)."""
        if not self.pfn_visible:
            return np.full(len(self.raw), -1, dtype=np.int64)
        return np.where(self.present, self._frame, -1)

    @functools.cached_property
    def swap_type(self) -> np.ndarray:
        """The swap type (bits 0-4) of swap entries (int64 array); -1 where the entry is
        no swap entry or PFNs are hidden from this reader."""
        if not self.pfn_visible:
            return np.full(len(self.raw), -1, dtype=np.int64)
        return np.where(self.swap_entry, self._frame & SWAP_TYPE_MASK, -1)

    @functools.cached_property
    def swap_offset(self) -> np.ndarray:
        """The swap offset (bits 5-54, in pages within the swap area) of swap entries
        (int64 array); -1 where the entry is no swap entry or PFNs are hidden from this reader."""
        if not self.pfn_visible:
            return np.full(len(self.raw), -1, dtype=np.int64)
        return np.where(self.swap_entry, self._frame >> SWAP_TYPE_BITS, -1)

    @property
    def zero_scanned(self) -> np.ndarray | None:
        """The zero-page column as PAGEMAP_SCAN gave it (bool array), None where the
        table was made without it (:attr:`zero` may then come from PFNs)."""
        return self._zero

    @functools.cached_property
    def zero(self) -> np.ndarray | None:
        """Present pages that are the shared zero page or a frame of the huge zero page
        (bool array); None where this reader cannot tell (no PFNs and no PAGEMAP_SCAN)."""
        if self._zero is not None:
            return self._zero
        if self.pfn_visible and self._zero_pfns:
            return self.present & zero_pfn_mask(self._frame, self._zero_pfns)
        return None

    @functools.cached_property
    def resident(self) -> np.ndarray:
        """Present pages that hold memory of their own (bool array): not the zero page
        (where the zero page cannot be told apart, every present page)."""
        return self.present if self.zero is None else self.present & ~self.zero

    def flag(self, name: str) -> np.ndarray:
        """The boolean column called ``name`` (``present``, ``swapped`` ...).

        Raises ValueError when the column is None (``zero``/``huge`` where unknown)
        and AttributeError when there is no such column."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"{name} is not known for this reader and kernel")
        return value


def zero_pfn_mask(frame: np.ndarray, zero_pfns: frozenset[int]) -> np.ndarray:
    """True where ``frame`` is a zero-page PFN (:func:`pagewalk.core.states.zero_by_pfn`;
    the set holds the zero page and the 512 frames of the huge zero page, so it is
    tested as ranges, not with isin)."""
    return zero_by_pfn(np.ones(len(frame), dtype=bool), frame, _pfn_ranges(zero_pfns))


@functools.lru_cache(maxsize=4)
def _pfn_ranges(pfns: frozenset[int]) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` ranges of consecutive PFNs."""
    return runs_of(sorted(pfns), 1)
