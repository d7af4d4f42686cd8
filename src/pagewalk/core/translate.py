"""Virtual-to-physical translation of single addresses, without numpy.

``pagewalk v2p`` of one address must start as fast as ``python3 -c pass``
allows, so this module decodes entries with plain integer arithmetic and reads
only the pages asked for: addresses are sorted and neighbouring pages are read
with one ``pread`` per group.
"""

from __future__ import annotations

import bisect
from collections import namedtuple
from collections.abc import Iterable, Sequence

from ..kernel.maps import Mapping
from ..kernel.pagemap import (PAGE_SHIFT, PAGE_SIZE, PM_FILE, PM_MMAP_EXCLUSIVE, PM_PFRAME_MASK, PM_PRESENT,
                              PM_SOFT_DIRTY, PM_SWAP, PM_UFFD_WP, SWAP_TYPE_BITS, SWAP_TYPE_MASK, PagemapFile)
from ..kernel.probes import soft_dirty_supported
from ..runs import runs_of
from .states import decode_swap, empty_entry

__all__ = ["Translation", "find_mapping", "read_entries", "translate"]

# Pages closer than this share one read (8 bytes an entry: 4 KiB of gap at most).
_GAP_PAGES = 512


class Translation(namedtuple("Translation", "vaddr mapping entry pfn_visible zero shmem_swapped",
                             defaults=(False, False))):
    """What the page table says about one virtual address.

    ``entry`` is the raw pagemap entry (None when the address is in no mapping
    or pagemap has no entry for it, as for ``[vsyscall]``).  ``pfn``, ``paddr``,
    ``swap_type`` and ``swap_offset`` are None where they do not apply or are
    hidden from this reader; ``zero`` is None when it cannot be told;
    ``shmem_swapped`` says a page with an empty entry is shared memory in swap
    (mm/shmem.c; None where this reader cannot look it up).
    Fields: ``vaddr``, ``mapping`` (a :class:`Mapping` or None), ``entry``,
    ``pfn_visible``, ``zero``, ``shmem_swapped``.
    """

    __slots__ = ()

    @property
    def mapped(self) -> bool:
        """Whether ``vaddr`` lies in a mapping of ``/proc/PID/maps``."""
        return self.mapping is not None

    def _has(self, bit: int) -> bool:
        return bool(self.entry is not None and self.entry & bit)

    @property
    def present(self) -> bool:
        """Whether the page is in memory: pagemap bit 63 (fs/proc/task_mmu.c); includes the zero page."""
        return self._has(PM_PRESENT)

    @property
    def file(self) -> bool:
        """Pagemap bit 61: a file page or shared anonymous (shmem) page (fs/proc/task_mmu.c)."""
        return self._has(PM_FILE)

    @property
    def exclusive(self) -> bool:
        """Pagemap bit 56: the page is mapped by this process only (its mapcount is 1;
        fs/proc/task_mmu.c).  False when not present."""
        return self._has(PM_MMAP_EXCLUSIVE)

    @property
    def soft_dirty(self) -> bool | None:
        """Pagemap bit 55: written since the soft-dirty bits were cleared (``clear_refs`` 4;
        fs/proc/task_mmu.c).  None on a kernel without soft-dirty bits (bit 55 is then always 0)."""
        return self._has(PM_SOFT_DIRTY) if soft_dirty_supported() else None

    @property
    def uffd_wp(self) -> bool:
        """Pagemap bit 57: userfaultfd write-protected, present or as a marker (fs/proc/task_mmu.c)."""
        return self._has(PM_UFFD_WP)

    @property
    def guard(self) -> bool:
        """Whether the entry is a guard-region marker (MADV_GUARD_INSTALL, mm/madvise.c):
        pagemap bit 58 since 6.15, before that a type-31 PTE marker (include/linux/swapops.h)."""
        return self.entry is not None and decode_swap(self.entry, self.pfn_visible).guard

    @property
    def swapped(self) -> bool | None:
        """In swap: a real swap entry, or shared memory in swap; None where this
        reader cannot tell (swap from a uffd-wp marker without PFNs, see
        :func:`pagewalk.core.states.swap_classes`; shared-memory swap it cannot look up)."""
        if self.entry is None:
            return False
        if self.shmem_swapped is not False:
            return self.shmem_swapped
        swapped, _, ambiguous = decode_swap(self.entry, self.pfn_visible)
        return None if ambiguous else swapped

    @property
    def pfn(self) -> int | None:
        """The page frame number (a page index, not bytes); None when not present or
        when PFNs are hidden from this reader (no CAP_SYS_ADMIN)."""
        if not self.present or not self.pfn_visible:
            return None
        return self.entry & PM_PFRAME_MASK  # type: ignore[operator]

    @property
    def paddr(self) -> int | None:
        """The physical address of ``vaddr`` in bytes (``pfn * PAGE_SIZE`` plus the offset
        in the page); None where :attr:`pfn` is None."""
        pfn = self.pfn
        return None if pfn is None else pfn * PAGE_SIZE + self.vaddr % PAGE_SIZE

    @property
    def swap_type(self) -> int | None:
        """The swap entry's type (bits 0-4; the swap area index, or 31 for a PTE marker);
        None when the entry is no swap entry or PFNs are hidden from this reader."""
        if not self._has(PM_SWAP) or not self.pfn_visible:
            return None
        return self.entry & SWAP_TYPE_MASK  # type: ignore[operator]

    @property
    def swap_offset(self) -> int | None:
        """The swap entry's offset (bits 5-54; in pages within the swap area); None when
        the entry is no swap entry or PFNs are hidden from this reader."""
        if not self._has(PM_SWAP) or not self.pfn_visible:
            return None
        return (self.entry & PM_PFRAME_MASK) >> SWAP_TYPE_BITS  # type: ignore[operator]

    @property
    def state(self) -> str:
        """The page's state in words (one line, as ``pagewalk v2p`` prints it)."""
        if self.mapping is None:
            return "not mapped"
        if self.entry is None:
            return "no page table entry (above the end of user space)"
        if self.present:
            if self.zero:
                return "present (shared zero page)"
            if self.zero is None and not self.file:
                return ("present (anonymous, or the shared zero page: telling them apart needs CAP_SYS_ADMIN "
                        "or PAGEMAP_SCAN)")
            kind = "file or shared memory" if self.file else "anonymous"
            share = "mapped only here" if self.exclusive else "not exclusive"
            return f"present ({kind}, {share})"
        if self.guard:
            return "guard page"
        if self.shmem_swapped:
            return "swapped out (shared memory; its swap entry is the shmem object's, not in this page table)"
        if self.shmem_swapped is None:
            return ("not present (never touched, dropped, or swapped out as shared memory: "
                    "unknown to this reader)")
        if self.swapped:
            if self.swap_type is None:
                return "swapped out"
            return f"swapped out (type {self.swap_type}, offset 0x{self.swap_offset:x})"
        if self._has(PM_SWAP):
            if self.swapped is None:
                return "swapped out, or a uffd-wp marker (telling them apart needs CAP_SYS_ADMIN)"
            if self.uffd_wp:
                return "uffd-wp marker (write-protected, never touched)"
            return f"not present (migration or special entry, type {self.swap_type})"
        return "not present (never touched, or dropped)"

    def as_dict(self) -> dict[str, object]:
        """The JSON object of the CLI contract: every property above by name (addresses
        in bytes, None where unknown), ``mapping`` the mapping's path and ``state``.
        (Each value worked out once: v2p writes millions of these.)"""
        entry, visible = self.entry, self.pfn_visible
        e = 0 if entry is None else entry
        present = bool(e & PM_PRESENT)
        pfn = e & PM_PFRAME_MASK if present and visible else None
        swap_bits = visible and bool(e & PM_SWAP)
        if entry is None:
            swapped = guard = False
        else:
            real_swap, guard, ambiguous = decode_swap(entry, visible)
            if self.shmem_swapped is not False:
                swapped = self.shmem_swapped
            else:
                swapped = None if ambiguous else real_swap
        return {
            "vaddr": self.vaddr,
            "paddr": None if pfn is None else pfn * PAGE_SIZE + self.vaddr % PAGE_SIZE,
            "pfn": pfn,
            "present": present,
            "swapped": swapped,
            "file": bool(e & PM_FILE),
            "exclusive": bool(e & PM_MMAP_EXCLUSIVE),
            "zero": self.zero,
            "guard": guard,
            "uffd_wp": bool(e & PM_UFFD_WP),
            "soft_dirty": bool(e & PM_SOFT_DIRTY) if soft_dirty_supported() else None,
            "swap_type": e & SWAP_TYPE_MASK if swap_bits else None,
            "swap_offset": (e & PM_PFRAME_MASK) >> SWAP_TYPE_BITS if swap_bits else None,
            "shmem_swapped": self.shmem_swapped,
            "mapped": self.mapping is not None,  # (mapping is null for anonymous memory and outside mappings alike)
            "mapping": (self.mapping.text_path or None) if self.mapping else None,
            "state": self.state,
        }


