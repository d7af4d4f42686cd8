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

import bisect
import os
import sys
from collections import deque
from collections.abc import Iterator, Sequence

from ..kernel import probes
from ..errors import InvalidArgument, NoSuchProcess, NotMapped, ProcessGone
from ..kernel.maps import Mapping, is_hugetlb, parse_maps, read_maps_text
from ..kernel.pagemap import PAGE_SHIFT, PAGE_SIZE, PM_PFRAME_MASK, PagemapFile
from ..kernel.procfs import thread_group
from .states import known_sum, rss_pages, zero_by_kpageflags
from .translate import Translation, translate

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    import numpy as np

    from ..kernel.kpage import KpageFile
    from .pagetable import CountsReport, MappingCounts, PageTable

CHUNK_PAGES = 1 << 16  # entries per read: 512 KiB, reused
USER_END_4LEVEL = 0x7FFFFFFFF000  # PAGEMAP_SCAN refuses ranges past user space (EFAULT)
SPARSE_MIN_PAGES = 512  # page_table(sparse=True) below this size reads every entry
HOLE_PAGES = 256  # counts() reads across holes this small: 2 KiB of zeros costs less than a read
PARALLEL_MIN_PAGES = 1 << 18  # counts() reads from several threads from this many entries on
FEW_RUNS = 64  # resident_table() reads a large process of this few runs one by one
WALK_ATTEMPTS = 3  # resident_table() walks again while mappings change under it, this many walks at most


def scan_disabled() -> bool:
    """``PAGEWALK_NO_SCAN=1`` forces the plain read() path (to compare the two)."""
    return os.environ.get("PAGEWALK_NO_SCAN", "") not in ("", "0")


