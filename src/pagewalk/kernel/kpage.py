"""``/proc/kpageflags``, ``/proc/kpagecount`` and ``/proc/kpagecgroup``: one u64 per PFN.

The kernel writes them in fs/proc/page.c (``kpageflags_read``, ``kpagecount_read``,
``kpagecgroup_read``).  Each file is indexed by physical frame number (entry
``pfn`` at byte ``8 * pfn``); reads at or past the end of memory return 0 bytes, and every
entry costs the kernel 60 to 90 ns however it is read.  So :meth:`KpageFile.read`
sorts and de-duplicates the PFNs asked for and reads each run of nearby ones
once, and :meth:`KpageFile.chunks` streams the whole PFN space in large reads.
All three files are root's only (mode 0400); ``kpagecgroup`` exists only with
CONFIG_MEMCG.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    import numpy as np

from ..errors import InvalidArgument, PagewalkError, Unsupported
from ..runs import runs_of
from .oserrors import cannot_read, from_oserror
from .pagemap import PFN_LIMIT
from .u64file import ENTRY_BYTES, U64File, read_entries_into

__all__ = [
    "KPAGEFLAGS", "KPAGECOUNT", "KPAGECGROUP", "CHUNK_PFNS", "KpageFile", "read_together", "read_kpageflags"
]

KPAGEFLAGS = "kpageflags"
KPAGECOUNT = "kpagecount"
KPAGECGROUP = "kpagecgroup"
CHUNK_PFNS = 1 << 17  # 1 MiB of entries a read when streaming
RUN_GAP = 8  # PFNs this close are read together: 8 extra entries cost about one read call
DENSE_MIN = 1 << 16  # from this many PFNs on, de-duplicate with a bitmap instead of a sort,
DENSE_SPREAD = 16  # if the bitmap (a byte a PFN up to the highest) stays within 16 bytes a PFN asked
PARALLEL_MIN = 1 << 16  # entries from which reads are spread over threads,
TASKS_PER_THREAD = 8  # in this many parts a thread
REPEATS = 4  # PFNs asked this many times each on average are looked up in a table indexed by PFN
RUNS_MIN = 1 << 12  # from this many PFNs on, sort ascending runs of PFNs rather than PFNs,
RUN_MIN_PFNS = 4  # if the runs are this long on average

_WHY_MISSING = {
    KPAGECGROUP: "this kernel has no /proc/kpagecgroup (it needs CONFIG_MEMCG)",
    KPAGECOUNT: "this kernel has no /proc/kpagecount (it needs CONFIG_PROC_PAGE_MONITOR)",
    KPAGEFLAGS: "this kernel has no /proc/kpageflags (it needs CONFIG_PROC_PAGE_MONITOR)",
}


class KpageFile(U64File):
    """One of the three per-PFN files (``name``: :data:`KPAGEFLAGS` ...), open for
    bulk reads; entries are u64 (flags bits, map counts, cgroup inode numbers).

    ``path`` may name a saved copy of the file (``types -F``), which reads the same way.
    Raises :class:`pagewalk.errors.AccessDenied` (not root), :class:`Unsupported`
    (the kernel lacks the file), :class:`InvalidArgument` (``path`` is not a regular
    file nor the /proc file itself), :class:`PagewalkError` (other OSErrors).
    """

    def __init__(self, name: str, path: str | None = None) -> None:
        self.name = name
        self.path = f"/proc/{name}" if path is None else path
        self._end: int | None = None
        self.fd = -1
        self._file = None  # a saved copy's, open
        try:
            if path is None:
                self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            else:
                from .infile import NotRegularFile, open_regular  # (a saved copy only: types -F)

                try:
                    # looked at before it is opened: a device or FIFO has no end to find
                    # (/dev/zero reads forever), and opening one may do something
                    self._file = open_regular(path, buffering=0)
                except NotRegularFile as exc:
                    raise InvalidArgument(f"{path}: not a regular file ({exc.kind}; a saved copy of "
                                          f"/proc/{name} is one)") from None
                self.fd = self._file.fileno()
                st = os.fstat(self.fd)
                if st.st_size:  # a saved copy knows its size; /proc's files say 0
                    self._end = st.st_size // ENTRY_BYTES
                elif st.st_dev == os.stat("/proc").st_dev:
                    # another /proc file (pagemap) would read on to 2**55 entries of anything
                    if not os.path.samefile(path, f"/proc/{name}"):
                        raise InvalidArgument(f"{path}: not /proc/{name} nor a saved copy of it")
                else:
                    self._end = 0  # an empty file
        except OSError as exc:
            self.close()
            raise _translate(exc, self.path, name if path is None else None) from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the file (again: nothing)."""
        if self._file is not None:
            self._file.close()  # (its descriptor is self.fd)
            self._file = None
            self.fd = -1
        super().close()

    def read_error(self, exc: OSError) -> PagewalkError:
        """The :class:`PagewalkError` a failed read of this file (``exc``) means: for
        readers that read it themselves (:func:`pagewalk.native.frame_histogram`)."""
        return _translate(exc, self.path, None)

    def values(self, pfns: set[int]) -> dict[int, int]:
        """The entries of a few ``pfns`` as {pfn: value}, with no numpy: one read per
        group of nearby PFNs; PFNs past the end of memory left out.  Raises
        :class:`PagewalkError`."""
        ordered = sorted(pfns)
        out: dict[int, int] = {}
        i = 0
        try:
            for first, last in runs_of(ordered, 512):
                data = os.pread(self.fd, (last - first + 1) * ENTRY_BYTES, first * ENTRY_BYTES)
                got = struct.unpack(f"<{len(data) // ENTRY_BYTES}Q", data)
                while i < len(ordered) and ordered[i] <= last:
                    if ordered[i] - first < len(got):
                        out[ordered[i]] = got[ordered[i] - first]
                    i += 1
        except OSError as exc:
            raise self.read_error(exc) from None
        return out

    def read_range(self, first_pfn: int, count: int, out: np.ndarray | None = None) -> np.ndarray:
        """Entries ``first_pfn .. first_pfn + count - 1`` as a uint64 array (in ``out``
        where given; fewer at the end of memory).  Raises :class:`PagewalkError`."""
        import numpy as np

        buf = np.empty(count, dtype=np.uint64) if out is None else out[:count]
        try:
            got = read_entries_into(self.fd, memoryview(buf).cast("B"), first_pfn)
        except OSError as exc:
            raise self.read_error(exc) from None
        return buf[:got]

    def read(self, pfns: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The entries of ``pfns`` (any order, repeats allowed), as a uint64 array of
        the same shape (``out`` if given, which may be ``pfns`` itself); 0 for PFNs
        past the end of memory.  Each run of nearby PFNs is one read (see
        :func:`read_together`)."""
        return read_together([self], pfns, None if out is None else [out])[0]

    def chunks(self, start: int = 0, end: int | None = None, chunk: int = CHUNK_PFNS
               ) -> Iterator[tuple[int, np.ndarray]]:
        """``(first pfn, entries)`` over ``[start, end)`` (to the end of memory without
        ``end``), in reads of ``chunk`` entries into one reused buffer: each array is
        valid only until the next one is produced."""
        import numpy as np

        buf = np.empty(chunk, dtype=np.uint64)
        pfn = start
        while end is None or pfn < end:
            want = chunk if end is None else min(chunk, end - pfn)
            got = self.read_range(pfn, want, buf)
            if len(got):
                yield pfn, got
            if len(got) < want:
                return
            pfn += len(got)

    def end_pfn(self) -> int:
        """The first PFN without an entry: the end of memory as this file sees it
        (found by probing, since the file's size reads as 0; a saved copy's size
        says it).  Raises :class:`PagewalkError`."""
        if self._end is None:
            lo, hi = 0, 1
            while hi < PFN_LIMIT and self._has(hi):
                lo, hi = hi, hi * 2
            while hi - lo > 1:  # lo has an entry, hi has none
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if self._has(mid) else (lo, mid)
            self._end = hi if self._has(lo) else 0
        return self._end

    def _has(self, pfn: int) -> bool:
        try:
            return len(os.pread(self.fd, ENTRY_BYTES, pfn * ENTRY_BYTES)) == ENTRY_BYTES
        except OSError as exc:
            raise _translate(exc, self.path, None) from None


def read_together(files: list[KpageFile], pfns: np.ndarray, out: list[np.ndarray] | None = None
                  ) -> list[np.ndarray]:
    """:meth:`KpageFile.read` of the same ``pfns`` from each of ``files``: the runs
    to read are worked out once, and all the files' reads share a thread per CPU.
    ``out`` are uint64 arrays of ``pfns``' shape to put the entries in, one a file;
    one of them may be ``pfns`` itself, which is not read once the reads are planned
    (a million PFNs: one array of 8 MB fewer to page-fault in).

    Each frame is read once however often it is asked for.  PFNs given mostly in
    ascending runs (a process's pages in address order, whose frames are mostly
    contiguous) are planned by sorting the runs; others by de-duplicating the PFNs
    (a sort, or a bitmap for many PFNs)."""
    import numpy as np

    pfns = np.asarray(pfns, dtype=np.uint64)
    shape = pfns.shape
    if pfns.size == 0:
        return [np.zeros(shape, dtype=np.uint64) for _ in files]
    # PFNs are below 2**55: the same bits as int64, read in place rather than copied
    starts, ends, index = _plan(np.ascontiguousarray(pfns).ravel().view(np.int64))
    offsets = np.concatenate(([0], np.cumsum(ends - starts)))
    runs = list(zip(starts.tolist(), ends.tolist(), offsets.tolist()))
    values = [np.zeros(int(offsets[-1]), dtype=np.uint64) for _ in files]

    def read_runs(task: tuple[int, list[tuple[int, int, int]]]) -> None:
        which, part = task
        for first, end, at in part:  # each run into its own slice of the file's values
            # A short read means the end of memory: the rest of the run stays 0 (later
            # runs are beyond it too, but each finds that out with one cheap read).
            files[which].read_range(first, end - first, values[which][at:])

    if len(values[0]) * len(files) >= PARALLEL_MIN:
        # The kernel's per-entry cost dominates: read parts from a thread per CPU.
        from ..parallel import ordered_map, workers  # (threads and typing: off the start-up path)

        # Parts of about equal entries, several a thread: an entry of a scattered
        # frame costs the kernel twice one of a contiguous run, so equal entries are
        # not equal work, and threads that finish early take the next part.
        parts = TASKS_PER_THREAD * workers()
        most = -(-int(offsets[-1]) // parts)
        if any(end - first > most for first, end, _ in runs):  # contiguous frames: one long read, cut up
            runs = [(first + i, min(end, first + i + most), at + i)
                    for first, end, at in runs for i in range(0, end - first, most)]
            offsets = np.array([at for _, _, at in runs] + [int(offsets[-1])])
        cuts = np.searchsorted(offsets[1:], np.arange(1, parts) * (offsets[-1] / parts)).tolist()
        bounds = sorted({0, *cuts, len(runs)})
        tasks = [(which, runs[a:b]) for which in range(len(files)) for a, b in zip(bounds, bounds[1:])]
        for _ in ordered_map(read_runs, tasks):
            pass
    else:
        for which in range(len(files)):
            read_runs((which, runs))
    if out is None:
        return [v[index].reshape(shape) for v in values]
    for v, o in zip(values, out):
        if o.flags.c_contiguous:
            np.take(v, index, out=o.reshape(-1), mode="clip")  # (the default mode copies out first)
        else:
            o[...] = v[index].reshape(shape)
    return out


def _plan(pfns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs ``[starts, ends)`` of PFNs to read, ascending and laid end to end in one
    buffer, and for each of ``pfns`` (int64) where its entry lands in that buffer."""
    import numpy as np

    n = len(pfns)
    # One array of an int64 a PFN, first the steps between PFNs, then (on the runs
    # path) the places: fresh memory is slow to fault in (bench/HISTORY.md).
    work = np.empty(n, dtype=np.int64)
    work[0] = 0
    np.subtract(pfns[1:], pfns[:-1], out=work[1:])
    step = work[1:]
    cut = (step <= 0) | (step > RUN_GAP)  # a new run: backwards, a repeat, or a gap
    cuts = np.flatnonzero(cut)
    del step, cut
    if n >= RUNS_MIN and len(cuts) * RUN_MIN_PFNS <= n:
        # Mostly ascending runs (a process's frames in address order): sort the runs,
        # not the pages, and merge the overlapping or nearby ones into reads.
        first = np.concatenate(([0], cuts + 1))
        last = np.append(cuts, n - 1)
        run_start, run_end = pfns[first], pfns[last] + 1
        order = np.argsort(run_start)  # (any order of equal starts merges the same; stable sorts cost 5x)
        starts, ends, at = _merge(run_start[order], run_end[order])
        shift = np.empty_like(at)  # each run's place minus its first PFN
        shift[order] = at
        shift -= run_start
        place = work  # the shift of each PFN's run (a cumulative sum of its changes), plus the PFN
        place[:] = 0
        place[first] = np.diff(shift, prepend=0)
        np.cumsum(place, out=place)
        place += pfns
        return starts, ends, place
    del work
    top = int(pfns.max()) + 1
    if n >= DENSE_MIN and top <= DENSE_SPREAD * n:
        # Many PFNs (usage over hundreds of processes sharing frames): a bitmap over
        # the PFN range de-duplicates in O(n), where a sort costs O(n log n).
        seen = np.zeros(top, dtype=bool)
        seen[pfns] = True
        unique = np.flatnonzero(seen)
    else:  # np.unique would import numpy.ma on first use (9 ms)
        unique = np.sort(pfns)
        unique = unique[np.concatenate(([True], unique[1:] != unique[:-1]))]
    breaks = np.flatnonzero(np.diff(unique) > RUN_GAP) + 1
    starts = unique[np.concatenate(([0], breaks))]
    ends = unique[np.concatenate((breaks - 1, [len(unique) - 1]))] + 1
    offsets = np.concatenate(([0], np.cumsum(ends - starts)[:-1]))
    if n >= REPEATS * len(unique) and top <= DENSE_SPREAD * n:
        # Each frame asked for many times (usage: frames a family of processes share):
        # place the distinct ones, then look every PFN up in a table indexed by PFN.
        table = np.zeros(top, dtype=np.int64)
        table[unique] = _places(unique, np.searchsorted(starts, unique, side="right") - 1, starts, offsets)
        return starts, ends, table[pfns]
    return starts, ends, _places(pfns, np.searchsorted(starts, pfns, side="right") - 1, starts, offsets)


def _merge(run_start: np.ndarray, run_end: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs ``[run_start, run_end)`` sorted by start (they may overlap) merged into
    reads ``[starts, ends)`` wherever they overlap or lie within RUN_GAP of each other,
    and where each run's first entry lands with the reads laid end to end."""
    import numpy as np

    reach = np.maximum.accumulate(run_end)  # the furthest end so far
    new = np.empty(len(run_start), dtype=bool)
    new[0] = True
    np.greater(run_start[1:], reach[:-1] - 1 + RUN_GAP, out=new[1:])
    heads = np.flatnonzero(new)
    starts = run_start[heads]
    ends = reach[np.append(heads[1:] - 1, len(reach) - 1)]
    offsets = np.concatenate(([0], np.cumsum(ends - starts)[:-1]))
    read = np.cumsum(new) - 1  # the read each run falls in
    return starts, ends, offsets[read] + run_start - starts[read]


def _places(pfns: np.ndarray, run: np.ndarray, starts: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Where each PFN's entry lands: its run's offset plus its distance from the run's
    start, computed in place (fresh temporaries of a million entries page-fault slowly)."""
    place = (offsets - starts)[run]
    place += pfns
    return place


def _translate(exc: OSError, path: str, name: str | None) -> PagewalkError:
    """:func:`from_oserror` in the per-frame files' words: ENOENT of ``/proc/NAME``
    (``name`` given) is the kernel built without it."""
    return from_oserror(exc, None, path, denied="the per-frame files are root's only: run as root (CAP_SYS_ADMIN)",
                        missing=Unsupported(_WHY_MISSING[name]) if name is not None else cannot_read(path, exc))


def read_kpageflags(pfns: set[int]) -> dict[int, int] | None:
    """Flags of the given PFNs from /proc/kpageflags as {pfn: flags}
    (:meth:`KpageFile.values`); None when the file cannot be read (it is root's
    only).  No numpy."""
    try:
        with KpageFile(KPAGEFLAGS) as f:
            return f.values(pfns)
    except PagewalkError:
        return None
