"""Pagemap entries decoded with numpy: per-page arrays and per-range counts.

Everything here is vectorised: no Python loop runs per page.  Meanings follow
the kernel's ``pte_to_pagemap_entry`` (see :mod:`pagewalk.pagemap`):

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
from dataclasses import dataclass, field, fields

import numpy as np

from .maps import Mapping
from .pagemap import (
    FIRST_SPECIAL_SWAP_TYPE,
    PAGE_SIZE,
    PM_FILE,
    PM_GUARD_REGION,
    PM_MMAP_EXCLUSIVE,
    PM_PFRAME_MASK,
    PM_PRESENT,
    PM_SOFT_DIRTY,
    PM_SWAP,
    PM_UFFD_WP,
    PTE_MARKER_GUARD,
    SWAP_TYPE_BITS,
    SWAP_TYPE_MASK,
    SWP_PTE_MARKER,
)

U64 = np.uint64


def _bit(raw: np.ndarray, mask: int) -> np.ndarray:
    return (raw & U64(mask)) != 0


class PageTable:
    """Decoded pagemap entries of consecutive virtual pages from ``start``.

    ``raw`` holds the u64 entries exactly as the kernel gave them; the other
    attributes are computed from it on first use.  ``zero`` and ``huge`` may be
    given by the caller (from PAGEMAP_SCAN); otherwise ``zero`` is derived from
    the known zero-page PFNs when PFNs are visible, and both are None when they
    cannot be known.
    """

    def __init__(self, start: int, raw: np.ndarray, *, pfn_visible: bool,
                 zero: np.ndarray | None = None, huge: np.ndarray | None = None,
                 zero_pfns: frozenset[int] = frozenset(), page_size: int = PAGE_SIZE) -> None:
        self.start = start
        self.raw = raw
        self.pfn_visible = pfn_visible
        self.page_size = page_size
        self._zero = zero
        self._huge = huge
        self._zero_pfns = zero_pfns

    def __len__(self) -> int:
        return len(self.raw)

    @property
    def end(self) -> int:
        return self.start + len(self.raw) * self.page_size

    @functools.cached_property
    def vaddr(self) -> np.ndarray:
        return np.arange(len(self.raw), dtype=U64) * U64(self.page_size) + U64(self.start)

    @functools.cached_property
    def present(self) -> np.ndarray:
        return _bit(self.raw, PM_PRESENT)

    @functools.cached_property
    def swap_entry(self) -> np.ndarray:
        """Bit 62: any non-present, non-empty entry (swap, migration or marker)."""
        return _bit(self.raw, PM_SWAP)

    @functools.cached_property
    def file(self) -> np.ndarray:
        return _bit(self.raw, PM_FILE)

    @functools.cached_property
    def exclusive(self) -> np.ndarray:
        return _bit(self.raw, PM_MMAP_EXCLUSIVE)

    @functools.cached_property
    def soft_dirty(self) -> np.ndarray:
        return _bit(self.raw, PM_SOFT_DIRTY)

    @functools.cached_property
    def uffd_wp(self) -> np.ndarray:
        return _bit(self.raw, PM_UFFD_WP)

    @functools.cached_property
    def _frame(self) -> np.ndarray:
        return (self.raw & U64(PM_PFRAME_MASK)).view(np.int64)

    @functools.cached_property
    def guard(self) -> np.ndarray:
        g = _bit(self.raw, PM_GUARD_REGION)
        if self.pfn_visible:  # kernels before 6.15: marker type 31 with the guard offset bit
            marker = self.swap_entry & ((self._frame & SWAP_TYPE_MASK) == SWP_PTE_MARKER)
            g |= marker & (((self._frame >> SWAP_TYPE_BITS) & PTE_MARKER_GUARD) != 0)
        return g

    @functools.cached_property
    def swapped(self) -> np.ndarray:
        """Real swap entries (see :func:`pagewalk.pagemap.is_swapped` for the unprivileged rule)."""
        s = self.swap_entry & ~self.guard
        if self.pfn_visible:
            return s & ((self._frame & SWAP_TYPE_MASK) < FIRST_SPECIAL_SWAP_TYPE)
        return s & ~self.uffd_wp

    @functools.cached_property
    def pfn(self) -> np.ndarray:
        """PFN of present pages; -1 where not present or hidden from this reader."""
        if not self.pfn_visible:
            return np.full(len(self.raw), -1, dtype=np.int64)
        return np.where(self.present, self._frame, -1)

    @functools.cached_property
    def swap_type(self) -> np.ndarray:
        if not self.pfn_visible:
            return np.full(len(self.raw), -1, dtype=np.int64)
        return np.where(self.swap_entry, self._frame & SWAP_TYPE_MASK, -1)

    @functools.cached_property
    def swap_offset(self) -> np.ndarray:
        if not self.pfn_visible:
            return np.full(len(self.raw), -1, dtype=np.int64)
        return np.where(self.swap_entry, self._frame >> SWAP_TYPE_BITS, -1)

    @property
    def zero(self) -> np.ndarray | None:
        if self._zero is None and self.pfn_visible and self._zero_pfns:
            self._zero = self.present & zero_pfn_mask(self._frame, self._zero_pfns)
        return self._zero

    @property
    def huge(self) -> np.ndarray | None:
        return self._huge

    def flag(self, name: str) -> np.ndarray:
        """A boolean column by name (``present``, ``~swapped`` ...); None-valued columns
        (``zero``/``huge`` where unknown) raise ValueError."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"{name} is not known for this reader and kernel")
        return value


