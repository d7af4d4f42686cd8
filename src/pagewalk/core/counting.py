"""Counting pagemap entries per mapping, as ``pagewalk maps`` shows them, with no numpy.

The per-entry loop is C (:func:`pagewalk.native.count_entries`); what each entry
counts as is decided here, once, by the rules of :mod:`pagewalk.core.states`,
evaluated for every value of an entry's top bits (55..63) and every kind of swap
entry, and handed to the loop as lookup tables.  So ``maps`` starts without numpy,
and the counts equal those of the numpy columns of
:class:`~pagewalk.core.pagetable.PageTable` (tests/test_native.py proves it).
"""

from __future__ import annotations

import functools
from array import array
from collections import namedtuple

from .. import native
from ..kernel.maps import Mapping
from ..kernel.pagemap import (PM_FILE, PM_GUARD_REGION, PM_MMAP_EXCLUSIVE, PM_PRESENT, PM_SOFT_DIRTY, PM_SWAP,
                              PM_UFFD_WP, PTE_MARKER_GUARD, SWAP_TYPE_BITS)
from .states import swap_classes

__all__ = ["COUNT_COLUMNS", "PageCounts", "MappingCounts", "CountsReport", "BatchCounter", "selection_table",
           "swap_kinds"]

COUNT_COLUMNS = ("pages", "present", "file", "exclusive", "soft_dirty", "uffd_wp", "guard", "swapped", "zero",
                 "ambiguous")  # the last: swap entries an unprivileged reader cannot class
TOP_SHIFT = 55  # an entry's bits 55..63 index the selection table


class PageCounts(namedtuple("PageCounts",
                            "pages present zero swapped file exclusive huge guard uffd_wp soft_dirty rss shmem_swapped",
                            defaults=(0,) * 12)):
    """Page counts of a range (a mapping, or a whole process).

    ``swapped`` is what smaps counts as ``Swap``: real swap entries and
    ``shmem_swapped``, shared-memory pages in swap, which have no page table
    entry (:mod:`pagewalk.core.states`); None where this reader cannot tell.

    All counts are in pages except ``rss`` (bytes, as smaps ``Rss`` counts it:
    present pages that are not the zero page and not hugetlb).  ``zero`` and
    ``huge`` are None when this kernel and reader cannot tell.  A named tuple,
    as are the two classes below: no dataclasses (and inspect) import on start-up.
    """

    __slots__ = ()

    def as_dict(self) -> dict[str, int | None]:
        """The counts as a dict from field name to count (pages; ``rss`` in bytes)."""
        return self._asdict()


class MappingCounts(namedtuple("MappingCounts", "mapping counts")):
    """``mapping``, a :class:`Mapping`, and ``counts``, its :class:`PageCounts` (None for
    ``[vsyscall]``, which has no entries)."""

    __slots__ = ()
    mapping: Mapping
    counts: PageCounts | None


class CountsReport(namedtuple("CountsReport", "pid pfn_visible mappings totals changed notes", defaults=((),))):
    """Per-mapping counts of a whole process, with what the reader could know:
    ``pid``; ``pfn_visible``, whether this reader saw PFNs (CAP_SYS_ADMIN);
    ``mappings``, a :class:`MappingCounts` per mapping in address order; ``totals``,
    the :class:`PageCounts` of all of them (pages; ``rss`` in bytes); ``changed`` lists
    the mappings that changed while they were counted; ``notes`` say what could not be
    known and why (one line each)."""

    __slots__ = ()
    pid: int
    pfn_visible: bool
    mappings: list[MappingCounts]
    totals: PageCounts
    changed: list[Mapping]


@functools.lru_cache(maxsize=2)
def selection_table(pfn_visible: bool) -> bytes:
    """What an entry adds to the columns present, file, exclusive, soft_dirty,
    uffd_wp, guard, swapped and ambiguous (COUNT_COLUMNS[1:8] and the last), for each
    of the 512 values of its bits 55..63: 512 x 8 int64.  With PFNs visible a swap
    entry without the guard-region bit is classed by its type (:func:`swap_kinds`),
    so it adds nothing to swapped or guard here."""
    # the swap classes depend on three of the bits: evaluated once for each of their 8 values
    classes = {}
    for bits in range(8):
        swap, guard_bit, uffd_wp = bool(bits & 1), bool(bits & 2), bool(bits & 4)
        if pfn_visible and swap and not guard_bit:
            classes[bits] = (False, False, False)
        else:  # no swap bit, or the guard bit decides: the type cannot matter, and both
            # readers class such an entry alike (asked as the unprivileged one, no
            # MAX_SWAPFILES is read)
            classes[bits] = tuple(bool(c) for c in swap_classes(swap, guard_bit, uffd_wp, 0, 0, False))
    table = array("q")
    for top in range(512):
        entry = top << TOP_SHIFT
        swapped, guard, ambiguous = classes[bool(entry & PM_SWAP) | bool(entry & PM_GUARD_REGION) << 1
                                            | bool(entry & PM_UFFD_WP) << 2]
        table.extend((bool(entry & PM_PRESENT), bool(entry & PM_FILE), bool(entry & PM_MMAP_EXCLUSIVE),
                      bool(entry & PM_SOFT_DIRTY), bool(entry & PM_UFFD_WP), guard, swapped, ambiguous))
    return table.tobytes()


