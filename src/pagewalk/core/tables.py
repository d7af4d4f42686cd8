"""Array builders behind :class:`~pagewalk.core.process.Process`: resident tables
from what :mod:`pagewalk.core.reading` read, their kpageflags column, their rows of
shared memory in swap, and which rows smaps counts in ``Rss``.

numpy is imported here at the top, once: :mod:`pagewalk.core.process` (on the
``v2p`` path) imports this module only where it builds a table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..kernel import probes
from ..kernel.maps import Mapping, is_hugetlb, mapping_index
from ..kernel.pagemap import PAGE_SHIFT, PAGE_SIZE, PM_PFRAME_MASK
from ..runs import consecutive_runs, ramps
from .pagetable import PageTable
from .reading import ResidentRead, clip_runs
from .states import rss_page_mask

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..kernel.kpage import KpageFile
    from ..kernel.shmem import ShmemSwapResult

__all__ = ["resident_pages", "fill_kpageflags", "shmem_rows", "add_shmem_rows", "rss_rows"]


def resident_pages(resident: ResidentRead, mappings: Sequence[Mapping], *, pfn_visible: bool) -> PageTable:
    """The populated pages ``resident`` read, those inside ``mappings`` only, as one
    table in address order (``vaddr`` says where each row is)."""
    raw = np.frombuffer(resident.entries, dtype=np.uint64)
    lo, hi = np.array(resident.lo, dtype=np.int64), np.array(resident.hi, dtype=np.int64)
    zero, huge = np.array(resident.zero, dtype=bool), np.array(resident.huge, dtype=bool)
    # The walk covers the gaps between the mappings too: a mapping made there
    # during the walk is not among them, and its pages are no rows.
    lo, hi, run = clip_runs(lo, hi, mappings, resident.base)
    if run is not None:
        zero, huge = zero[run], huge[run]
    lengths = hi - lo
    if run is not None or len(resident.spans) != len(lo):  # runs merged into spans: pick the runs out
        span_lo = np.array([a for a, _ in resident.spans], dtype=np.int64)
        span_at = np.concatenate(([0], np.cumsum([b - a for a, b in resident.spans]))).astype(np.int64)
        span = np.searchsorted(span_lo, lo, side="right") - 1  # the span of each run
        raw = raw[ramps(span_at[span] + lo - span_lo[span], lengths)]
    table = PageTable(resident.base, raw, pfn_visible=pfn_visible, zero=np.repeat(zero, lengths),
                      huge=np.repeat(huge, lengths), zero_pfns=probes.zero_pfns(),
                      runs=((lo * PAGE_SIZE + resident.base).astype(np.uint64), lengths))
    # A page unmapped (or zapped) between the walk and the read of its entry reads
    # empty: it is no longer populated, and an empty row would read as shared
    # memory in swap (mm/shmem.c).
    populated = table.present | table.swap_entry
    return table if populated.all() else table.take(np.flatnonzero(populated))


def fill_kpageflags(table: PageTable, kpageflags: KpageFile) -> None:
    """Set ``table.kpageflags``: the ``/proc/kpageflags`` word of each present
    page's frame (u64), 0 for other rows.  PFNs must be visible."""
    present = table.present
    if present.all():  # usual: no index arrays of a million entries
        frames = table.raw & np.uint64(PM_PFRAME_MASK)
        table.kpageflags = kpageflags.read(frames, out=frames)
    else:
        table.kpageflags = np.zeros(len(table), dtype=np.uint64)
        table.kpageflags[present] = kpageflags.read(table.raw[present] & np.uint64(PM_PFRAME_MASK))


def rss_rows(pid: int, table: PageTable, mappings: Sequence[Mapping], map_index: np.ndarray | None = None
             ) -> np.ndarray:
    """Which rows of ``table`` (a resident table of ``mappings`` of process ``pid``)
    smaps counts in ``Rss``: :func:`pagewalk.core.states.rss_pages`, page by page
    (present, not the zero page, not in a hugetlb mapping).  ``map_index``: each
    row's mapping, if the caller has it.  Returns a bool array, one a row."""
    hugetlb = np.zeros(len(table), dtype=bool)
    if table.huge is not None and table.huge.any():
        index = mapping_index(mappings, table.vaddr) if map_index is None else map_index
        for i in np.unique(index[table.huge]).tolist():
            if is_hugetlb(pid, mappings[i]):
                hugetlb |= index == i
    return rss_page_mask(table.resident, hugetlb)


def shmem_rows(table: PageTable, found: ShmemSwapResult) -> tuple[dict, list[np.ndarray]]:
    """The pages of ``found`` (:meth:`Process.shmem_swap`, exact) that ``table`` (a
    resident table) has no row for: a page with an entry of its own (copied on
    write in a private mapping; a marker) is not the object's page in swap for
    this process.  Returns the records cut to those pages, and their virtual
    page numbers (int64 arrays) per record."""
    records, added = dict(found), []
    have = table.vaddr
    for i, record in found.items():
        if not record or not record.runs:
            continue
        vpn = ramps(np.array([a for a, _ in record.runs], dtype=np.int64),
                    np.array([b - a for a, b in record.runs], dtype=np.int64))
        if len(have):
            vaddr = vpn.astype(np.uint64) << np.uint64(PAGE_SHIFT)
            at = np.minimum(np.searchsorted(have, vaddr), len(have) - 1)
            new = have[at] != vaddr
            if not new.all():
                vpn = vpn[new]
                records[i] = record._replace(runs=consecutive_runs(vpn), pages=len(vpn))
        added.append(vpn)
    return records, added


def add_shmem_rows(table: PageTable, found: ShmemSwapResult, mappings: Sequence[Mapping]) -> PageTable:
    """``table`` with a row for each shared-memory page in swap that ``found`` (the
    lookup for ``mappings``) holds (an empty entry, ``shmem_swapped`` set), in
    address order.  A page of a private mapping that has an entry of its own
    (copied on write) has its row already and is not in the object's swap for this
    process.  The table keeps the lookup's records (``shmem_records``, cut to the
    rows added), ``shmem_unknown_mappings`` and ``shmem_note``."""
    table.shmem_unknown_mappings = [mappings[i] for i, r in found.items() if r is None]
    table.shmem_note = found.note
    table.shmem_records, added = shmem_rows(table, found)
    if not sum(map(len, added)):
        return table
    vaddr = np.concatenate(added).astype(np.uint64) << np.uint64(PAGE_SHIFT)
    n = len(vaddr)
    extra = PageTable(0, np.zeros(n, dtype=np.uint64), pfn_visible=table.pfn_visible, vaddr=vaddr,
                      zero=None if table.zero_scanned is None else np.zeros(n, dtype=bool),
                      huge=None if table.huge is None else np.zeros(n, dtype=bool),
                      kpageflags=None if table.kpageflags is None else np.zeros(n, dtype=np.uint64),
                      soft_dirty_known=table.soft_dirty_known)
    extra.shmem_swapped = np.ones(n, dtype=bool)
    joined = PageTable.concat([(table, None), (extra, None)])
    merged = joined.take(np.argsort(joined.vaddr, kind="stable"))
    merged.shmem_unknown_mappings, merged.shmem_note = table.shmem_unknown_mappings, table.shmem_note
    merged.shmem_records = table.shmem_records
    return merged