class Process:
    """A process named by PID.  Cheap to create; every method reads ``/proc`` afresh."""

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
        self._pagemap: PagemapFile | None = None
        self._scanner: object | None = None
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
        """Whether this reader sees PFNs and swap offsets (CAP_SYS_ADMIN)."""
        return probes.pfn_visible()

    # -- kernel files -----------------------------------------------------
    def mappings(self) -> list[Mapping]:
        """The process's mappings, from ``/proc/PID/maps``."""
        self.pagemap()  # a kernel thread or zombie fails here with the reason
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

    def pagemap(self) -> PagemapFile:
        """The open ``/proc/PID/pagemap`` (opened once, on first use)."""
        if self._pagemap is None:
            self._pagemap = PagemapFile(self.pid)
        return self._pagemap

    def check_alive(self, during: str) -> None:
        """Raise :class:`ProcessGone` if the process has exited (its memory is gone).
        For reads of the frames a process had: they read on after it freed them,
        so a record that mixes its pages and their frames' later state is refused."""
        if not self.pagemap().alive():
            raise ProcessGone(self.pid, f"process {self.pid} exited during {during}; results would be partial")

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
        (or ``use_scan`` is off)."""
        if self._scanner is None:
            from ..kernel import scan

            fd = self.pagemap().fd
            self._scanner = scan.Scanner(fd, pid=self.pid) if self.use_scan and scan.supported(fd) else False
        return self._scanner or None

    # -- translation (no numpy) ---------------------------------------------
    def _zero_pages(self, entries: dict[int, int]) -> dict[int, bool | None]:
        """Which of these present pages (virtual page number -> entry) are the zero
        page: by kpageflags' ZERO_PAGE bit where PFNs are visible (one open, grouped
        reads), else by PAGEMAP_SCAN's PFNZERO over groups of nearby pages, else unknown."""
        if self.pfn_visible:
            pfns = {e & PM_PFRAME_MASK for e in entries.values()}
            from ..kernel.kpage import read_kpageflags

            flags = read_kpageflags(pfns)
            if flags is not None:
                return {vpn: zero_by_kpageflags(flags.get(e & PM_PFRAME_MASK, 0)) for vpn, e in entries.items()}
            zero_pfns = probes.zero_pfns()
            return {vpn: (e & PM_PFRAME_MASK) in zero_pfns for vpn, e in entries.items()}
        scanner = self.scanner()
        if scanner is None:
            return dict.fromkeys(entries)
        from ..kernel.pagemap import runs_of
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
        from ..kernel.pagemap import runs_of

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
        Any sequence of integers will do, a numpy array included."""
        vaddrs = [int(v) for v in vaddrs]
        mappings = self.mappings()
        return translate(self.pagemap(), mappings, vaddrs, pfn_visible=self.pfn_visible,
                         zero_pages=self._zero_pages, shmem_pages=self._shmem_pages)

    def translate(self, vaddr: int) -> Translation:
        """Translate one address; raises :class:`NotMapped` if it is in no mapping."""
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
        areas (:attr:`Mapping.scan_skips`), which the walk does not visit."""
        import numpy as np

        from .pagetable import PageTable

        start &= ~(PAGE_SIZE - 1)
        end = (end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        if end < start:
            raise InvalidArgument(f"range end 0x{end:x} is below its start 0x{start:x}")
        pages = (end - start) >> PAGE_SHIFT
        scanner = self.scanner() if zero_huge or sparse else None
        runs = None
        # For a few pages one read is cheaper than a walk and its reads.
        if (scanner is not None and sparse and pages > SPARSE_MIN_PAGES and end <= USER_END_4LEVEL
                and self._scan_sees_every_entry()):
            from ..kernel.scan import PAGE_IS_PRESENT, PAGE_IS_SOFT_DIRTY, PAGE_IS_SWAPPED

            runs = _scan_runs(scanner, start, end, PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_SOFT_DIRTY)
            raw = np.zeros(pages, dtype=np.uint64)
            view = memoryview(raw).cast("B")
            for a, b in _merge_runs(runs[0].tolist(), runs[1].tolist()):
                self.pagemap().read_into(view[a * 8 : b * 8], (start >> PAGE_SHIFT) + a)
        else:
            raw = np.empty(pages, dtype=np.uint64)  # read straight into it: one allocation
            n = self.pagemap().read_into(memoryview(raw).cast("B"), start >> PAGE_SHIFT) if pages else 0
            raw = raw[:n]
            if scanner is not None and zero_huge and n:
                from ..kernel.scan import PAGE_IS_HUGE, PAGE_IS_PFNZERO

                runs = _scan_runs(scanner, start, start + n * PAGE_SIZE, PAGE_IS_PFNZERO | PAGE_IS_HUGE)
        zero = huge = None
        if runs is not None and zero_huge:
            lo, hi, z, h = runs
            zero, huge = _paint(len(raw), lo[z], hi[z]), _paint(len(raw), lo[h], hi[h])
        return PageTable(start, raw, pfn_visible=self.pfn_visible, zero=zero, huge=huge,
                         zero_pfns=probes.zero_pfns())

    def _scan_sees_every_entry(self) -> bool:
        """Whether a PAGEMAP_SCAN walk can name every page pagemap shows nonzero:
        present, swap entries and markers, and soft-dirty (a category since 6.8),
        which pagemap also shows for untouched pages of VM_SOFTDIRTY areas."""
        from ..kernel import scan

        return bool(scan.categories_supported(self.pagemap().fd) & scan.PAGE_IS_SOFT_DIRTY)

    def iter_page_tables(self, start: int, end: int, chunk_pages: int = CHUNK_PAGES, *,
                         zero_huge: bool = True, sparse: bool = False) -> Iterator[PageTable]:
        """:meth:`page_table` of ``[start, end)`` in pieces of at most ``chunk_pages``
        pages, so memory stays bounded however large the range.  Stops early (without
        error) at the end of user space; raises :class:`ProcessGone` if the process
        exits."""
        start &= ~(PAGE_SIZE - 1)
        step = chunk_pages * PAGE_SIZE
        while start < end:
            table = self.page_table(start, min(end, start + step), zero_huge=zero_huge, sparse=sparse)
            if len(table):
                yield table
            if table.end < min(end, start + step):
                return  # the end of user space
            start += step

    def read_resident(self, mappings: Sequence[Mapping] | None = None, *, threads: bool = True
                      ) -> ResidentRead | None:
        """The populated pages' raw pagemap entries, as :meth:`resident_table` reads
        them (one PAGEMAP_SCAN walk finds the pages, then only they are read), with no
        numpy: see :class:`ResidentRead`.  Large processes are read from a thread per
        CPU unless ``threads`` is False.  None without PAGEMAP_SCAN."""
        if self.scanner() is None:
            return None
        resident = ResidentRead(self, mappings)
        resident.scan()
        if threads and len(resident.entries) >= 8 * PARALLEL_MIN_PAGES:  # the kernel's per-entry cost
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

    def resident_table(self, mappings: Sequence[Mapping] | None = None, *,
                       kpageflags: KpageFile | None = None, resident: ResidentRead | None = None,
                       shmem_swap: bool = False) -> PageTable:
        """Every page of the process with a frame or a swap entry (present, zero page
        included; swapped; markers), in address order, as one table whose ``vaddr``
        says where each page is.  With PAGEMAP_SCAN one walk finds them and only
        they are read, so the cost follows the resident set, not the address space.
        Skips ``[vsyscall]`` and VM_PFNMAP areas (device memory; smaps counts none
        of their pages either).  Without PAGEMAP_SCAN every mapping is read.

        With ``shmem_swap``, shared-memory pages in swap, which have no entry
        (kernel.md 6a.1), are rows too, with an empty entry and ``shmem_swapped``
        set; ``shmem_unknown_mappings`` then lists the shared-memory mappings whose
        swap this reader cannot look up, and ``shmem_note`` says why.

        The table's ``mappings`` are those it was read with: ``mappings`` if given,
        else ``/proc/PID/maps`` as read for the walk, and then, where mappings
        changed during the walk (:meth:`check_mappings`), as read for the next
        walk, up to :data:`WALK_ATTEMPTS` walks; those that changed during the
        last one are its ``changed_mappings`` (and :attr:`changed`).  Its rows
        all lie inside its mappings: a page of a mapping made during the walk,
        in a gap between them, is no row.

        ``resident`` is what :meth:`read_resident` read, if it was read already (its
        mappings are then the table's, whatever ``mappings`` says).
        With ``kpageflags`` (the open file; PFNs must be visible) the table's
        ``kpageflags`` holds the flags of each present page's frame."""
        import numpy as np

        own = mappings is None or resident is not None  # maps this may read again
        for _ in range(WALK_ATTEMPTS):
            if resident is not None:
                maps = resident.mappings
            else:
                maps = self.mappings() if own else mappings
            table = self._resident_pages(maps, resident)
            changed = self._changed_since(maps)
            if not changed or not own:
                break
            resident = None  # walk again, with the maps as they are now
        self.changed = changed
        if kpageflags is not None:
            present = table.present
            if present.all():  # usual: no index arrays of a million entries
                frames = table.raw & np.uint64(PM_PFRAME_MASK)
                table.kpageflags = kpageflags.read(frames, out=frames)
            else:
                table.kpageflags = np.zeros(len(table), dtype=np.uint64)
                table.kpageflags[present] = kpageflags.read(table.raw[present] & np.uint64(PM_PFRAME_MASK))
        if shmem_swap:
            table = self._with_shmem_swap(table, maps)
        table.mappings, table.changed_mappings = list(maps), changed
        return table

    def rss_rows(self, table: PageTable, mappings: Sequence[Mapping], map_index: np.ndarray | None = None
                 ) -> np.ndarray:
        """Which rows of ``table`` (a resident table of ``mappings``) smaps counts in
        ``Rss`` (:func:`pagewalk.states.rss_pages`, page by page): present, not the
        zero page, not in a hugetlb mapping.  ``map_index``: each row's mapping, if
        the caller has it."""
        import numpy as np

        from ..kernel.maps import mapping_index

        rss = table.resident.copy()
        if table.huge is not None and table.huge.any():
            index = mapping_index(mappings, table.vaddr) if map_index is None else map_index
            for i in np.unique(index[table.huge]).tolist():
                if is_hugetlb(self.pid, mappings[i]):
                    rss &= index != i
        return rss

    @staticmethod
    def shmem_rows(table: PageTable, found) -> tuple[dict, list[np.ndarray]]:
        """The pages of ``found`` (:meth:`shmem_swap`, exact) that ``table`` (a
        resident table) has no row for: a page with an entry of its own (copied on
        write in a private mapping; a marker) is not the object's page in swap for
        this process.  Returns the records cut to those pages, and their virtual
        page numbers per record."""
        import numpy as np

        from .pagetable import ramps

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
                    records[i] = record._replace(runs=_runs_of_pages(vpn), pages=len(vpn))
            added.append(vpn)
        return records, added

    def _with_shmem_swap(self, table: PageTable, mappings: Sequence[Mapping]) -> PageTable:
        """``table`` with a row for each shared-memory page in swap (an empty entry,
        ``shmem_swapped`` set), in address order.  A page of a private mapping
        that has an entry of its own (copied on write) has its row already and is
        not in the object's swap for this process.  The table keeps the lookup's
        records (``shmem_records``, cut to the rows added) and its ``shmem_note``."""
        import numpy as np

        from .pagetable import PageTable

        found = self.shmem_swap(mappings)
        table.shmem_unknown_mappings = [mappings[i] for i, r in found.items() if r is None]
        table.shmem_note = found.note
        table.shmem_records, added = self.shmem_rows(table, found)
        if not sum(map(len, added)):
            return table
        vaddr = np.concatenate(added).astype(np.uint64) << np.uint64(PAGE_SHIFT)
        n = len(vaddr)
        extra = PageTable(0, np.zeros(n, dtype=np.uint64), pfn_visible=table.pfn_visible, vaddr=vaddr,
                          zero=None if table._zero is None else np.zeros(n, dtype=bool),
                          huge=None if table.huge is None else np.zeros(n, dtype=bool),
                          kpageflags=None if table.kpageflags is None else np.zeros(n, dtype=np.uint64),
                          soft_dirty_known=table.soft_dirty_known)
        extra.shmem_swapped = np.ones(n, dtype=bool)
        joined = PageTable.concat([(table, None), (extra, None)])
        merged = joined.take(np.argsort(joined.vaddr, kind="stable"))
        merged.shmem_unknown_mappings, merged.shmem_note = table.shmem_unknown_mappings, table.shmem_note
        merged.shmem_records = table.shmem_records
        return merged

    def _resident_pages(self, mappings: Sequence[Mapping], resident: ResidentRead | None) -> PageTable:
        """The populated pages of ``mappings`` (all inside them) as one table."""
        import numpy as np

        from .pagetable import PageTable, ramps

        if resident is None:
            resident = self.read_resident(mappings)
        if resident is None:  # no PAGEMAP_SCAN: every entry of every mapping
            return self._read_populated([m for m in mappings if not m.is_vsyscall and not m.scan_skips])
        raw = np.frombuffer(resident.entries, dtype=np.uint64)
        lo, hi = np.array(resident.lo, dtype=np.int64), np.array(resident.hi, dtype=np.int64)
        zero, huge = np.array(resident.zero, dtype=bool), np.array(resident.huge, dtype=bool)
        # The walk covers the gaps between the mappings too: a mapping made there
        # during the walk is not among them, and its pages are no rows.
        lo, hi, run = _clip_runs(lo, hi, mappings, resident.base)
        if run is not None:
            zero, huge = zero[run], huge[run]
        lengths = hi - lo
        if run is not None or len(resident.spans) != len(lo):  # runs merged into spans: pick the runs out
            span_lo = np.array([a for a, _ in resident.spans], dtype=np.int64)
            span_at = np.concatenate(([0], np.cumsum([b - a for a, b in resident.spans]))).astype(np.int64)
            span = np.searchsorted(span_lo, lo, side="right") - 1  # the span of each run
            raw = raw[ramps(span_at[span] + lo - span_lo[span], lengths)]
        table = PageTable(resident.base, raw, pfn_visible=self.pfn_visible, zero=np.repeat(zero, lengths),
                          huge=np.repeat(huge, lengths), zero_pfns=probes.zero_pfns(),
                          runs=((lo * PAGE_SIZE + resident.base).astype(np.uint64), lengths))
        # A page unmapped (or zapped) between the walk and the read of its entry reads
        # empty: it is no longer populated, and an empty row would read as shared
        # memory in swap (kernel.md 6a.1).
        populated = table.present | table.swap_entry
        return table if populated.all() else table.take(np.flatnonzero(populated))

    def _read_populated(self, maps: Sequence[Mapping]) -> PageTable:
        """Every entry of ``maps``, read through one reused buffer of
        :data:`CHUNK_PAGES` entries, of which only the populated ones (present, or a
        swap entry) are kept: memory follows the resident set, not the address
        space (a 4 TiB PROT_NONE reservation costs reading 8 GiB of zeros, not
        holding them)."""
        import numpy as np

        from ..kernel.pagemap import PM_PRESENT, PM_SWAP
        from .pagetable import PageTable

        pagemap = self.pagemap()
        buf = np.empty(CHUNK_PAGES, dtype=np.uint64)
        view = memoryview(buf).cast("B")
        top = buf.view(np.uint8)[7::8] if sys.byteorder == "little" else None  # bits 56..63 of each entry
        populated = np.uint8((PM_PRESENT | PM_SWAP) >> 56)
        raws: list[np.ndarray] = []
        vpns: list[np.ndarray] = []
        for m in maps:
            vpn, end = m.start >> PAGE_SHIFT, m.end >> PAGE_SHIFT
            while vpn < end:
                want = min(CHUNK_PAGES, end - vpn)
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
        return PageTable(0, raw, pfn_visible=self.pfn_visible, zero_pfns=probes.zero_pfns(),
                         vaddr=vpn_all.astype(np.uint64) << np.uint64(PAGE_SHIFT))

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
        """
        from .pagetable import COUNT_COLUMNS, BatchCounter, CountsReport, MappingCounts, PageCounts

        pagemap = self.pagemap()  # a kernel thread or zombie fails here with the reason
        maps = list(mappings) if mappings is not None else self.mappings()
        pfn_visible = self.pfn_visible
        layout = self._scan_layout(maps)
        # Zero pages by PFN only where PAGEMAP_SCAN cannot say (it is exact and cheaper).
        zero_pfns = probes.zero_pfns() if layout is None else frozenset()
        # One row more than mappings: the holes read between nearby pieces.
        counter = BatchCounter(len(maps) + 1, CHUNK_PAGES, pfn_visible=pfn_visible, zero_pfns=zero_pfns)
        pieces = layout.pieces() if layout is not None else (
            (i, m.start >> PAGE_SHIFT, m.end >> PAGE_SHIFT) for i, m in enumerate(maps) if not m.is_vsyscall)
        _count_pieces(pagemap, counter, pieces, hole=len(maps))
        table = counter.finish()[:-1]
        col = {name: table[:, k] for k, name in enumerate(COUNT_COLUMNS)}
        zero_known = layout is not None or (pfn_visible and bool(zero_pfns))
        if layout is not None:
            zero, huge = layout.zero, layout.huge
        else:
            zero, huge = col["zero"], None
        real = [not m.is_vsyscall for m in maps]
        pages = [(m.end - m.start) >> PAGE_SHIFT if r else 0 for m, r in zip(maps, real)]
        zero_list, huge_list = zero.tolist(), huge.tolist() if huge is not None else None
        if not zero_known:  # no PFNs and no PAGEMAP_SCAN (unprivileged, before 6.7)
            zero_list = _zero_from_smaps(self.pid, maps, col["present"].tolist())
        hugetlb = [bool(h) and is_hugetlb(self.pid, m) for m, h in zip(maps, huge_list or [0] * len(maps))]
        rss = [rss_pages(p, z, ht) * PAGE_SIZE for ht, p, z in zip(hugetlb, col["present"].tolist(), zero_list)]
        rows: list[MappingCounts] = []
        lists = {name: col[name].tolist() for name in COUNT_COLUMNS}
        soft_dirty_known = probes.soft_dirty_supported()
        for i, m in enumerate(maps):
            if not real[i]:
                rows.append(MappingCounts(m, None))
                continue
            rows.append(MappingCounts(m, PageCounts(
                pages=pages[i], present=lists["present"][i], file=lists["file"][i],
                exclusive=lists["exclusive"][i], uffd_wp=lists["uffd_wp"][i], guard=lists["guard"][i],
                soft_dirty=lists["soft_dirty"][i] if soft_dirty_known else None,
                # swap or uffd-wp markers, when PFNs are hidden: unknown, never a guess
                swapped=None if lists["ambiguous"][i] else lists["swapped"][i],
                zero=zero_list[i], huge=huge_list[i] if huge_list is not None else None,
                rss=rss[i])))
        notes = self._add_shmem_swap(maps, rows)
        zeros = [z for z, r in zip(zero_list, real) if r]
        totals = PageCounts(
            pages=sum(pages), present=int(col["present"].sum()), file=int(col["file"].sum()),
            exclusive=int(col["exclusive"].sum()), uffd_wp=int(col["uffd_wp"].sum()), guard=int(col["guard"].sum()),
            soft_dirty=int(col["soft_dirty"].sum()) if soft_dirty_known else None,
            swapped=known_sum(r.counts.swapped for r in rows if r.counts is not None),
            shmem_swapped=known_sum(r.counts.shmem_swapped for r in rows if r.counts is not None),
            zero=None if None in zeros else sum(zeros), huge=int(huge.sum()) if huge is not None else None,
            rss=sum(rss))
        return CountsReport(self.pid, pfn_visible, rows, totals, self.check_mappings(maps), notes)

    def shmem_swap(self, mappings: Sequence[Mapping], *, exact: bool = True, within: tuple[int, int] | None = None,
                   cache: dict | None = None):  # -> shmem.ShmemSwapResult
        """Shared memory in swap, per shmem mapping (index into ``mappings``): a
        :class:`pagewalk.shmem.ShmemSwap` (``pages``, and with ``exact`` the
        ``runs`` of virtual page numbers, only ``within`` those page numbers if
        given), or None where this reader cannot look it up (the result's
        ``note`` says why).  Other mappings are absent.  See
        :func:`pagewalk.shmem.swapped_runs`."""
        from ..kernel import shmem

        found = shmem.swapped_runs(self.pid, mappings, exact=exact, within=within, cache=cache)
        if found.note and found.note not in self.notes:
            self.notes.append(found.note)
        return found

    def _add_shmem_swap(self, maps: Sequence[Mapping], rows: list[MappingCounts]) -> list[str]:
        """Add shared memory in swap to ``rows``' ``swapped``, as smaps' ``Swap``
        does; return notes on what could not be looked up.  Where the object
        cannot be opened, smaps' own per-mapping ``Swap`` (readable wherever
        pagemap is) gives the count."""
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
                from ..kernel.smaps import read_smaps, shmem_swap_pages

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

    def _scan_layout(self, maps: Sequence[Mapping]) -> _ScanLayout | None:
        """What one PAGEMAP_SCAN walk over all of ``maps`` says (None without it)."""
        scanner = self.scanner()
        usable = [m for m in maps if not m.is_vsyscall]
        if scanner is None or not usable:
            return None
        from ..kernel import scan

        # Finding the populated runs costs a walk about a third of the price of
        # reading every entry, so it is done only where most of the address space
        # is not resident.
        sparse = self._scan_sees_every_entry() and self.mostly_unpopulated()
        if sparse:
            anyof = scan.PAGE_IS_PRESENT | scan.PAGE_IS_SWAPPED | scan.PAGE_IS_SOFT_DIRTY
        else:
            anyof = scan.PAGE_IS_PFNZERO | scan.PAGE_IS_HUGE  # only the zero and huge counts
        lo = min(m.start for m in usable)
        hi = max(m.end for m in usable)
        return _ScanLayout(maps, lo, _scan_runs(scanner, lo, hi, anyof), sparse)

    def mostly_unpopulated(self) -> bool:
        """Whether fewer than half of the process's virtual pages are resident
        (``/proc/PID/statm``: total size, then resident, in pages)."""
        try:
            with open(f"/proc/{self.pid}/statm", "rb") as f:
                size, resident = (int(x) for x in f.read().split()[:2])
        except (OSError, ValueError):
            return True
        return 2 * resident < size


class ResidentRead:
    """The populated pages of a process and their raw pagemap entries, read with no
    numpy, so that the reading can run while numpy imports: :meth:`scan` walks the
    address space once (PAGEMAP_SCAN), then :meth:`read_pending`, from as many
    threads as call it, reads the entries piece by piece.  Afterwards: ``mappings``
    (all of them, as ``/proc/PID/maps`` listed them), the populated runs of pages
    ``[lo, hi)`` counted from address ``base`` (in address order, each the zero page
    or a huge page or neither, as the walk said), and the raw ``entries`` (u64,
    native order) of ``spans``, which cover the runs, laid end to end."""

    def __init__(self, process: Process, mappings: Sequence[Mapping] | None = None) -> None:
        self.process = process
        self.mappings = process.mappings() if mappings is None else list(mappings)
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
        starts, ends, cats = self.process.scanner().region_lists(
            base, top, anyof=PAGE_IS_PRESENT | PAGE_IS_SWAPPED, return_mask=ZERO_HUGE_MASK)
        lo = self.lo = [(a - base) >> PAGE_SHIFT for a in starts]
        hi = self.hi = [(b - base) >> PAGE_SHIFT for b in ends]
        self.zero = [zero_page(c) for c in cats]
        self.huge = [huge_page(c) for c in cats]
        # Runs at most HOLE_PAGES apart are read as one span (a read costs more than
        # 2 KiB of entries), and the runs' entries are then picked out of the spans;
        # but a large process of a few runs is read run by run straight into its
        # table, which spares copying a million entries for a few more reads.
        direct = len(lo) <= FEW_RUNS and sum(hi) - sum(lo) >= PARALLEL_MIN_PAGES
        self.spans = list(zip(lo, hi)) if direct else _merge_runs(lo, hi, HOLE_PAGES)
        at = 0
        pieces = []
        for a, b in self.spans:  # large spans in chunks, for threads
            pieces += [(a + i, min(b, a + i + CHUNK_PAGES), at + i) for i in range(0, b - a, CHUNK_PAGES)]
            at += b - a
        self.entries = bytearray(at * 8)
        self._pending.extend(pieces)

    def read_pending(self) -> None:
        """Read the queued pieces, until none is left, in the calling thread (any
        number of threads may call this at once, even while another still scans;
        each piece is read once)."""
        pagemap = self.process.pagemap()
        while True:
            try:
                a, b, at = self._pending.popleft()  # atomic: the pieces are shared
            except IndexError:
                return
            # Only now: scan() sets the buffer and base before it queues any piece
            view = memoryview(self.entries)[at * 8 : (at + b - a) * 8]
            pagemap.read_into(view, (self.base >> PAGE_SHIFT) + a)

    def scan_and_read(self) -> ResidentRead:
        self.scan()
        self.read_pending()
        return self


class _ScanLayout:
    """Per-mapping results of one PAGEMAP_SCAN walk: zero and huge page counts, and
    (when the walk looked for every populated page) the populated runs to read."""

    def __init__(self, maps: Sequence[Mapping], base: int, runs, sparse: bool) -> None:
        import numpy as np

        lo, hi, zero, huge = runs
        self.maps, self.base, self.sparse = maps, base, sparse
        bounds_lo = np.array([(m.start - base) >> PAGE_SHIFT for m in maps], dtype=np.int64)
        bounds_hi = np.array([(m.end - base) >> PAGE_SHIFT for m in maps], dtype=np.int64)
        # A region may straddle adjacent mappings: count from cumulative pages at the bounds.
        self.zero = _pages_below(lo[zero], hi[zero], bounds_hi) - _pages_below(lo[zero], hi[zero], bounds_lo)
        self.huge = _pages_below(lo[huge], hi[huge], bounds_hi) - _pages_below(lo[huge], hi[huge], bounds_lo)
        self._runs = _merge_runs(lo.tolist(), hi.tolist()) if sparse else []

    def pieces(self):
        """``(mapping index, first page, end page)`` ranges to read, in address order:
        the populated runs of each mapping, or all of it where the walk could not
        tell (no soft-dirty category; :attr:`Mapping.scan_skips` areas)."""
        import numpy as np

        offset = self.base >> PAGE_SHIFT
        starts = np.array([a for a, _ in self._runs], dtype=np.int64) + offset
        ends = np.array([b for _, b in self._runs], dtype=np.int64) + offset
        firsts = [m.start >> PAGE_SHIFT for m in self.maps]
        lasts = [m.end >> PAGE_SHIFT for m in self.maps]
        k_from = np.searchsorted(ends, firsts, side="right").tolist()  # first run ending after the start
        k_to = np.searchsorted(starts, lasts, side="left").tolist()  # runs starting before the end
        starts_l, ends_l = starts.tolist(), ends.tolist()
        for i, m in enumerate(self.maps):
            if m.is_vsyscall:
                continue
            if not self.sparse or m.scan_skips:
                yield i, firsts[i], lasts[i]
                continue
            for k in range(k_from[i], k_to[i]):
                yield i, max(starts_l[k], firsts[i]), min(ends_l[k], lasts[i])


def _count_pieces(pagemap: PagemapFile, counter, pieces, hole: int) -> None:
    """Read the entries of ``pieces`` (``(mapping index, first page, end page)``)
    into ``counter`` (a :class:`~pagewalk.pagetable.BatchCounter`).  Pieces at most
    :data:`HOLE_PAGES` apart are read as one, the entries between them counted to
    row ``hole``, so 10,000 small mappings cost a few hundred reads, not 10,000.
    Many entries are read by a thread per CPU while the counter counts."""
    groups = list(_groups(pieces, hole))
    if sum(g[-1][2] - g[0][1] for g in groups) >= PARALLEL_MIN_PAGES:
        from ..parallel import ordered_map, workers

        if workers() > 1:
            import numpy as np

            def read(task: tuple[int, int, list[tuple[int, int]]]):
                vpn, n, segments = task
                buf = np.empty(n, dtype=np.uint64)
                return buf[: pagemap.read_into(memoryview(buf).cast("B"), vpn)], segments

            for raw, segments in ordered_map(read, _tasks(groups, CHUNK_PAGES)):
                _count_read(counter, raw, segments)
            return
    for group in groups:
        _count_group(pagemap, counter, group)


def _groups(pieces, hole: int) -> Iterator[list[tuple[int, int, int]]]:
    """Runs of pieces at most HOLE_PAGES apart, the holes between them as pieces of
    mapping ``hole``: each run is contiguous and read as one."""
    group: list[tuple[int, int, int]] = []
    for piece in pieces:
        if group and not 0 <= piece[1] - group[-1][2] <= HOLE_PAGES:
            yield group
            group = []
        if group and piece[1] > group[-1][2]:
            group.append((hole, group[-1][2], piece[1]))
        group.append(piece)
    if group:
        yield group


def _tasks(groups, size: int) -> Iterator[tuple[int, int, list[tuple[int, int]]]]:
    """Reads of at most ``size`` entries: ``(first page, entries, [(mapping, entries)...])``."""
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
            yield vpn, stop - vpn, segments
            vpn = stop


def _count_read(counter, raw, segments: list[tuple[int, int]]) -> None:
    """Count one read; a short one (the end of user space) covers only its first entries."""
    left, kept = len(raw), []
    for i, n in segments:
        if left <= 0:
            break
        kept.append((i, min(n, left)))
        left -= n
    if kept:
        counter.count(raw, [i for i, _ in kept], [n for _, n in kept])


def _count_group(pagemap: PagemapFile, counter, group: list[tuple[int, int, int]]) -> None:
    """Read the contiguous ``group`` of pieces in as few reads as the counter's
    buffer allows, committing each piece's share of every read."""
    vpn, end = group[0][1], group[-1][2]
    k = 0
    while vpn < end:
        view = counter.reserve(end - vpn)
        got = pagemap.read_into(view, vpn)
        stop = vpn + got
        while k < len(group) and group[k][1] < stop:
            i, first, last = group[k]
            counter.commit(i, min(last, stop) - max(first, vpn))
            if last > stop:
                break  # the rest of this piece comes with the next read
            k += 1
        if got < len(view) // 8:
            return  # the end of user space
        vpn = stop


