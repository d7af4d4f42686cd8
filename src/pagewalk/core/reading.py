"""The read planners behind :class:`~pagewalk.core.process.Process`: which pagemap
entries to read (fs/proc/task_mmu.c: ``pagemap_read``, ``do_pagemap_scan``), in what
pieces, from how many threads.

Nothing here imports numpy at import time: :class:`ResidentRead` reads while numpy
imports (``snapshot``), and :mod:`pagewalk.core.process` (on the ``v2p`` path)
imports this module.  The functions that build arrays import numpy when called.
"""

from __future__ import annotations

import bisect
import sys
from collections import deque, namedtuple
from collections.abc import Iterator, Sequence

from ..kernel import probes
from ..kernel.maps import Mapping
from ..kernel.pagemap import PAGE_SHIFT, PAGE_SIZE, PM_PRESENT, PM_SWAP, PagemapFile
from ..kernel.procfs import read_statm
from ..kernel.smaps import read_smaps
from ..runs import merge_runs, pages_within, ramps
from .states import rss_pages_by_smaps

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    import numpy as np

    from ..kernel.scan import Scanner
    from .counting import BatchCounter
    from .pagetable import PageTable

__all__ = ["ResidentRead", "read_resident", "ScanLayout", "count_pieces", "read_populated", "scan_runs",
           "clip_runs", "zero_from_smaps", "mostly_unpopulated"]

PAGES_PER_READ = 1 << 16  # pagemap entries (pages) per read and per reused buffer: 512 KiB of entries
USER_END_4LEVEL = 0x7FFFFFFFF000  # bytes: PAGEMAP_SCAN refuses ranges past user space (EFAULT)
HOLE_READ_PAGES = 256  # pages: holes this small between pieces are read across (2 KiB of entries)
PARALLEL_MIN_PAGES = 1 << 18  # pages: from this many entries on, reads go to a thread per CPU
DIRECT_READ_MAX_RUNS = 64  # runs: a large process with at most this many populated runs is read run by run
SPARSE_MIN_PAGES = 512  # pages: page_table(sparse=True) of fewer pages reads every entry, no walk
WALK_ATTEMPTS = 3  # walks: resident_table() walks again while mappings change under it, this many at most

ReadTask = namedtuple("ReadTask", "first entries segments")
ReadTask.__doc__ = """One read of ``entries`` entries from page ``first``; ``segments``: ``(row, entries)``
pairs, in order, saying which row counts which share of it."""
ScanRuns = namedtuple("ScanRuns", "lo hi zero huge")
ScanRuns.__doc__ = """The runs one PAGEMAP_SCAN walk found: ``[lo, hi)`` page indices (int64 arrays)
from the walk's start, and which runs are the zero page and which huge pages (bool arrays)."""
SmapsCounts = namedtuple("SmapsCounts", "zero rss")
SmapsCounts.__doc__ = """Per mapping, from smaps: zero pages (None: unknown) and Rss pages."""
ClippedRuns = namedtuple("ClippedRuns", "lo hi run")
ClippedRuns.__doc__ = """Runs ``[lo, hi)`` cut to the mappings, and ``run``: the index of the run each
part comes from, or None where no run was cut."""


def read_resident(pagemap: PagemapFile, scanner: Scanner | None, mappings: Sequence[Mapping], *,
                  threads: bool = True) -> ResidentRead | None:
    """The populated pages' raw pagemap entries, as :meth:`Process.resident_table`
    reads them (one PAGEMAP_SCAN walk finds the pages, then only they are read),
    with no numpy: see :class:`ResidentRead`.  Large processes are read from a
    thread per CPU unless ``threads`` is False.  Returns None without PAGEMAP_SCAN
    (``scanner`` None).  Raises :class:`~pagewalk.errors.ProcessGone` if the
    process exits."""
    if scanner is None:
        return None
    resident = ResidentRead(pagemap, scanner, mappings)
    resident.scan()
    if threads and len(resident.entries) >= 8 * PARALLEL_MIN_PAGES:  # 8 bytes an entry
        from ..parallel import in_background, workers

        helpers = [in_background(resident.read_pending) for _ in range(workers() - 1)]
        try:
            resident.read_pending()
        finally:  # no helper is left reading after an error here
            for helper in helpers:
                helper.result()
    else:
        resident.read_pending()
    return resident


