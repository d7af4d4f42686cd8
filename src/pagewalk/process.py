"""The process-level façade: one object per PID over maps, pagemap and PAGEMAP_SCAN.

>>> import pagewalk
>>> p = pagewalk.Process(1234)
>>> for m in p.mappings(): ...
>>> table = p.page_table(m.start, m.end)        # numpy-backed, every bit decoded
>>> p.translate(0x7ffd1234).paddr
>>> report = p.counts()                          # per-mapping page counts

numpy is imported only by the methods that decode many pages.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from . import system
from .errors import InvalidArgument, NoSuchProcess, NotMapped, ProcessGone
from .maps import Mapping, parse_maps, read_maps, read_maps_text
from .pagemap import PAGE_SHIFT, PAGE_SIZE, PM_PFRAME_MASK, PagemapFile
from .translate import Translation, translate

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    import numpy as np

    from .pagetable import CountsReport, PageTable

CHUNK_PAGES = 1 << 16  # entries per read: 512 KiB, reused


def scan_disabled() -> bool:
    """``PAGEWALK_NO_SCAN=1`` forces the plain read() path (to compare the two)."""
    return os.environ.get("PAGEWALK_NO_SCAN", "") not in ("", "0")


class Process:
    """A process named by PID.  Cheap to create; every method reads ``/proc`` afresh."""

    def __init__(self, pid: int) -> None:
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise InvalidArgument(f"not a process ID: {pid!r}")
        tgid = _thread_group(pid)
        if tgid is None:
            raise NoSuchProcess(pid)
        if tgid != pid:  # /proc/TID exists for threads too, but names the whole process
            raise InvalidArgument(f"{pid} is a thread of process {tgid}: give the process ID, {tgid}")
        self.pid = pid
        self._pagemap: PagemapFile | None = None
        self._scanner: object | None = None

    def __repr__(self) -> str:
        return f"pagewalk.Process(pid={self.pid})"

    # -- identity ---------------------------------------------------------
    def command(self) -> str:
        """The command name (``/proc/PID/comm``), '' if it cannot be read."""
        try:
            with open(f"/proc/{self.pid}/comm") as f:
                return f.read().rstrip("\n")
        except OSError:
            return ""

    @property
    def pfn_visible(self) -> bool:
        """Whether this reader sees PFNs and swap offsets (CAP_SYS_ADMIN)."""
        return system.pfn_visible()

    # -- kernel files -----------------------------------------------------
    def mappings(self) -> list[Mapping]:
        """The process's mappings, from ``/proc/PID/maps``."""
        self.pagemap()  # a kernel thread or zombie fails here with the reason
        return read_maps(self.pid, started=True)

    def pagemap(self) -> PagemapFile:
        """The open ``/proc/PID/pagemap`` (opened once, on first use)."""
        if self._pagemap is None:
            self._pagemap = PagemapFile(self.pid)
        return self._pagemap

    def close(self) -> None:
        if self._pagemap is not None:
            self._pagemap.close()
            self._pagemap = None
            self._scanner = None

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scanner(self):  # -> pagewalk.scan.Scanner | None
        """A PAGEMAP_SCAN scanner on this process, or None where the kernel has none
        (or ``PAGEWALK_NO_SCAN`` is set)."""
        if self._scanner is None:
            from . import scan

            fd = self.pagemap().fd
            self._scanner = scan.Scanner(fd) if not scan_disabled() and scan.supported(fd) else False
        return self._scanner or None

    # -- translation (no numpy) ---------------------------------------------
    def _zero_pages(self, entries: dict[int, int]) -> dict[int, bool | None]:
        """Which of these present pages (virtual page number -> entry) are the zero
        page: by kpageflags' ZERO_PAGE bit where PFNs are visible (one open, grouped
        reads), else by PAGEMAP_SCAN's PFNZERO over groups of nearby pages, else unknown."""
        if self.pfn_visible:
            pfns = {e & PM_PFRAME_MASK for e in entries.values()}
            flags = system.read_kpageflags(pfns)
            if flags is not None:
                return {vpn: bool(flags.get(e & PM_PFRAME_MASK, 0) & system.KPF_ZERO_PAGE) for vpn, e in entries.items()}
            zero_pfns = system.zero_pfns()
            return {vpn: (e & PM_PFRAME_MASK) in zero_pfns for vpn, e in entries.items()}
        scanner = self.scanner()
        if scanner is None:
            return dict.fromkeys(entries)
        import bisect

        from .pagemap import runs_of
        from .scan import PAGE_IS_PFNZERO

        ordered = sorted(entries)
        result: dict[int, bool | None] = dict.fromkeys(ordered, False)
        for first, last in runs_of(ordered, 512):
            for lo, hi, _ in scanner.regions(first << PAGE_SHIFT, (last + 1) << PAGE_SHIFT, mask=PAGE_IS_PFNZERO,
                                             return_mask=PAGE_IS_PFNZERO):
                for vpn in ordered[bisect.bisect_left(ordered, lo >> PAGE_SHIFT):
                                   bisect.bisect_left(ordered, hi >> PAGE_SHIFT)]:
                    result[vpn] = True
        return result

    def translate_many(self, vaddrs: Sequence[int]) -> list[Translation]:
        """Translate many addresses in one pass (one maps read, grouped pagemap reads).
        Addresses in no mapping come back with ``mapping=None``; nothing is raised.
        Any sequence of integers will do, a numpy array included."""
        vaddrs = [int(v) for v in vaddrs]
        mappings = self.mappings()
        return translate(self.pagemap(), mappings, vaddrs, pfn_visible=self.pfn_visible,
                         zero_pages=self._zero_pages)

    def translate(self, vaddr: int) -> Translation:
        """Translate one address; raises :class:`NotMapped` if it is in no mapping."""
        result = self.translate_many([vaddr])[0]
        if result.mapping is None:
            raise NotMapped(self.pid, [vaddr])
        return result

    # -- bulk (numpy) ---------------------------------------------------------
    def page_table(self, start: int, end: int, *, zero_huge: bool = True) -> PageTable:
        """The decoded page table of ``[start, end)`` (byte addresses, page aligned
        outward).  Holds ``8 * pages`` bytes plus its decoded columns: use
        :meth:`iter_page_tables` for ranges too large for that.  ``zero_huge=False``
        skips the PAGEMAP_SCAN call behind the ``zero`` and ``huge`` columns for
        callers that do not use them (``huge`` is then None)."""
        import numpy as np

        from .pagetable import PageTable

        start &= ~(PAGE_SIZE - 1)
        end = (end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        if end < start:
            raise InvalidArgument(f"range end 0x{end:x} is below its start 0x{start:x}")
        raw = np.empty((end - start) >> PAGE_SHIFT, dtype=np.uint64)  # read straight into it: one allocation
        n = self.pagemap().read_into(memoryview(raw).cast("B"), start >> PAGE_SHIFT) if len(raw) else 0
        raw = raw[:n]
        scanner = self.scanner() if zero_huge else None
        zero = huge = None
        if scanner is not None and n:
            runs = _zero_huge_runs(scanner, start, start + n * PAGE_SIZE)
            zero, huge = _paint(n, runs[0], runs[1]), _paint(n, runs[2], runs[3])
        return PageTable(start, raw, pfn_visible=self.pfn_visible, zero=zero, huge=huge,
                         zero_pfns=system.zero_pfns())

    def iter_page_tables(self, start: int, end: int, chunk_pages: int = CHUNK_PAGES, *,
                         zero_huge: bool = True) -> Iterator[PageTable]:
        """:meth:`page_table` of ``[start, end)`` in pieces of at most ``chunk_pages``
        pages, so memory stays bounded however large the range.  Stops early (without
        error) at the end of user space; raises :class:`ProcessGone` if the process
        exits."""
        start &= ~(PAGE_SIZE - 1)
        step = chunk_pages * PAGE_SIZE
        while start < end:
            table = self.page_table(start, min(end, start + step), zero_huge=zero_huge)
            if len(table):
                yield table
            if table.end < min(end, start + step):
                return  # the end of user space
            start += step

    def counts(self, mappings: Sequence[Mapping] | None = None) -> CountsReport:
        """Per-mapping page counts, as ``pagewalk maps`` prints them.

        Reads each mapping's pagemap range into a shared, bounded buffer and counts
        whole batches of mappings with one histogram; zero-page and huge-page counts
        come from one PAGEMAP_SCAN walk over the address space (without it, zero
        pages from their PFNs when those are visible, and huge pages unknown).  The
        maps are read again afterwards: mappings that changed meanwhile are listed
        in ``changed``.
        """
        from .pagetable import COUNT_COLUMNS, BatchCounter, CountsReport, MappingCounts, PageCounts

        pagemap = self.pagemap()  # a kernel thread or zombie fails here with the reason
        text = read_maps_text(self.pid, started=True) if mappings is None else None
        maps = list(mappings) if mappings is not None else parse_maps(text)
        pfn_visible = self.pfn_visible
        # Zero pages by PFN only where PAGEMAP_SCAN cannot say (it is exact and cheaper).
        zero_pfns = system.zero_pfns() if self.scanner() is None else frozenset()
        counter = BatchCounter(len(maps), CHUNK_PAGES, pfn_visible=pfn_visible, zero_pfns=zero_pfns)
        for i, m in enumerate(maps):
            if m.is_vsyscall:
                continue
            vpn, last = m.start >> PAGE_SHIFT, m.end >> PAGE_SHIFT
            while vpn < last:
                view = counter.reserve(last - vpn)
                got = pagemap.read_into(view, vpn)
                counter.commit(i, got)
                if got < len(view) // 8:
                    break  # the end of user space
                vpn += got
        table = counter.finish()
        scanned = self._zero_huge_per_mapping(maps)
        zero_known = scanned is not None or (pfn_visible and bool(zero_pfns))
        rows: list[MappingCounts] = []
        for i, m in enumerate(maps):
            if m.is_vsyscall:
                rows.append(MappingCounts(m, None))
                continue
            values = dict(zip(COUNT_COLUMNS, map(int, table[i])))
            ambiguous = values.pop("ambiguous")
            c = PageCounts(**values)
            if ambiguous:
                c.swapped = None  # swap or uffd-wp markers: unknown without PFNs, never a guess
            if scanned is not None:
                c.zero, c.huge = int(scanned[0][i]), int(scanned[1][i])
            else:
                c.zero = c.zero if zero_known else None
                c.huge = None
            # smaps reports hugetlb pages apart from Rss; where zero pages cannot be
            # told apart (no PFNs, no PAGEMAP_SCAN) they are counted in.
            hugetlb = bool(c.huge) and system.is_hugetlb(self.pid, m)
            c.rss = 0 if hugetlb else (c.present - (c.zero or 0)) * PAGE_SIZE
            rows.append(MappingCounts(m, c))
        totals = PageCounts.total([r.counts for r in rows if r.counts is not None])
        after_text = read_maps_text(self.pid, started=True)
        if not after_text and maps:
            raise ProcessGone(self.pid)
        changed: list[Mapping] = []
        if after_text != text:  # parse again only when something changed
            changed = sorted(set(maps) - set(parse_maps(after_text)), key=lambda m: m.start)
        return CountsReport(self.pid, pfn_visible, rows, totals, changed)

    def _zero_huge_per_mapping(self, maps: Sequence[Mapping]):
        """Zero-page and huge-page counts of each mapping, from one PAGEMAP_SCAN walk
        over the whole span (its holes between mappings cost nothing); None without
        PAGEMAP_SCAN.  A region may straddle mappings, so counts come from the
        cumulative page count at each mapping's bounds."""
        scanner = self.scanner()
        usable = [m for m in maps if not m.is_vsyscall]
        if scanner is None or not usable:
            return None
        import numpy as np

        lo = min(m.start for m in usable)
        hi = max(m.end for m in usable)
        runs = _zero_huge_runs(scanner, lo, hi)
        bounds_lo = np.array([(m.start - lo) >> PAGE_SHIFT for m in maps], dtype=np.int64)
        bounds_hi = np.array([(m.end - lo) >> PAGE_SHIFT for m in maps], dtype=np.int64)
        out = []
        for starts, ends in ((runs[0], runs[1]), (runs[2], runs[3])):
            out.append(_pages_below(starts, ends, bounds_hi) - _pages_below(starts, ends, bounds_lo))
        return out


def _thread_group(pid: int) -> int | None:
    """The process (thread group) ID that ``pid`` belongs to; None if there is no such task."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return pid


def _zero_huge_runs(scanner, start: int, end: int):
    """Page-index runs ``(zero_lo, zero_hi, huge_lo, huge_hi)`` of ``[start, end)``
    from PAGEMAP_SCAN: zero-page pages (the huge zero page included) and present
    pages mapped huge that are not the huge zero page."""
    import numpy as np

    from .scan import PAGE_IS_HUGE, PAGE_IS_PFNZERO, PAGE_IS_PRESENT

    regions = scanner.region_array(start, end, anyof=PAGE_IS_PFNZERO | PAGE_IS_HUGE,
                                   return_mask=PAGE_IS_PFNZERO | PAGE_IS_HUGE | PAGE_IS_PRESENT)
    lo = ((regions[:, 0] - np.uint64(start)) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
    hi = ((regions[:, 1] - np.uint64(start)) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
    cats = regions[:, 2]
    zero = (cats & np.uint64(PAGE_IS_PFNZERO)) != 0
    huge = (cats & np.uint64(PAGE_IS_HUGE | PAGE_IS_PRESENT | PAGE_IS_PFNZERO)) == np.uint64(
        PAGE_IS_HUGE | PAGE_IS_PRESENT)
    return lo[zero], hi[zero], lo[huge], hi[huge]


def _pages_below(starts: np.ndarray, ends: np.ndarray, points: np.ndarray) -> np.ndarray:
    """For sorted, disjoint page runs ``[starts, ends)``: how many of their pages lie
    below each point (vectorised)."""
    import numpy as np

    if len(starts) == 0:
        return np.zeros(len(points), dtype=np.int64)
    before = np.concatenate([[0], np.cumsum(ends - starts)])  # pages in runs before run j
    i = np.searchsorted(starts, points, side="right")  # how many runs start at or below the point
    last = np.maximum(i - 1, 0)
    partial = np.clip(points - starts[last], 0, ends[last] - starts[last])
    return np.where(i > 0, before[last] + partial, 0)


def _paint(n: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A boolean array of length ``n``, True inside each ``[lo, hi)`` (vectorised)."""
    import numpy as np

    delta = np.zeros(n + 1, dtype=np.int32)
    np.add.at(delta, np.clip(lo, 0, n), 1)
    np.add.at(delta, np.clip(hi, 0, n), -1)
    return np.cumsum(delta[:n]) > 0