def _runs_of_pages(vpn: np.ndarray) -> list[tuple[int, int]]:
    """Sorted page numbers as ``(first, end)`` runs of consecutive pages."""
    import numpy as np

    if len(vpn) == 0:
        return []
    cut = np.flatnonzero(np.diff(vpn) != 1) + 1
    firsts = vpn[np.concatenate(([0], cut))].tolist()
    ends = (vpn[np.concatenate((cut - 1, [len(vpn) - 1]))] + 1).tolist()
    return list(zip(firsts, ends))


def _zero_from_smaps(pid: int, maps: Sequence[Mapping], present: list[int]) -> list[int | None]:
    """Zero pages per mapping where pagemap cannot tell them (no PFNs, no
    PAGEMAP_SCAN): present pages minus smaps' ``Rss`` (which leaves the zero page
    out), for mappings without hugetlb pages (smaps keeps those out of Rss too).
    None where smaps cannot be read or the mapping changed in between."""
    from ..kernel.smaps import read_smaps

    blocks = read_smaps(pid, frozenset(("Rss", "Private_Hugetlb", "Shared_Hugetlb"))) or {}
    out: list[int | None] = []
    for m, p in zip(maps, present):
        b = blocks.get((m.start, m.end))
        if b is None or b.get("Private_Hugetlb") or b.get("Shared_Hugetlb") or m.is_vsyscall:
            out.append(None if not m.is_vsyscall else 0)
            continue
        z = p - b.get("Rss", 0) // PAGE_SIZE
        out.append(z if z >= 0 else None)
    return out