class ResidentRead:
    """The populated pages of a process and their raw pagemap entries, read with no
    numpy, so that the reading can run while numpy imports: :meth:`scan` walks the
    address space once (PAGEMAP_SCAN), then :meth:`read_pending`, from as many
    threads as call it, reads the entries piece by piece.  Afterwards: ``mappings``
    (all of them, as ``/proc/PID/maps`` listed them), the populated runs of pages
    ``[lo, hi)`` counted from address ``base`` (in address order, each the zero page
    or a huge page or neither, as the walk said), and the raw ``entries`` (u64,
    native order) of ``spans``, which cover the runs, laid end to end.
    :meth:`pagewalk.core.process.Process.resident_read` makes one."""

    def __init__(self, pagemap: PagemapFile, scanner: Scanner, mappings: Sequence[Mapping]) -> None:
        self.pagemap, self.scanner = pagemap, scanner
        self.mappings = list(mappings)
        self.base = 0
        self.lo: list[int] = []
        self.hi: list[int] = []
        self.zero: list[bool] = []
        self.huge: list[bool] = []
        self.spans: list[tuple[int, int]] = []
        self.entries = bytearray()
        self._pending: deque[tuple[int, int, int]] = deque()

    def scan(self) -> None:
        """Find the populated runs and queue their reads (PAGEMAP_SCAN needed)."""
        from ..kernel.scan import PAGE_IS_PRESENT, PAGE_IS_SWAPPED, ZERO_HUGE_MASK, huge_page, zero_page

        maps = [m for m in self.mappings if not m.is_vsyscall and not m.scan_skips]
        if not maps:
            return
        base = self.base = min(m.start for m in maps)
        top = min(max(m.end for m in maps), USER_END_4LEVEL)
        starts, ends, cats = self.scanner.region_lists(
            base, top, anyof=PAGE_IS_PRESENT | PAGE_IS_SWAPPED, return_mask=ZERO_HUGE_MASK)
        lo = self.lo = [(a - base) >> PAGE_SHIFT for a in starts]
        hi = self.hi = [(b - base) >> PAGE_SHIFT for b in ends]
        self.zero = [zero_page(c) for c in cats]
        self.huge = [huge_page(c) for c in cats]
        # Runs at most HOLE_READ_PAGES apart are read as one span, and the runs'
        # entries are then picked out of the spans; but a large process of a few runs
        # is read run by run straight into its table (no copy of its entries).
        direct = len(lo) <= DIRECT_READ_MAX_RUNS and sum(hi) - sum(lo) >= PARALLEL_MIN_PAGES
        self.spans = list(zip(lo, hi)) if direct else merge_runs(lo, hi, HOLE_READ_PAGES)
        at = 0
        pieces = []
        for a, b in self.spans:  # large spans in chunks, for threads
            pieces += [(a + i, min(b, a + i + PAGES_PER_READ), at + i) for i in range(0, b - a, PAGES_PER_READ)]
            at += b - a
        self.entries = bytearray(at * 8)
        self._pending.extend(pieces)

    def read_pending(self) -> None:
        """Read the queued pieces, until none is left, in the calling thread (any
        number of threads may call this at once, even while another still scans;
        each piece is read once)."""
        pagemap = self.pagemap
        while True:
            try:
                a, b, at = self._pending.popleft()  # atomic: the pieces are shared
            except IndexError:
                return
            # Only now: scan() sets the buffer and base before it queues any piece
            view = memoryview(self.entries)[at * 8 : (at + b - a) * 8]
            pagemap.read_into(view, (self.base >> PAGE_SHIFT) + a)

    def run_segments(self) -> tuple[list[tuple[int, int]], list[int]]:
        """Where the runs' entries lie in :attr:`entries`: ``(first entry, entries)``
        pairs, the runs cut to the mappings the walk covered (not the entries of the
        holes read across between runs, nor of mappings the walk skips, which a span
        may reach into), and the virtual page number of each one's first page."""
        maps = [m for m in self.mappings if not m.is_vsyscall and not m.scan_skips]
        covers = merge_runs([(m.start - self.base) >> PAGE_SHIFT for m in maps],
                            [(m.end - self.base) >> PAGE_SHIFT for m in maps])
        out: list[tuple[int, int]] = []
        vpns: list[int] = []
        j = k = at = 0  # the first cover not below the run; the span holding it, and where its entries start
        for a, b in zip(self.lo, self.hi):
            while j < len(covers) and covers[j][1] <= a:
                j += 1
            c = j
            while c < len(covers) and covers[c][0] < b:
                first, end = max(a, covers[c][0]), min(b, covers[c][1])
                c += 1
                if end > first:
                    while self.spans[k][1] <= first:
                        at += self.spans[k][1] - self.spans[k][0]
                        k += 1
                    out.append((at + first - self.spans[k][0], end - first))
                    vpns.append((self.base >> PAGE_SHIFT) + first)
        return out, vpns

    def scan_and_read(self) -> ResidentRead:
        """:meth:`scan`, then :meth:`read_pending`; returns this read."""
        self.scan()
        self.read_pending()
        return self