def find_mapping(mappings: Sequence[Mapping], vaddr: int, starts: Sequence[int] | None = None) -> Mapping | None:
    """The mapping containing ``vaddr`` (mappings sorted by start, as maps lists them)."""
    starts = starts if starts is not None else [m.start for m in mappings]
    i = bisect.bisect_right(starts, vaddr) - 1
    if i >= 0 and mappings[i].contains(vaddr):
        return mappings[i]
    return None


def read_entries(pagemap: PagemapFile, vpns: Iterable[int]) -> dict[int, int | None]:
    """Entries of the given virtual page numbers, reading neighbours together.
    A page above the end of user space maps to None."""
    result: dict[int, int | None] = {}
    ordered = sorted(set(vpns))
    for first, last in runs_of(ordered, _GAP_PAGES):
        values = pagemap.entries(first, last - first + 1)
        for vpn in ordered[bisect.bisect_left(ordered, first) : bisect.bisect_right(ordered, last)]:
            k = vpn - first
            result[vpn] = values[k] if k < len(values) else None
    return result


def translate(pagemap: PagemapFile, mappings: Sequence[Mapping], vaddrs: Sequence[int], *,
              pfn_visible: bool, zero_pages=None, shmem_pages=None) -> list[Translation]:
    """Translate ``vaddrs`` (answers in the same order).  ``zero_pages({vpn: entry})``
    answers, for present pages that are not exclusively mapped (the zero page never
    is), whether each is the zero page (None when unknown); without it, unknown.
    ``shmem_pages({vpn: mapping})`` answers, for pages with an empty entry, whether
    each is shared memory in swap (None when unknown); without it, False."""
    starts = [m.start for m in mappings]
    where = [find_mapping(mappings, v, starts) for v in vaddrs]
    entries = read_entries(
        pagemap, (v >> PAGE_SHIFT for v, m in zip(vaddrs, where) if m is not None and not m.is_vsyscall)
    )
    candidates = {vpn: e for vpn, e in entries.items()
                  if e is not None and e & PM_PRESENT and not e & PM_MMAP_EXCLUSIVE}
    zero = zero_pages(candidates) if candidates and zero_pages is not None else {}
    empty = {v >> PAGE_SHIFT: m for v, m in zip(vaddrs, where)
             if m is not None and entries.get(v >> PAGE_SHIFT) is not None and empty_entry(entries[v >> PAGE_SHIFT])}
    shmem = shmem_pages(empty) if empty and shmem_pages is not None else {}
    out = []
    for vaddr, mapping in zip(vaddrs, where):
        vpn = vaddr >> PAGE_SHIFT
        entry = entries.get(vpn) if mapping is not None else None
        is_zero = zero.get(vpn) if vpn in candidates else False
        out.append(Translation(vaddr, mapping, entry, pfn_visible, is_zero if mapping is not None else False,
                               shmem.get(vpn, False) if mapping is not None else False))
    return out
