"""``page-types``: count (and list) pages by their kernel flags.

Three walks produce batches of pages, in order: the whole machine (or PFN
ranges) from ``/proc/kpageflags``; a process's pages from its pagemap (present
pages with their frames' flags, swapped pages with none); a file's page-cache
pages.  :class:`TypesCounter` applies page-types' transformation and filters to
each batch and counts distinct flag values; :class:`pagewalk.output.types_list.Lister` prints page-types'
``-l``/``-L`` lists.  The batches are numpy arrays; the everyday summary of a
process (:func:`count_process`) needs no numpy: the compiled
:func:`pagewalk.native.frame_histogram` counts its pages by their distinct keys, and
:meth:`TypesCounter.add_histogram` applies the same transformation and filters to
each key.  Behaviour follows tools/mm/page-types.c (its walk, ``-b``
expressions, ``kpageflags_flags`` and output), except where
page-types is wrong: a file's partial last page is walked, each file of a
directory gets its own range, and guard or uffd-wp markers are not counted as
swapped pages.
"""

from __future__ import annotations

import os
import stat
from collections import namedtuple
from collections.abc import Iterator

from ..core import flags as fl
from ..core.reading import mostly_unpopulated
from ..core.states import swap_classes
from ..errors import InvalidArgument, ProcessGone
from ..kernel.kpage import CHUNK_PFNS, KPAGECGROUP, KPAGECOUNT, KPAGEFLAGS, KpageFile, read_together
from ..kernel.pagemap import (PAGE_SHIFT, PM_GUARD_REGION, PM_PFRAME_MASK, PM_PRESENT, PM_UFFD_WP, PTE_MARKER_GUARD,
                              SWAP_TYPE_BITS)
from ..kernel.u64file import U64_MAX as ULONG_MAX  # (page-types.c's name)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    import numpy as np

    from ..kernel.idle import IdleMarker

__all__ = [
    "Batch", "Options", "parse_addr_range", "cgroup_inode", "TypesCounter", "Frames", "walk_machine",
    "walk_process", "count_process", "walk_file", "count_file"
]


class Batch(namedtuple("Batch", "voffset offset flags pme cgroup mapcnt swapped", defaults=(0, None, None, None))):
    """Pages in walk order.  ``offset`` is the PFN (the swap offset for swapped
    pages), ``voffset`` the virtual or file page (the PFN in a physical walk);
    ``flags`` raw kpageflags (0 for swapped pages); ``pme`` the pagemap entry or 0;
    ``cgroup`` and ``mapcnt`` read only when asked for; ``swapped`` marks swap entries."""

    __slots__ = ()

    def select(self, keep: np.ndarray) -> Batch:
        """The pages where ``keep`` (a bool array) is True, as a batch."""
        import numpy as np

        pick = lambda a: a if a is None or np.isscalar(a) else a[keep]  # noqa: E731
        return Batch(*(pick(a) for a in self))


class Options:
    """What ``types`` was asked for (page-types' options)."""

    def __init__(self, *, raw: bool = False, filters: list[tuple[int, int]] | None = None,
                 cgroup: int | None = None, list_mode: int = 0, list_cgroup: bool = False,
                 list_mapcnt: bool = False, ranges: list[tuple[int, int]] | None = None) -> None:
        self.raw = raw
        self.filters = filters or []  # -b: (mask, bits), all must pass
        self.cgroup = cgroup  # -c: only pages charged to this memory cgroup inode
        self.list_mode = list_mode  # 1: -l ranges, 2: -L each page
        self.list_cgroup = list_cgroup  # -C
        self.list_mapcnt = list_mapcnt  # -M
        self.ranges = ranges or []  # -a: (first, count)

    @property
    def needs_cgroup(self) -> bool:
        """Whether the walk must read /proc/kpagecgroup (``-c`` or ``-C``)."""
        return self.cgroup is not None or self.list_cgroup

    @property
    def needs_mapcnt(self) -> bool:
        """Whether the walk must read /proc/kpagecount (``-M`` with ``-l`` or ``-L``)."""
        return bool(self.list_mode) and self.list_mapcnt