class ScanLayout:
    """Per-mapping results of one PAGEMAP_SCAN walk over ``maps`` (:meth:`walk`):
    ``zero`` and ``huge`` page counts (lists, one a mapping), and (when ``sparse``,
    the walk looked for every populated page) the populated runs to read.  No
    numpy: ``maps`` counts with it."""

    def __init__(self, maps: Sequence[Mapping], base: int, runs: list[tuple[int, int]], zero: list[bool],
                 huge: list[bool], sparse: bool) -> None:
        self.maps, self.base, self.sparse = maps, base, sparse
        bounds = [((m.start - base) >> PAGE_SHIFT, (m.end - base) >> PAGE_SHIFT) for m in maps]
        # A region may straddle adjacent mappings: pages_within cuts it at their bounds.
        self.zero = pages_within([r for r, z in zip(runs, zero) if z], bounds)
        self.huge = pages_within([r for r, h in zip(runs, huge) if h], bounds)
        self._runs = merge_runs([a for a, _ in runs], [b for _, b in runs]) if sparse else []

    @classmethod
    def walk(cls, scanner: Scanner, maps: Sequence[Mapping], sparse: bool) -> ScanLayout:
        """One PAGEMAP_SCAN walk over ``maps`` (not ``[vsyscall]``): for every populated
        page (present, swap entry, marker, soft-dirty) where ``sparse``, else only for
        the zero and huge pages."""
        from ..kernel import scan

        usable = [m for m in maps if not m.is_vsyscall]
        base, top = min(m.start for m in usable), max(m.end for m in usable)
        if sparse:
            anyof = scan.PAGE_IS_PRESENT | scan.PAGE_IS_SWAPPED | scan.PAGE_IS_SOFT_DIRTY
        else:
            anyof = scan.PAGE_IS_PFNZERO | scan.PAGE_IS_HUGE  # only the zero and huge counts
        starts, ends, cats = scanner.region_lists(base, top, anyof=anyof, return_mask=scan.ZERO_HUGE_MASK)
        runs = [((a - base) >> PAGE_SHIFT, (b - base) >> PAGE_SHIFT) for a, b in zip(starts, ends)]
        return cls(maps, base, runs, [scan.zero_page(c) for c in cats], [scan.huge_page(c) for c in cats], sparse)

    def pieces(self) -> Iterator[tuple[int, int, int]]:
        """The pieces to read, in address order: ``(row, first, end)``, pages ``[first, end)``
        (virtual page numbers) counted to row ``row`` (the mapping's index):
        the populated runs of each mapping, or all of it where the walk could not
        tell (no soft-dirty category; :attr:`Mapping.scan_skips` areas)."""
        offset = self.base >> PAGE_SHIFT
        starts = [a + offset for a, _ in self._runs]
        ends = [b + offset for _, b in self._runs]
        for i, m in enumerate(self.maps):
            if m.is_vsyscall:
                continue
            first, last = m.start >> PAGE_SHIFT, m.end >> PAGE_SHIFT
            if not self.sparse or m.scan_skips:
                yield (i, first, last)  # (plain tuples: 10,000 named ones cost 4 ms more)
                continue
            # the runs ending after the mapping starts and starting before it ends
            for k in range(bisect.bisect_right(ends, first), bisect.bisect_left(starts, last)):
                yield (i, max(starts[k], first), min(ends[k], last))