def zero_pfn_mask(frame: np.ndarray, zero_pfns: frozenset[int]) -> np.ndarray:
    """True where ``frame`` is a zero-page PFN.  The set holds the zero page and the
    512 frames of the huge zero page, so it is tested as ranges, not with isin."""
    out = np.zeros(len(frame), dtype=bool)
    for lo, hi in _runs(sorted(zero_pfns)):
        out |= (frame >= lo) & (frame < hi)
    return out


def _runs(values: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and runs[-1][1] == v:
            runs[-1] = (runs[-1][0], v + 1)
        else:
            runs.append((v, v + 1))
    return runs


@dataclass(slots=True)
class PageCounts:
    """Page counts of a range (a mapping, or a whole process).

    All counts are in pages except ``rss`` (bytes, as smaps ``Rss`` counts it:
    present pages that are not the zero page and not hugetlb).  ``zero`` and
    ``huge`` are None when this kernel and reader cannot tell.
    """

    pages: int = 0
    present: int = 0
    zero: int | None = 0
    swapped: int = 0
    file: int = 0
    exclusive: int = 0
    huge: int | None = 0
    guard: int = 0
    uffd_wp: int = 0
    soft_dirty: int = 0
    rss: int = 0

    def __add__(self, other: PageCounts) -> PageCounts:
        out = PageCounts()
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            setattr(out, f.name, None if a is None or b is None else a + b)
        return out

    def as_dict(self) -> dict[str, int | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class MappingCounts:
    """One mapping and its page counts (None for ``[vsyscall]``, which has no entries)."""

    mapping: Mapping
    counts: PageCounts | None


@dataclass
class CountsReport:
    """Per-mapping counts of a whole process, with what the reader could know."""

    pid: int
    pfn_visible: bool
    mappings: list[MappingCounts]
    totals: PageCounts
    changed: list[Mapping] = field(default_factory=list)  # mappings that changed during the scan


# Counting by histogram: bits 55..63 of an entry form a 9-bit number, so one
# bincount over the chunk gives every flag count at once.
_TOP = np.arange(512)
_SEL = {
    "present": (_TOP & (PM_PRESENT >> 55)) != 0,
    "file": (_TOP & (PM_FILE >> 55)) != 0,
    "exclusive": (_TOP & (PM_MMAP_EXCLUSIVE >> 55)) != 0,
    "soft_dirty": (_TOP & (PM_SOFT_DIRTY >> 55)) != 0,
    "uffd_wp": (_TOP & (PM_UFFD_WP >> 55)) != 0,
    "guard_bit": (_TOP & (PM_GUARD_REGION >> 55)) != 0,
    "swap_not_guard": (_TOP & ((PM_SWAP | PM_GUARD_REGION) >> 55)) == (PM_SWAP >> 55),
    "swap_not_guard_not_wp": (_TOP & ((PM_SWAP | PM_GUARD_REGION | PM_UFFD_WP) >> 55)) == (PM_SWAP >> 55),
}


class ChunkCounter:
    """Accumulates :class:`PageCounts` over chunks of raw entries, reusing its buffers."""

    def __init__(self, capacity: int, *, pfn_visible: bool, zero_pfns: frozenset[int]) -> None:
        self.pfn_visible = pfn_visible
        self.zero_pfns = zero_pfns
        self._top = np.empty(capacity, dtype=U64)

    def count(self, raw: np.ndarray, counts: PageCounts, *, zero_known: bool) -> None:
        """Add the counts of ``raw`` to ``counts``.  ``zero_known`` says the caller
        counts zero pages itself (from PAGEMAP_SCAN); otherwise they are counted
        here from the zero-page PFNs when those are visible."""
        n = len(raw)
        counts.pages += n
        if not raw.any():  # untouched ranges: the common case in big reservations
            return
        top = np.right_shift(raw, U64(55), out=self._top[:n])
        hist = np.bincount(top.view(np.int64), minlength=512)
        present = int(hist[_SEL["present"]].sum())
        counts.present += present
        counts.file += int(hist[_SEL["file"]].sum())
        counts.exclusive += int(hist[_SEL["exclusive"]].sum())
        counts.soft_dirty += int(hist[_SEL["soft_dirty"]].sum())
        counts.uffd_wp += int(hist[_SEL["uffd_wp"]].sum())
        guard = int(hist[_SEL["guard_bit"]].sum())
        swap_candidates = int(hist[_SEL["swap_not_guard"]].sum())
        if not self.pfn_visible:
            counts.swapped += int(hist[_SEL["swap_not_guard_not_wp"]].sum())
        elif swap_candidates:
            sel = raw[(top & U64((PM_SWAP | PM_GUARD_REGION) >> 55)) == U64(PM_SWAP >> 55)]
            swap_type = sel & U64(SWAP_TYPE_MASK)
            counts.swapped += int(np.count_nonzero(swap_type < U64(FIRST_SPECIAL_SWAP_TYPE)))
            marker = sel[swap_type == U64(SWP_PTE_MARKER)]
            guard += int(np.count_nonzero((marker >> U64(SWAP_TYPE_BITS)) & U64(PTE_MARKER_GUARD)))
        counts.guard += guard
        if not zero_known:
            if self.pfn_visible and self.zero_pfns and present:
                frame = (raw & U64(PM_PFRAME_MASK)).view(np.int64)
                zero = int(np.count_nonzero(_bit(raw, PM_PRESENT) & zero_pfn_mask(frame, self.zero_pfns)))
                counts.zero = None if counts.zero is None else counts.zero + zero
            elif present:
                counts.zero = None
