"""The process-level façade: one object per PID over maps, pagemap and PAGEMAP_SCAN
(fs/proc/task_mmu.c).  The read planning is in :mod:`pagewalk.core.reading`, the
array building in :mod:`pagewalk.core.tables`.

>>> import pagewalk
>>> p = pagewalk.Process(1234)
>>> for m in p.mappings(): ...
>>> table = p.page_table(m.start, m.end)        # numpy-backed, every bit decoded
>>> p.translate(0x7ffd1234).paddr
>>> report = p.counts()                          # per-mapping page counts

numpy is imported only by the methods that decode many pages.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator, Sequence

from ..errors import InvalidArgument, NoSuchProcess, NotMapped, ProcessGone
from ..kernel import probes
from ..kernel.maps import Mapping, is_hugetlb, parse_maps, read_maps_text
from ..kernel.pagemap import PAGE_SHIFT, PAGE_SIZE, PM_PFRAME_MASK, PagemapFile
from ..kernel.procfs import thread_group
from ..runs import merge_runs, paint, runs_of
from .states import known_sum, rss_pages, zero_by_kpageflags

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from ..kernel.scan import Scanner
    from ..kernel.kpage import KpageFile
    from . import reading
    from ..kernel.shmem import ShmemSwapResult
    from .counting import CountsReport, MappingCounts
    from .pagetable import PageTable
    from .translate import Translation

__all__ = ["Process"]


def scan_disabled() -> bool:
    """``PAGEWALK_NO_SCAN=1`` forces the plain read() path (to compare the two)."""
    return os.environ.get("PAGEWALK_NO_SCAN", "") not in ("", "0")


class Process:
    """A process named by PID.  Cheap to create; every method reads ``/proc`` afresh.

    Raises :class:`InvalidArgument` for a PID that is not a positive int or names a
    thread, :class:`NoSuchProcess` where there is no such process.  Public:
    ``pid``, ``use_scan``, ``notes``, ``changed``, :attr:`pfn_visible`,
    :attr:`scan_in_use`, :meth:`mappings`, :meth:`check_mappings`,
    :meth:`check_alive`, :meth:`translate`, :meth:`translate_many`,
    :meth:`page_table`, :meth:`iter_page_tables`, :meth:`resident_table`,
    :meth:`counts`, :meth:`populated_entries`, :meth:`shmem_swap`, :meth:`close` (and ``with``)."""

    def __init__(self, pid: int, *, use_scan: bool | None = None) -> None:
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise InvalidArgument(f"not a process ID: {pid!r}")
        tgid = thread_group(pid)
        if tgid is None:
            raise NoSuchProcess(pid)
        if tgid != pid:  # /proc/TID exists for threads too, but names the whole process
            raise InvalidArgument(f"{pid} is a thread of process {tgid}: give the process ID, {tgid}")
        self.pid = pid
        # PAGEMAP_SCAN where the kernel has it, unless told otherwise (here or by
        # PAGEWALK_NO_SCAN=1): both paths give the same answers, to compare them.
        self.use_scan = not scan_disabled() if use_scan is None else use_scan
        self._pagemap_file: PagemapFile | None = None
        self._scanner_cache: Scanner | bool | None = None  # False: none on this kernel or use_scan off
        # what could not be known and why, one line each (shared memory in swap)
        self.notes: list[str] = []
        # mappings that changed while the last walk read their pages (check_mappings), in
        # address order; the last walk's only, so a long watch keeps no history
        self.changed: list[Mapping] = []
        self._last_maps: tuple[str, list[Mapping]] | None = None  # the last maps read: text and parse

    def __repr__(self) -> str:
        return f"pagewalk.Process(pid={self.pid})"

    @property
    def pfn_visible(self) -> bool:
        """Whether this reader sees PFNs and swap offsets (CAP_SYS_ADMIN;
        fs/proc/task_mmu.c ``pagemap_open``)."""
        return probes.pfn_visible()

    @property
    def scan_in_use(self) -> bool:
        """Whether page walks use PAGEMAP_SCAN (the kernel has it, Linux 6.7+, and
        ``use_scan`` is on): then the zero page and huge pages can be told.
        Raises what opening ``/proc/PID/pagemap`` raises."""
        return self._scanner() is not None

    def resident_read(self) -> reading.ResidentRead | None:
        """A read of the populated pages' raw entries that needs no numpy, not started
        (start it with :meth:`~pagewalk.core.reading.ResidentRead.scan_and_read`, in
        a thread while numpy imports, and give it to :meth:`resident_table`); None
        without PAGEMAP_SCAN.  Raises what opening ``/proc/PID/pagemap`` raises."""
        from . import reading

        scanner = self._scanner()
        return None if scanner is None else reading.ResidentRead(self._pagemap(), scanner, self.mappings())

    def populated_entries(self, maps: Sequence[Mapping]
                          ) -> Iterator[tuple[memoryview, list[tuple[int, int]], list[int]]]:
        """The raw pagemap entries (u64, native order; no numpy) of every populated
        page of ``maps`` (present, or with a swap entry or marker), and maybe of some
        empty ones: ``(entries, segments, vpns)``, ``segments`` saying which
        ``(first entry, entries)`` of them belong to ``maps`` and ``vpns`` the virtual
        page number of each segment's first page.  With PAGEMAP_SCAN only the
        populated runs are read (the mappings it skips are read whole); without it
        every entry.  A buffer is valid until the next triple.  Raises
        :class:`ProcessGone` if the process exits."""
        from . import reading  # (the numpy paths' planners: not on v2p's start-up path)

        pagemap = self._pagemap()
        rest = [m for m in maps if not m.is_vsyscall]
        scanner = self._scanner()
        if scanner is not None:
            read = reading.read_resident(pagemap, scanner, maps)
            yield (memoryview(read.entries), *read.run_segments())
            rest = [m for m in rest if m.scan_skips]
        buf = memoryview(bytearray(reading.PAGES_PER_READ * 8))
        for m in rest:
            vpn, end = m.start >> PAGE_SHIFT, m.end >> PAGE_SHIFT
            while vpn < end:
                want = min(reading.PAGES_PER_READ, end - vpn)
                got = pagemap.read_into(buf[: want * 8], vpn)
                yield buf[: got * 8], [(0, got)], [vpn]
                if got < want:
                    break  # the end of user space
                vpn += want

    # -- kernel files -----------------------------------------------------
    def mappings(self) -> list[Mapping]:
        """The process's mappings, from ``/proc/PID/maps``, in address order.
        Raises :class:`NoSuchProcess` (:class:`NoAddressSpace` for a kernel thread
        or zombie) or :class:`AccessDenied` when pagemap cannot be opened."""
        self._pagemap()  # a kernel thread or zombie fails here with the reason
        text = read_maps_text(self.pid, started=True)
        maps = parse_maps(text)
        self._last_maps = (text, maps)  # check_mappings compares texts, not parses
        return maps

    def check_mappings(self, maps: Sequence[Mapping]) -> list[Mapping]:
        """The mappings of ``maps`` that ``/proc/PID/maps``, read again now, no longer
        lists as they were (unmapped, moved, resized, protection changed): pages read
        from them since ``maps`` was read may mix the before and the after.  They are
        also :attr:`changed` from now on.  Every command that walks pages asks this
        after its walk.  A mapping unmapped and mapped again alike in between cannot
        be told apart (maps shows no generation).  Raises :class:`ProcessGone` if
        the process exited."""
        self.changed = self._changed_since(maps)
        return self.changed

    def _changed_since(self, maps: Sequence[Mapping]) -> list[Mapping]:
        """:meth:`check_mappings` without recording them."""
        after = read_maps_text(self.pid, started=True)
        if not after and maps:
            raise ProcessGone(self.pid)
        if self._last_maps is not None and maps is self._last_maps[1] and after == self._last_maps[0]:
            return []  # the usual case: the same text, no parse
        return sorted(set(maps) - set(parse_maps(after)), key=lambda m: m.start)

    def _pagemap(self) -> PagemapFile:
        """The open ``/proc/PID/pagemap`` (opened once, on first use)."""
        if self._pagemap_file is None:
            self._pagemap_file = PagemapFile(self.pid)
        return self._pagemap_file

    def check_alive(self, during: str) -> None:
        """Raise :class:`ProcessGone` if the process has exited (its memory is gone).
        For reads of the frames a process had: they read on after it freed them,
        so a record that mixes its pages and their frames' later state is refused."""
        if not self._pagemap().alive():
            raise ProcessGone(self.pid, f"process {self.pid} exited during {during}; results would be partial")

    def close(self) -> None:
        """Close ``/proc/PID/pagemap`` if open (the next read opens it again)."""
        if self._pagemap_file is not None:
            self._pagemap_file.close()
            self._pagemap_file = None
            self._scanner_cache = None

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scanner(self) -> Scanner | None:
        """A PAGEMAP_SCAN scanner on this process, or None where the kernel has none
        (or ``use_scan`` is off)."""
        if self._scanner_cache is None:
            from ..kernel import scan  # its ctypes structures stay off the v2p path until a walk needs them

            fd = self._pagemap().fd
            self._scanner_cache = scan.Scanner(fd, pid=self.pid) if self.use_scan and scan.supported(fd) else False
        return self._scanner_cache or None

    # -- translation (no numpy) ---------------------------------------------
    def _zero_pages(self, entries: dict[int, int]) -> dict[int, bool | None]:
        """Which of these present pages (virtual page number -> entry) are the zero
        page: by kpageflags' ZERO_PAGE bit where PFNs are visible (one open, grouped
        reads), else by PAGEMAP_SCAN's PFNZERO over groups of nearby pages, else unknown."""
        if self.pfn_visible:
            pfns = {e & PM_PFRAME_MASK for e in entries.values()}
            from ..kernel.kpage import read_kpageflags  # (start-up: v2p as non-root never reads it)

            flags = read_kpageflags(pfns)
            if flags is not None:
                return {vpn: zero_by_kpageflags(flags.get(e & PM_PFRAME_MASK, 0)) for vpn, e in entries.items()}
            zero_pfns = probes.zero_pfns()
            return {vpn: (e & PM_PFRAME_MASK) in zero_pfns for vpn, e in entries.items()}
        scanner = self._scanner()
        if scanner is None:
            return dict.fromkeys(entries)
        from ..kernel.scan import PAGE_IS_PFNZERO

        ordered = sorted(entries)
        result: dict[int, bool | None] = dict.fromkeys(ordered, False)
        for first, last in runs_of(ordered, 512):
            for lo, hi, _ in scanner.regions(first << PAGE_SHIFT, (last + 1) << PAGE_SHIFT, mask=PAGE_IS_PFNZERO,
                                             return_mask=PAGE_IS_PFNZERO):
                for vpn in ordered[bisect.bisect_left(ordered, lo >> PAGE_SHIFT):
                                   bisect.bisect_left(ordered, hi >> PAGE_SHIFT)]:
                    result[vpn] = True
        return result

    def _shmem_pages(self, pages: dict[int, Mapping]) -> dict[int, bool | None]:
        """Which of these pages (virtual page number -> mapping; their entries are
        empty) are shared memory in swap: None where it cannot be looked up.  Each
        group of nearby pages is asked about alone, not its whole mapping."""
        by_mapping: dict[Mapping, list[int]] = {}
        for vpn, m in pages.items():
            by_mapping.setdefault(m, []).append(vpn)
        out: dict[int, bool | None] = {}
        for m, vpns in by_mapping.items():
            vpns.sort()
            for first, last in runs_of(vpns, 512):
                record = self.shmem_swap([m], within=(first, last + 1)).get(0, False)
                group = vpns[bisect.bisect_left(vpns, first) : bisect.bisect_right(vpns, last)]
                if not record:  # not shared memory (False), or unknown (None)
                    out.update(dict.fromkeys(group, record))
                    continue
                starts = [a for a, _ in record.runs]
                for vpn in group:
                    k = bisect.bisect_right(starts, vpn) - 1
                    out[vpn] = k >= 0 and vpn < record.runs[k][1]
        return out

    def translate_many(self, vaddrs: Sequence[int]) -> list[Translation]:
        """Translate many addresses in one pass (one maps read, grouped pagemap reads).
        Addresses in no mapping come back with ``mapping=None``; nothing is raised.
        Any sequence of integers will do, a numpy array included.  Returns one
        :class:`Translation` an address, in order; raises what :meth:`mappings` raises."""
        vaddrs = [int(v) for v in vaddrs]
        mappings = self.mappings()
        from .translate import translate  # (v2p's path, not the page walks')

        return translate(self._pagemap(), mappings, vaddrs, pfn_visible=self.pfn_visible,
                         zero_pages=self._zero_pages, shmem_pages=self._shmem_pages)

    def translate(self, vaddr: int) -> Translation:
        """Translate one address (bytes).  Returns a :class:`Translation`; raises
        :class:`NotMapped` if it is in no mapping, and what :meth:`mappings` raises."""
        result = self.translate_many([vaddr])[0]
        if result.mapping is None:
            raise NotMapped(self.pid, [vaddr])
        return result

    # -- bulk (numpy) ---------------------------------------------------------
    def page_table(self, start: int, end: int, *, zero_huge: bool = True, sparse: bool = False) -> PageTable:
        """The decoded page table of ``[start, end)`` (byte addresses, page aligned
        outward).  Holds ``8 * pages`` bytes plus its decoded columns: use
        :meth:`iter_page_tables` for ranges too large for that.  ``zero_huge=False``
        skips the PAGEMAP_SCAN call behind the ``zero`` and ``huge`` columns for
        callers that do not use them (``huge`` is then None).  ``sparse=True`` lets
        one PAGEMAP_SCAN walk find the populated pages and reads only those, the
        rest being 0 by the kernel's definition; only for ranges without VM_PFNMAP
        areas (:attr:`Mapping.scan_skips`), which the walk does not visit.
        Returns a :class:`PageTable`, shorter than asked at the end of user space;
        raises :class:`InvalidArgument` if ``end < start``, :class:`ProcessGone`
        if the process exits."""
        from . import reading  # (the numpy paths' planners: not on v2p's start-up path)

        import numpy as np

        from .pagetable import PageTable

        start &= ~(PAGE_SIZE - 1)
        end = (end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        if end < start:
            raise InvalidArgument(f"range end 0x{end:x} is below its start 0x{start:x}")
        pages = (end - start) >> PAGE_SHIFT
        scanner = self._scanner() if zero_huge or sparse else None
        runs = None
        # For a few pages one read is cheaper than a walk and its reads.
        if (scanner is not None and sparse and pages > reading.SPARSE_MIN_PAGES and end <= reading.USER_END_4LEVEL
                and self._scan_sees_every_entry()):
            from ..kernel.scan import PAGE_IS_PRESENT, PAGE_IS_SOFT_DIRTY, PAGE_IS_SWAPPED

            runs = reading.scan_runs(scanner, start, end, PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_SOFT_DIRTY)
            raw = np.zeros(pages, dtype=np.uint64)
            view = memoryview(raw).cast("B")
            for a, b in merge_runs(runs.lo.tolist(), runs.hi.tolist()):
                self._pagemap().read_into(view[a * 8 : b * 8], (start >> PAGE_SHIFT) + a)
        else:
            raw = np.empty(pages, dtype=np.uint64)  # read straight into it: one allocation
            n = self._pagemap().read_into(memoryview(raw).cast("B"), start >> PAGE_SHIFT) if pages else 0
            raw = raw[:n]
            if scanner is not None and zero_huge and n:
                from ..kernel.scan import PAGE_IS_HUGE, PAGE_IS_PFNZERO

                runs = reading.scan_runs(scanner, start, start + n * PAGE_SIZE, PAGE_IS_PFNZERO | PAGE_IS_HUGE)
        zero = huge = None
        if runs is not None and zero_huge:
            lo, hi, z, h = runs.lo, runs.hi, runs.zero, runs.huge
            zero, huge = paint(len(raw), lo[z], hi[z]), paint(len(raw), lo[h], hi[h])
        return PageTable(start, raw, pfn_visible=self.pfn_visible, zero=zero, huge=huge,
                         zero_pfns=probes.zero_pfns())

    def _scan_sees_every_entry(self) -> bool:
        """Whether a PAGEMAP_SCAN walk can name every page pagemap shows nonzero:
        present, swap entries and markers, and soft-dirty (a category since 6.8),
        which pagemap also shows for untouched pages of VM_SOFTDIRTY areas."""
        from ..kernel import scan

        return bool(scan.categories_supported(self._pagemap().fd) & scan.PAGE_IS_SOFT_DIRTY)

    def iter_page_tables(self, start: int, end: int, chunk_pages: int | None = None, *,
                         zero_huge: bool = True, sparse: bool = False) -> Iterator[PageTable]:
        """:meth:`page_table` of ``[start, end)`` in pieces of at most ``chunk_pages``
        pages, so memory stays bounded however large the range.  ``chunk_pages`` None:
        :data:`pagewalk.core.reading.PAGES_PER_READ`.  Yields a :class:`PageTable` per
        piece that has pages (``start``, ``end`` in bytes).  Stops early (without error)
        at the end of user space; raises what :meth:`page_table` raises
        (:class:`ProcessGone` if the process exits)."""
        from . import reading

        start &= ~(PAGE_SIZE - 1)
        step = (chunk_pages or reading.PAGES_PER_READ) * PAGE_SIZE
        while start < end:
            table = self.page_table(start, min(end, start + step), zero_huge=zero_huge, sparse=sparse)
            if len(table):
                yield table
            if table.end < min(end, start + step):
                return  # the end of user space
            start += step

    def resident_table(self, mappings: Sequence[Mapping] | None = None, *,
                       kpageflags: KpageFile | None = None, resident: reading.ResidentRead | None = None,
                       shmem_swap: bool = False) -> PageTable:
        """Every page of the process with a frame or a swap entry (present, zero page
        included; swapped; markers), in address order, as one table whose ``vaddr``
        says where each page is.  With PAGEMAP_SCAN one walk finds them and only
        they are read, so the cost follows the resident set, not the address space.
        Skips ``[vsyscall]`` and VM_PFNMAP areas (device memory; smaps counts none
        of their pages either).  Without PAGEMAP_SCAN every mapping is read.

        With ``shmem_swap``, shared-memory pages in swap, which have no entry
        (mm/shmem.c: the page tables keep none), are rows too, with an empty
        entry and ``shmem_swapped`` set; ``shmem_unknown_mappings`` then lists the shared-memory mappings whose
        swap this reader cannot look up, and ``shmem_note`` says why.

        The table's ``mappings`` are those it was read with: ``mappings`` if given,
        else ``/proc/PID/maps`` as read for the walk, and then, where mappings
        changed during the walk (:meth:`check_mappings`), as read for the next
        walk, up to :data:`WALK_ATTEMPTS` walks; those that changed during the
        last one are its ``changed_mappings`` (and :attr:`changed`).  Its rows
        all lie inside its mappings: a page of a mapping made during the walk,
        in a gap between them, is no row.

        ``resident`` is what a :class:`~pagewalk.core.reading.ResidentRead` read,
        if it was read already (its mappings are then the table's, whatever
        ``mappings`` says).  With ``kpageflags`` (the open file; PFNs must be
        visible) the table's ``kpageflags`` holds the flags of each present page's
        frame.  Returns a :class:`PageTable`; raises what :meth:`mappings` raises,
        and :class:`ProcessGone` if the process exits."""
        from . import reading  # (the numpy paths' planners: not on v2p's start-up path)

        from . import tables  # numpy: the first table of the process may be this one

        own = mappings is None or resident is not None  # maps this may read again
        for _ in range(reading.WALK_ATTEMPTS):
            if resident is not None:
                maps = resident.mappings
            else:
                maps = self.mappings() if own else mappings
            if resident is None:
                resident = reading.read_resident(self._pagemap(), self._scanner(), maps)
            if resident is None:  # no PAGEMAP_SCAN: every entry of every mapping
                table = reading.read_populated(self._pagemap(), [m for m in maps if not m.is_vsyscall and not m.scan_skips],
                                       pfn_visible=self.pfn_visible)
            else:
                table = tables.resident_pages(resident, maps, pfn_visible=self.pfn_visible)
            changed = self._changed_since(maps)
            if not changed or not own:
                break
            resident = None  # walk again, with the maps as they are now
        self.changed = changed
        if kpageflags is not None:
            tables.fill_kpageflags(table, kpageflags)
        if shmem_swap:
            table = tables.add_shmem_rows(table, self.shmem_swap(maps), maps)
        table.mappings, table.changed_mappings = list(maps), changed
        return table

    def counts(self, mappings: Sequence[Mapping] | None = None) -> CountsReport:
        """Per-mapping page counts, as ``pagewalk maps`` prints them.

        With PAGEMAP_SCAN, one walk over the address space finds the populated
        pages (present, swap entries, markers, soft-dirty) and the zero and huge
        ones; pagemap is then read only where pages are populated, so an untouched
        64 GiB reservation costs nothing.  Without it (or ``PAGEWALK_NO_SCAN``),
        every mapping is read, zero pages are found by PFN where PFNs are visible,
        and huge pages are unknown.  Entries go through a shared, bounded buffer and
        whole batches of mappings are counted with one histogram.  The maps are
        read again afterwards: mappings that changed meanwhile are in ``changed``.
        Returns a :class:`CountsReport` (counts in pages, ``rss`` in bytes); raises
        what :meth:`mappings` raises, and :class:`ProcessGone` if the process exits.
        """
        from . import reading  # (the numpy paths' planners: not on v2p's start-up path)

        from .counting import BatchCounter, CountsReport, MappingCounts, PageCounts

        pagemap = self._pagemap()  # a kernel thread or zombie fails here with the reason
        maps = list(mappings) if mappings is not None else self.mappings()
        pfn_visible = self.pfn_visible
        layout = self._scan_layout(maps)
        # Zero pages by PFN only where PAGEMAP_SCAN cannot say (it is exact and cheaper).
        zero_pfns = probes.zero_pfns() if layout is None else frozenset()
        # One row more than mappings: the holes read between nearby pieces.
        counter = BatchCounter(len(maps) + 1, reading.PAGES_PER_READ, pfn_visible=pfn_visible,
                               zero_pfn_ranges=runs_of(sorted(zero_pfns), 1))
        pieces = layout.pieces() if layout is not None else (
            (i, m.start >> PAGE_SHIFT, m.end >> PAGE_SHIFT) for i, m in enumerate(maps) if not m.is_vsyscall)
        reading.count_pieces(pagemap, counter, pieces, hole=len(maps))
        col = {name: values[:-1] for name, values in counter.finish().items()}
        zero_known = layout is not None or (pfn_visible and bool(zero_pfns))
        real = [not m.is_vsyscall for m in maps]
        pages = [(m.end - m.start) >> PAGE_SHIFT if r else 0 for m, r in zip(maps, real)]
        zero_list, huge_list = (layout.zero, layout.huge) if layout is not None else (col["zero"], None)
        if zero_known:
            hugetlb = [bool(h) and is_hugetlb(self.pid, m) for m, h in zip(maps, huge_list or [0] * len(maps))]
            rss = [rss_pages(p, z, ht) * PAGE_SIZE for ht, p, z in zip(hugetlb, col["present"], zero_list)]
        else:  # no PFNs and no PAGEMAP_SCAN (unprivileged, before 6.7): smaps says
            zero_list, rss_list = reading.zero_from_smaps(self.pid, maps, col["present"])
            rss = [r * PAGE_SIZE for r in rss_list]
        soft_dirty_known = probes.soft_dirty_supported()
        n = len(maps)
        # swap or uffd-wp markers, when PFNs are hidden: unknown, never a guess
        swapped = [None if a else s for a, s in zip(col["ambiguous"], col["swapped"])]
        # PageCounts' fields in order, a column each (made with _make: 10,000 mappings
        # built by keyword cost 10 ms more); shmem_swapped is added below
        fields = zip(pages, col["present"], zero_list, swapped, col["file"], col["exclusive"],
                     huge_list if huge_list is not None else [None] * n, col["guard"], col["uffd_wp"],
                     col["soft_dirty"] if soft_dirty_known else [None] * n, rss, [0] * n)
        rows = [MappingCounts(m, PageCounts._make(f) if r else None) for m, r, f in zip(maps, real, fields)]
        notes = self._add_shmem_swap(maps, rows)
        zeros = [z for z, r in zip(zero_list, real) if r]
        totals = PageCounts(
            pages=sum(pages), present=sum(col["present"]), file=sum(col["file"]),
            exclusive=sum(col["exclusive"]), uffd_wp=sum(col["uffd_wp"]), guard=sum(col["guard"]),
            soft_dirty=sum(col["soft_dirty"]) if soft_dirty_known else None,
            swapped=known_sum(r.counts.swapped for r in rows if r.counts is not None),
            shmem_swapped=known_sum(r.counts.shmem_swapped for r in rows if r.counts is not None),
            zero=None if None in zeros else sum(zeros), huge=sum(huge_list) if huge_list is not None else None,
            rss=sum(rss))
        return CountsReport(self.pid, pfn_visible, rows, totals, self.check_mappings(maps), notes)

    def shmem_swap(self, mappings: Sequence[Mapping], *, exact: bool = True, within: tuple[int, int] | None = None,
                   cache: dict | None = None) -> ShmemSwapResult:
        """Shared memory in swap (mm/shmem.c: pagemap shows its pages as empty), per shmem
        mapping.  Returns a :class:`~pagewalk.kernel.shmem.ShmemSwapResult`, a dict from
        index into ``mappings`` to a :class:`~pagewalk.kernel.shmem.ShmemSwap` (``pages``,
        and with ``exact`` the ``runs`` of virtual page numbers, only ``within`` those
        page numbers if given), or None where this reader cannot look it up (the result's
        ``note`` says why, and is added to :attr:`notes`).  Other mappings are absent.
        See :func:`pagewalk.kernel.shmem.swapped_runs`."""
        from ..kernel import shmem  # (start-up: v2p meets shared memory in swap rarely)

        found = shmem.swapped_runs(self.pid, mappings, exact=exact, within=within, cache=cache)
        if found.note and found.note not in self.notes:
            self.notes.append(found.note)
        return found

    def _add_shmem_swap(self, maps: Sequence[Mapping], rows: list[MappingCounts]) -> list[str]:
        """Add shared memory in swap to ``rows``' ``swapped``, as smaps' ``Swap``
        does; return notes on what could not be looked up.  Where the object
        cannot be opened, smaps' own per-mapping ``Swap`` (readable wherever
        pagemap is) gives the count."""
        if not any(m.on_internal_mount for m in maps):
            return []  # no mapping can be shared memory: nothing to look up (or import)
        from ..kernel.smaps import read_smaps, shmem_swap_pages  # (counts() only: not on v2p's path)

        found = self.shmem_swap(maps, exact=False)
        blocks = None
        unknown = 0
        for i, record in found.items():
            counts = rows[i].counts
            if counts is None:
                continue
            in_table = counts.swapped
            if record is not None:
                # a private mapping: only where its own entry is empty (smaps counts a
                # read-only one's copied pages too, as if they were in swap)
                pages = self._private_shmem_swap(maps[i]) if record.pages and not maps[i].shared else record.pages
            else:
                if blocks is None:
                    blocks = read_smaps(self.pid, frozenset(("Swap",))) or {}
                pages = shmem_swap_pages(blocks, maps[i], in_table)
                unknown += pages is None
            rows[i] = rows[i]._replace(counts=counts._replace(
                swapped=None if in_table is None or pages is None else in_table + pages, shmem_swapped=pages))
        return [found.note] if unknown and found.note else []

    def _private_shmem_swap(self, m: Mapping) -> int:
        """Pages of the private mapping ``m`` in its object's swap whose own entry
        is empty (one that was copied on write has an entry and is not in swap)."""
        record = self.shmem_swap([m]).get(0)
        if not record:
            return 0
        total = 0
        for table in self.iter_page_tables(record.runs[0][0] << PAGE_SHIFT, record.runs[-1][1] << PAGE_SHIFT,
                                           zero_huge=False):
            table.mark_shmem_swap(record.runs)
            total += int(table.shmem_swapped.sum())
        return total

    def _scan_layout(self, maps: Sequence[Mapping]) -> reading.ScanLayout | None:
        """What one PAGEMAP_SCAN walk over all of ``maps`` says (None without it)."""
        from . import reading  # (the numpy paths' planners: not on v2p's start-up path)

        scanner = self._scanner()
        usable = [m for m in maps if not m.is_vsyscall]
        if scanner is None or not usable:
            return None
        # Finding the populated runs costs a walk about a third of the price of
        # reading every entry, so it is done only where most of the address space
        # is not resident.
        sparse = self._scan_sees_every_entry() and reading.mostly_unpopulated(self.pid)
        return reading.ScanLayout.walk(scanner, maps, sparse)