def count_pieces(pagemap: PagemapFile, counter: BatchCounter, pieces: Iterator[tuple[int, int, int]], hole: int) -> None:
    """Read the entries of ``pieces`` (in address order) into ``counter``.  Pieces
    at most :data:`HOLE_READ_PAGES` apart are read as one, the entries between them
    counted to row ``hole``, so 10,000 small mappings cost a few hundred reads, not
    10,000.  From :data:`PARALLEL_MIN_PAGES` entries on, a thread per CPU reads
    while the counter counts.  Raises what :meth:`PagemapFile.read_into` raises."""
    groups = list(_groups(pieces, hole))
    if sum(g[-1][2] - g[0][1] for g in groups) >= PARALLEL_MIN_PAGES:
        from ..parallel import ordered_map, workers

        if workers() > 1:
            def read(task: ReadTask):
                buf = memoryview(bytearray(task.entries * 8))
                return buf[: pagemap.read_into(buf, task.first) * 8], task.segments

            for raw, segments in ordered_map(read, _tasks(groups, PAGES_PER_READ)):
                _count_read(counter, raw, segments)
            return
    for group in groups:
        _count_group(pagemap, counter, group)


def _groups(pieces: Iterator[tuple[int, int, int]], hole: int) -> Iterator[list[tuple[int, int, int]]]:
    """Runs of pieces at most HOLE_READ_PAGES apart, the holes between them as pieces
    of row ``hole``: each run is contiguous and read as one."""
    group: list[tuple[int, int, int]] = []
    last_end = 0
    for piece in pieces:
        first = piece[1]
        if group and not 0 <= first - last_end <= HOLE_READ_PAGES:
            yield group
            group = []
        if group and first > last_end:
            group.append((hole, last_end, first))
        group.append(piece)
        last_end = piece[2]
    if group:
        yield group


def _tasks(groups: list[list[tuple[int, int, int]]], size: int) -> Iterator[ReadTask]:
    """The groups as reads of at most ``size`` entries each."""
    for group in groups:
        vpn, end, k = group[0][1], group[-1][2], 0
        while vpn < end:
            stop = min(end, vpn + size)
            segments = []
            while k < len(group) and group[k][1] < stop:
                i, first, last = group[k]
                segments.append((i, min(last, stop) - max(first, vpn)))
                if last > stop:
                    break  # the rest of this piece comes with the next read
                k += 1
            yield ReadTask(vpn, stop - vpn, segments)
            vpn = stop


def _count_read(counter: BatchCounter, raw: memoryview, segments: list[tuple[int, int]]) -> None:
    """Count one read (bytes of entries); a short one (the end of user space) covers
    only its first entries."""
    left, kept = len(raw) // 8, []
    for i, n in segments:
        if left <= 0:
            break
        kept.append((i, min(n, left)))
        left -= n
    if kept:
        counter.count(raw, [i for i, _ in kept], [n for _, n in kept])