@functools.lru_cache(maxsize=1)
def swap_kinds() -> bytes:
    """With PFNs visible, what a swap entry without the guard-region bit is, by its
    swap type * 2 + whether its offset has the guard-marker bit: bit 0 swapped, bit 1
    guard (:func:`~pagewalk.core.states.swap_classes`).  64 bytes; asks the kernel's
    MAX_SWAPFILES, so it is made only where a swap entry turns up."""
    kinds = bytearray()
    for key in range(64):
        swap_type, marked = key >> 1, key & 1
        c = swap_classes(True, False, False, swap_type, PTE_MARKER_GUARD if marked else 0, True)
        kinds.append(bool(c.swapped) | bool(c.guard) << 1)
    return bytes(kinds)


class BatchCounter:
    """Counts the entries of many mappings, batched into one reusable buffer.

    Callers :meth:`reserve` room, read pagemap entries straight into the returned
    buffer, :meth:`commit` how many arrived for which mapping, and finally
    :meth:`finish`, which returns the columns of :data:`COUNT_COLUMNS`, a list of
    one count per mapping each (``pages`` there is the entries read).  Zero pages are
    counted from their PFNs when ``zero_pfn_ranges`` (inclusive PFN ranges) are
    given (callers with PAGEMAP_SCAN pass none: it says).
    """

    def __init__(self, n_mappings: int, capacity: int, *, pfn_visible: bool,
                 zero_pfn_ranges: list[tuple[int, int]]) -> None:
        self.pfn_visible = pfn_visible
        self.zero_pfn_ranges = zero_pfn_ranges if pfn_visible else []
        self.capacity = capacity
        self.buf = bytearray(capacity * 8)
        self._bytes = memoryview(self.buf)
        self._fill = 0
        self._segments: list[int] = []  # mapping index of each segment in the batch
        self._lengths: list[int] = []
        self._sel = selection_table(pfn_visible)
        self._kinds: bytes | None = None
        self.table = array("q", bytes(8 * n_mappings * len(COUNT_COLUMNS)))

    def reserve(self, want: int) -> memoryview:
        """A byte view of room for up to ``want`` entries (flushing first if full)."""
        if self._fill == self.capacity:
            self.flush()
        n = min(want, self.capacity - self._fill)
        return self._bytes[self._fill * 8 : (self._fill + n) * 8]

    def commit(self, mapping_index: int, entries: int) -> None:
        """Record that ``entries`` entries were read into the last :meth:`reserve`d room,
        for the mapping at ``mapping_index``."""
        if entries <= 0:
            return
        if self._segments and self._segments[-1] == mapping_index:
            self._lengths[-1] += entries
        else:
            self._segments.append(mapping_index)
            self._lengths.append(entries)
        self._fill += entries

    def commit_many(self, mapping_indices: list[int], entries: list[int]) -> None:
        """:meth:`commit` of consecutive shares of the last :meth:`reserve`d room at once:
        ``entries[k]`` entries for the mapping ``mapping_indices[k]``."""
        self._segments += mapping_indices
        self._lengths += entries
        self._fill += sum(entries)

    def flush(self) -> None:
        """Count the entries buffered so far into the table and empty the buffer."""
        n, segments, lengths = self._fill, self._segments, self._lengths
        self._fill, self._segments, self._lengths = 0, [], []
        if n:
            self.count(self._bytes[: n * 8], segments, lengths)

    def count(self, raw, segments: list[int], lengths: list[int]) -> None:
        """Count ``raw`` (a buffer of u64 entries), whose consecutive ``lengths``
        entries belong to the mappings ``segments``, into the table."""
        if self.pfn_visible and self._kinds is None and native.find_entry(raw, PM_SWAP | PM_GUARD_REGION, PM_SWAP) >= 0:
            self._kinds = swap_kinds()
        native.count_entries(self.table, raw, segments, lengths, self._sel, self._kinds, SWAP_TYPE_BITS,
                             PTE_MARKER_GUARD, self.zero_pfn_ranges)

    def finish(self) -> dict[str, list[int]]:
        """The columns of :data:`COUNT_COLUMNS`, each a list of a count per mapping."""
        self.flush()
        k = len(COUNT_COLUMNS)
        return {name: self.table[c::k].tolist() for c, name in enumerate(COUNT_COLUMNS)}