def _scan_runs(scanner, start: int, end: int, anyof: int):
    """One PAGEMAP_SCAN walk of ``[start, end)`` for pages in any of the ``anyof``
    categories: their runs as page indices from ``start`` (``lo``, ``hi``), and which
    runs are the zero page (the huge zero page included) and which are present
    pages mapped huge that are not the huge zero page."""
    import numpy as np

    from ..kernel.scan import ZERO_HUGE_MASK, huge_page, zero_page

    regions = scanner.region_array(start, end, anyof=anyof, return_mask=ZERO_HUGE_MASK)
    lo = ((regions[:, 0] - np.uint64(start)) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
    hi = ((regions[:, 1] - np.uint64(start)) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
    return lo, hi, zero_page(regions[:, 2]), huge_page(regions[:, 2])


def _clip_runs(lo: np.ndarray, hi: np.ndarray, mappings: Sequence[Mapping], base: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Page runs ``[lo, hi)`` (page indices from address ``base``, sorted) cut to
    the parts inside ``mappings``: ``(lo, hi, run)``, ``run`` saying which run each
    part comes from, or None where every run lies inside already (the usual case)."""
    import numpy as np

    from .pagetable import ramps

    maps = [m for m in mappings if not m.is_vsyscall]
    if not len(lo):
        return lo, hi, None
    if not maps:
        return lo[:0], hi[:0], np.zeros(0, dtype=np.int64)
    starts = np.array([(m.start - base) >> PAGE_SHIFT for m in maps], dtype=np.int64)
    ends = np.array([(m.end - base) >> PAGE_SHIFT for m in maps], dtype=np.int64)
    apart = starts[1:] != ends[:-1]  # adjacent mappings cover one interval
    cover_lo = starts[np.concatenate(([True], apart))]
    cover_hi = ends[np.concatenate((apart, [True]))]
    first = np.searchsorted(cover_hi, lo, side="right")  # the first interval ending after the run starts
    stop = np.searchsorted(cover_lo, hi, side="left")  # the intervals starting before it ends
    at = np.minimum(first, len(cover_lo) - 1)
    if ((stop - first == 1) & (cover_lo[at] <= lo) & (hi <= cover_hi[at])).all():
        return lo, hi, None
    count = np.maximum(stop - first, 0)
    run = np.repeat(np.arange(len(lo)), count)
    k = ramps(first, count)
    part_lo, part_hi = np.maximum(lo[run], cover_lo[k]), np.minimum(hi[run], cover_hi[k])
    keep = part_hi > part_lo
    return part_lo[keep], part_hi[keep], run[keep]


def _merge_runs(lo: Sequence[int], hi: Sequence[int], gap: int = 0) -> list[tuple[int, int]]:
    """Sorted runs with neighbours at most ``gap`` pages apart joined (one read each)."""
    out: list[tuple[int, int]] = []
    for a, b in zip(lo, hi):
        if out and a - out[-1][1] <= gap:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


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