def _count_group(pagemap: PagemapFile, counter: BatchCounter, group: list[tuple[int, int, int]]) -> None:
    """Read the contiguous ``group`` of pieces in as few reads as the counter's
    buffer allows, committing each piece's share of every read (the pieces a read
    holds whole at once: 10,000 one-page mappings cost no step each)."""
    rows = [p[0] for p in group]
    firsts = [p[1] for p in group]
    ends = [p[2] for p in group]
    vpn, end = firsts[0], ends[-1]
    k = 0  # the first piece not yet counted whole
    while vpn < end:
        view = counter.reserve(end - vpn)
        got = pagemap.read_into(view, vpn)
        stop = vpn + got
        j = bisect.bisect_right(ends, stop, k)  # pieces k..j-1 end within this read
        if j > k:
            lengths = [b - a for a, b in zip(firsts[k:j], ends[k:j])]
            lengths[0] = ends[k] - max(firsts[k], vpn)  # it may have begun in the read before
            counter.commit_many(rows[k:j], lengths)
        if j < len(group) and firsts[j] < stop:  # the rest of this piece comes with the next read
            counter.commit(rows[j], stop - max(firsts[j], vpn))
        k = j
        if got < len(view) // 8:
            return  # the end of user space
        vpn = stop


def zero_from_smaps(pid: int, maps: Sequence[Mapping], present: list[int]) -> SmapsCounts:
    """Zero pages and Rss pages per mapping where pagemap cannot tell the zero page
    (no PFNs, no PAGEMAP_SCAN).  ``rss``: :func:`~pagewalk.core.states.rss_pages_by_smaps`.
    ``zero``: ``present`` pages minus that (smaps' ``Rss`` leaves the zero page out:
    fs/proc/task_mmu.c ``smaps_pte_entry``), for mappings without hugetlb pages
    (smaps keeps those out of Rss too); None where smaps cannot be read or the
    mapping changed in between; 0 for ``[vsyscall]``."""
    blocks = read_smaps(pid, frozenset(("Rss", "Private_Hugetlb", "Shared_Hugetlb"))) or {}
    zero: list[int | None] = []
    rss: list[int] = []
    for m, p in zip(maps, present):
        b = blocks.get((m.start, m.end))
        rss.append(0 if m.is_vsyscall else rss_pages_by_smaps(None if b is None else b.get("Rss", 0), p))
        if b is None or b.get("Private_Hugetlb") or b.get("Shared_Hugetlb") or m.is_vsyscall:
            zero.append(None if not m.is_vsyscall else 0)
            continue
        z = p - b.get("Rss", 0) // PAGE_SIZE
        zero.append(z if z >= 0 else None)
    return SmapsCounts(zero, rss)