def parse_addr_range(text: str) -> tuple[int, int]:
    """An ``-a`` range as page-types reads it: ``N``, ``N+M``, ``N,M`` (M exclusive),
    ``N,`` or ``N+`` (to the end), ``,M`` or ``+M`` (from 0).  Returns (first, count).
    Negative or out-of-range numbers are refused (page-types wraps or clamps them)."""
    def number(part: str) -> int:
        try:
            return fl.parse_unsigned(part, "page number")
        except InvalidArgument as exc:
            raise InvalidArgument(f"{exc} (in -a {text!r})" if part != text else str(exc)) from None

    sep = "," if "," in text else "+" if "+" in text else None
    if sep is None:
        return number(text), 1
    head, tail = text.split(sep, 1)
    if head == "":
        return 0, number(tail)
    first = number(head)
    if tail == "":
        return first, ULONG_MAX - first
    n = number(tail)
    if sep == ",":
        if n < first:
            raise InvalidArgument(f"invalid range: {first},{n} (the end is before the start)")
        n -= first
    return first, min(n, ULONG_MAX - first)


def cgroup_inode(text: str) -> int:
    """``-c PATH`` (a cgroup directory: its inode) or ``-c @INODE``."""
    if text.startswith("@"):
        return fl.parse_unsigned(text[1:], "cgroup inode")
    try:
        st = os.stat(text)
    except OSError as exc:
        raise InvalidArgument(f"no such cgroup directory: {text} ({os.strerror(exc.errno)})") from None

    if not stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"not a cgroup directory: {text}")
    return st.st_ino


class TypesCounter:
    """Transforms, filters, lists and counts batches of pages.

    ``lister`` receives each batch's pages that pass, with their flags, through
    ``lister.add(batch, flags)`` (:class:`pagewalk.output.types.Lister` prints them);
    ``idle`` marks their frames idle."""

    def __init__(self, options: Options, lister=None, idle: IdleMarker | None = None) -> None:
        self.options = options
        self.lister = lister
        self.idle = idle
        self.counts: dict[int, int] = {}
        self.total = 0

    def add(self, batch: Batch) -> None:
        """Count the pages of ``batch`` that pass the filters, by their (transformed) flags;
        list them and mark them idle when asked to."""
        import numpy as np

        o = self.options
        flags = fl.transform(batch.flags, batch.pme, o.raw)
        keep = fl.matches(flags, o.filters)
        if o.cgroup is not None:
            cg = batch.cgroup if batch.cgroup is not None else np.zeros(len(flags), dtype=np.uint64)
            ok = cg == np.uint64(o.cgroup)
            if batch.swapped is not None:
                ok &= ~batch.swapped  # page-types drops swapped pages under -c
            keep = ok if keep is None else keep & ok
        if keep is not None:
            if not keep.any():
                return
            if not keep.all():
                batch, flags = batch.select(keep), flags[keep]
        if self.idle is not None:
            self.idle.mark(batch.offset if batch.swapped is None else batch.offset[~batch.swapped])
        if self.lister is not None:
            self.lister.add(batch, flags)
        values, counts = np.unique(flags, return_counts=True)
        for v, c in zip(values.tolist(), counts.tolist()):
            self.counts[v] = self.counts.get(v, 0) + c
        self.total += len(flags)

    def add_histogram(self, counts: dict[tuple[int, int, int, int], int]) -> None:
        """Count pages given as :func:`pagewalk.native.frame_histogram` keys them: frames
        by their raw flags, top pagemap bits and cgroup; swap entries by type.  The
        same transformation and filters as :meth:`add` (listing and idle marking are
        :meth:`add`'s only)."""
        o = self.options
        for (kind, flags, top, cgroup), n in counts.items():
            pme = top << 55
            if kind:  # a swap entry: swapped pages count, markers and migration entries not
                swap_type, marked = (kind - 1) >> 1, (kind - 1) & 1
                if not swap_classes(True, bool(pme & PM_GUARD_REGION), bool(pme & PM_UFFD_WP), swap_type,
                                    PTE_MARKER_GUARD if marked else 0, True).swapped:
                    continue
                if o.cgroup is not None:
                    continue  # page-types drops swapped pages under -c
            elif o.cgroup is not None and cgroup != o.cgroup:
                continue
            value = fl.transform(flags, pme, o.raw)
            if fl.matches(value, o.filters) is False:
                continue
            self.counts[value] = self.counts.get(value, 0) + n
            self.total += n

    def rows(self) -> list[tuple[int, int]]:
        """``(flags, pages)``, most pages first, ties by flags."""
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))