def scan_runs(scanner: Scanner, start: int, end: int, anyof: int) -> ScanRuns:
    """One PAGEMAP_SCAN walk of ``[start, end)`` (bytes) for pages in any of the
    ``anyof`` categories: their runs as page indices from ``start``, and which runs
    are the zero page (the huge zero page included) and which are present pages
    mapped huge that are not the huge zero page."""
    import numpy as np

    from ..kernel.scan import ZERO_HUGE_MASK, huge_page, zero_page

    regions = scanner.region_array(start, end, anyof=anyof, return_mask=ZERO_HUGE_MASK)
    lo = ((regions[:, 0] - np.uint64(start)) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
    hi = ((regions[:, 1] - np.uint64(start)) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
    return ScanRuns(lo, hi, zero_page(regions[:, 2]), huge_page(regions[:, 2]))


def clip_runs(lo: np.ndarray, hi: np.ndarray, mappings: Sequence[Mapping], base: int) -> ClippedRuns:
    """Page runs ``[lo, hi)`` (int64 page indices from address ``base``, sorted) cut
    to the parts inside ``mappings``; ``run`` is None where every run lies inside
    already (the usual case)."""
    import numpy as np

    maps = [m for m in mappings if not m.is_vsyscall]
    if not len(lo):
        return ClippedRuns(lo, hi, None)
    if not maps:
        return ClippedRuns(lo[:0], hi[:0], np.zeros(0, dtype=np.int64))
    starts = np.array([(m.start - base) >> PAGE_SHIFT for m in maps], dtype=np.int64)
    ends = np.array([(m.end - base) >> PAGE_SHIFT for m in maps], dtype=np.int64)
    apart = starts[1:] != ends[:-1]  # adjacent mappings cover one interval
    cover_lo = starts[np.concatenate(([True], apart))]
    cover_hi = ends[np.concatenate((apart, [True]))]
    first = np.searchsorted(cover_hi, lo, side="right")  # the first interval ending after the run starts
    stop = np.searchsorted(cover_lo, hi, side="left")  # the intervals starting before it ends
    at = np.minimum(first, len(cover_lo) - 1)
    if ((stop - first == 1) & (cover_lo[at] <= lo) & (hi <= cover_hi[at])).all():
        return ClippedRuns(lo, hi, None)
    count = np.maximum(stop - first, 0)
    run = np.repeat(np.arange(len(lo)), count)
    k = ramps(first, count)
    part_lo, part_hi = np.maximum(lo[run], cover_lo[k]), np.minimum(hi[run], cover_hi[k])
    keep = part_hi > part_lo
    return ClippedRuns(part_lo[keep], part_hi[keep], run[keep])


def read_populated(pagemap: PagemapFile, maps: Sequence[Mapping], *, pfn_visible: bool) -> PageTable:
    """Every entry of ``maps``, read through one reused buffer of
    :data:`PAGES_PER_READ` entries, of which only the populated ones (present, or
    a swap entry) are kept: memory follows the resident set, not the address space
    (a 4 TiB PROT_NONE reservation costs reading 8 GiB of zeros, not holding them).
    Returns a table whose ``vaddr`` says where each row is."""
    import numpy as np

    from .pagetable import PageTable

    buf = np.empty(PAGES_PER_READ, dtype=np.uint64)
    view = memoryview(buf).cast("B")
    top = buf.view(np.uint8)[7::8] if sys.byteorder == "little" else None  # bits 56..63 of each entry
    populated = np.uint8((PM_PRESENT | PM_SWAP) >> 56)
    raws: list[np.ndarray] = []
    vpns: list[np.ndarray] = []
    for m in maps:
        vpn, end = m.start >> PAGE_SHIFT, m.end >> PAGE_SHIFT
        while vpn < end:
            want = min(PAGES_PER_READ, end - vpn)
            got = pagemap.read_into(view[: want * 8], vpn)
            if got and buf[:got].any():  # untouched reservations: nothing to look at
                if top is not None:
                    keep = np.flatnonzero(top[:got] & populated)
                else:
                    keep = np.flatnonzero(buf[:got] & np.uint64(PM_PRESENT | PM_SWAP))
                raws.append(buf[keep])  # a copy: the buffer is read into again
                vpns.append(keep + vpn)
            if got < want:
                break  # the end of user space
            vpn += want
    raw = np.concatenate(raws) if raws else np.empty(0, dtype=np.uint64)
    vpn_all = np.concatenate(vpns) if vpns else np.empty(0, dtype=np.int64)
    return PageTable(0, raw, pfn_visible=pfn_visible, zero_pfns=probes.zero_pfns(),
                     vaddr=vpn_all.astype(np.uint64) << np.uint64(PAGE_SHIFT))


def mostly_unpopulated(pid: int) -> bool:
    """Whether fewer than half of the process's virtual pages are resident
    (``/proc/PID/statm``: total size, then resident, in pages; fs/proc/array.c
    ``proc_pid_statm``).  True where statm cannot be read."""
    statm = read_statm(pid)
    return statm is None or 2 * statm[1] < statm[0]