# -- the walks --------------------------------------------------------------------------

class Frames:
    """The per-frame files one walk needs, open together."""

    def __init__(self, options: Options, kpageflags_path: str | None = None) -> None:
        self.flags = KpageFile(KPAGEFLAGS, kpageflags_path)
        self.cgroup = KpageFile(KPAGECGROUP) if options.needs_cgroup else None
        self.count = KpageFile(KPAGECOUNT) if options.needs_mapcnt else None

    def batch(self, voffset: np.ndarray, pfns: np.ndarray, pme: np.ndarray | int = 0,
              swapped: np.ndarray | None = None) -> Batch:
        """Read what is needed of the frames ``pfns`` (swap entries: ``swapped`` True,
        their ``pfns`` the swap offsets, no frame read)."""
        import numpy as np

        frames = pfns if swapped is None else np.where(swapped, np.uint64(0), pfns)
        real = slice(None) if swapped is None else ~swapped

        files = [f for f in (self.flags, self.cgroup, self.count) if f is not None]
        got = iter(read_together(files, frames[real]))
        columns = []
        for f in (self.flags, self.cgroup, self.count):
            out = None
            if f is not None:
                out = np.zeros(len(pfns), dtype=np.uint64)
                out[real] = next(got)
            columns.append(out)
        flags, cgroup, count = columns
        return Batch(voffset, pfns, flags, pme, cgroup, count, swapped)

    def close(self) -> None:
        """Close the files opened for the walk."""
        for f in (self.flags, self.cgroup, self.count):
            if f is not None:
                f.close()


def walk_machine(frames: Frames, ranges: list[tuple[int, int]]) -> Iterator[Batch]:
    """Every PFN of ``ranges`` (default: all of memory), in order, in large reads.
    The kernel spends 60 to 90 ns on each entry whoever reads it, so chunks are
    read by a thread per CPU, a few chunks ahead of the caller."""
    import numpy as np

    from ..parallel import ordered_map

    end_of_memory = frames.flags.end_pfn()
    spans = []
    for first, count in ranges or [(0, ULONG_MAX)]:
        end = min(end_of_memory, first + min(count, ULONG_MAX - first))
        spans += [(pfn, min(CHUNK_PFNS, end - pfn)) for pfn in range(first, end, CHUNK_PFNS)]

    def read(span: tuple[int, int]) -> Batch:
        pfn, n = span
        values = frames.flags.read_range(pfn, n)
        n = len(values)
        pfns = np.arange(pfn, pfn + n, dtype=np.uint64)
        cg = frames.cgroup.read_range(pfn, n) if frames.cgroup is not None else None
        cnt = frames.count.read_range(pfn, n) if frames.count is not None else None
        return Batch(pfns, pfns, values, 0, cg, cnt)

    for batch in ordered_map(read, spans):
        if len(batch.offset):
            yield batch


def walk_process(process, frames: Frames, ranges: list[tuple[int, int]]) -> Iterator[Batch]:
    """The pages of ``process`` (ranges in virtual page numbers) that have a frame
    (present, PFN not 0) or are swapped out, in address order."""
    import numpy as np

    maps = process.mappings()
    spans = [(m.start >> PAGE_SHIFT, m.end >> PAGE_SHIFT, m) for m in maps if not m.is_vsyscall]
    if not ranges:
        ranges = [(0, ULONG_MAX)]
    sparse = mostly_unpopulated(process.pid)
    for first, count in ranges:
        end = first + count
        for lo, hi, m in spans:
            a, b = max(lo, first), min(hi, end)
            if a >= b:
                continue
            for table in process.iter_page_tables(a << PAGE_SHIFT, b << PAGE_SHIFT, zero_huge=False,
                                                  sparse=sparse and not m.scan_skips):
                raw = table.raw
                has_frame = ((raw & np.uint64(PM_PRESENT)) != 0) & (table.pfn > 0)
                swapped = table.swapped
                keep = np.flatnonzero(has_frame | swapped)
                if len(keep) == 0:
                    continue
                vpn = (table.vaddr[keep] >> PAGE_SHIFT).astype(np.uint64)
                sw = swapped[keep]
                offset = np.where(sw, table.swap_offset[keep], table.pfn[keep]).astype(np.uint64)
                yield frames.batch(vpn, offset, raw[keep], sw if sw.any() else None)
    try:
        process.check_mappings(maps)  # the caller says which changed meanwhile (Process.changed)
    except ProcessGone:
        pass  # exited after the last read: nothing to compare


def count_process(process, frames: Frames, counter: TypesCounter) -> None:
    """Count the pages of ``process`` that :func:`walk_process` yields into ``counter``
    (every page, the summary only: no ``-a`` ranges, lists or idle marking), with no
    numpy: its populated entries (:meth:`pagewalk.core.process.Process.populated_entries`)
    go to :func:`pagewalk.native.frame_histogram`, which reads their frames' flags."""
    from .. import native

    hist: dict[tuple[int, int, int, int], int] = {}
    cgroup_fd = frames.cgroup.fd if frames.cgroup is not None else -1
    maps = process.mappings()
    for raw, segments, _ in process.populated_entries(maps):
        try:
            native.frame_histogram(raw, frames.flags.fd, cgroup_fd, SWAP_TYPE_BITS, PTE_MARKER_GUARD, hist, segments)
        except OSError as exc:
            raise frames.flags.read_error(exc) from None
    counter.add_histogram(hist)
    try:
        process.check_mappings(maps)  # the caller says which changed meanwhile (Process.changed)
    except ProcessGone:
        pass  # exited after the last read: nothing to compare


def walk_file(path: str, frames: Frames, ranges: list[tuple[int, int]], self_pagemap,
              notes: list[str]) -> Iterator[Batch]:
    """The page-cache pages of one regular file (ranges in file pages; default:
    every page, the partial last page included).  Pages that left the cache while
    being read, and were read back, are named in a note appended to ``notes``."""
    import numpy as np

    for page, cached_bytes, entry_bytes in _file_chunks(path, ranges, self_pagemap, notes):
        cached = np.frombuffer(cached_bytes, dtype=bool)  # (bytes of 0 and 1)
        entries = np.frombuffer(entry_bytes, dtype=np.uint64)
        present = (entries & np.uint64(PM_PRESENT)) != 0
        pfns = entries & np.uint64(PM_PFRAME_MASK)
        keep = np.flatnonzero(cached & present & (pfns > 0))
        if len(keep):
            yield frames.batch((page + keep).astype(np.uint64), pfns[keep], entries[keep])


def count_file(path: str, frames: Frames, counter: TypesCounter, self_pagemap, notes: list[str]) -> None:
    """Count the page-cache pages of one regular file that :func:`walk_file` yields into
    ``counter`` (every page, the summary only), with no numpy, as :func:`count_process`
    counts a process's."""
    from .. import native
    from ..runs import byte_runs

    hist: dict[tuple[int, int, int, int], int] = {}
    cgroup_fd = frames.cgroup.fd if frames.cgroup is not None else -1
    for _, cached, entries in _file_chunks(path, [], self_pagemap, notes):
        segments = [(a, b - a) for a, b in byte_runs(cached)]
        try:
            native.frame_histogram(entries, frames.flags.fd, cgroup_fd, SWAP_TYPE_BITS, PTE_MARKER_GUARD, hist,
                                   segments)
        except OSError as exc:
            raise frames.flags.read_error(exc) from None
    counter.add_histogram(hist)


def _file_chunks(path: str, ranges: list[tuple[int, int]], self_pagemap, notes: list[str]
                 ) -> Iterator[tuple[int, bytes, bytes]]:
    """``(first page, cached, pagemap entries)`` of the file's chunks
    (:func:`pagewalk.kernel.pagecache.cached_frames`) over ``ranges`` (default: every
    page); the note on pages read back is appended to ``notes`` at the end."""
    from ..kernel.pagecache import cached_frames, file_pages, open_file, read_back_note

    fd = open_file(path)
    read_back = 0
    try:
        size_pages = file_pages(os.fstat(fd).st_size)
        for first, count in ranges or [(0, size_pages)]:
            count = min(count, max(0, size_pages - first))
            for page, cached, entries, chunk_read_back in cached_frames(fd, first, count, path, self_pagemap):
                read_back += chunk_read_back
                yield page, cached, entries
    finally:
        os.close(fd)
    if read_back:
        notes.append(read_back_note(path, read_back))
