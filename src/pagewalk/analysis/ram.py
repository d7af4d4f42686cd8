"""Where the machine's RAM went (``pagewalk ram``): every frame of System RAM put in one
use (:mod:`pagewalk.core.frames`), with RAMMap's lists, and the uses set beside the
kernel's own totals in ``/proc/meminfo``, read just before and just after the walk.

The walk reads ``/proc/kpageflags`` over the ``System RAM`` ranges of ``/proc/iomem``
(the whole kpageflags range where iomem hides them), in large chunks, with numpy: a
machine of 24 GiB is 6 million frames.  Free frames: Linux 6.18 marks every page of a
free block as buddy; a kernel that marks only a block's first page is recognised (the
marked frames fall far short of the zones' ``nr_free_pages``) and its blocks' other
pages are found from their alignment (:func:`pagewalk.core.frames.free_tails`).
"""

from __future__ import annotations

import time
from collections import namedtuple

from ..core import frames as fr
from ..errors import AccessDenied
from ..kernel import procfs
from ..kernel.kpage import KPAGEFLAGS, KpageFile
from ..kernel.pagemap import PAGE_SIZE
from ..kernel.physmem import PfnRange, system_ram

__all__ = ["Reconciled", "RamReport", "RECONCILE", "ZONE_FREE", "TOLERANCE", "TOLERANCE_MIN_BYTES", "walk_ram",
           "within"]

TOLERANCE = 0.02  # issue 16's targets: within 2% of the kernel's count,
TOLERANCE_MIN_BYTES = 8 << 20  # or 8 MiB, whichever is larger
ZONE_FREE = "nr_free_pages (zoneinfo)"  # not a meminfo field: the zones' free pages, in bytes
HEADS_ONLY_BELOW = 0.5  # buddy-marked frames below this share of the zones' free pages: first pages only

# The uses set beside meminfo: (name, uses, meminfo fields added, fields taken away).
# meminfo's Cached counts shared memory (NR_FILE_PAGES holds shmem): the page cache of
# files is Cached + Buffers - Shmem (fs/proc/meminfo.c, mm/shmem.c).
RECONCILE = (
    ("anonymous", ("anonymous", "KSM"), ("AnonPages",), ()),
    ("swap cache", ("swap cache",), ("SwapCached",), ()),
    ("page cache + buffers", ("page cache",), ("Cached", "Buffers"), ("Shmem",)),
    ("shared memory", ("shared memory",), ("Shmem",), ()),
    ("slab", ("slab",), ("Slab",), ()),
    ("page tables", ("page tables",), ("PageTables", "SecPageTables"), ()),
    ("hugetlb", ("hugetlb",), ("Hugetlb",), ()),
    # the zones' own count of their free lists: MemFree, where the kernel has set up all
    # its memory (on kernels that do it lazily MemFree also counts what is not set up yet)
    ("free", ("free",), (ZONE_FREE,), ()),
)


class Reconciled(namedtuple("Reconciled", "name uses frames fields before_bytes after_bytes")):
    """One line of the reconciliation: the ``uses`` named ``name`` (``frames`` of them
    walked) and the meminfo ``fields`` that count the same (a leading ``-`` taken
    away), read before and after the walk, in bytes (None where meminfo lacks them)."""

    __slots__ = ()

    @property
    def size_bytes(self) -> int | None:
        """The frames' size in bytes (None where the frames were not read)."""
        return None if self.frames is None else self.frames * PAGE_SIZE

    @property
    def within_target(self) -> bool | None:
        """Whether the frames agree with meminfo within :func:`within`'s tolerance."""
        if self.frames is None or self.before_bytes is None or self.after_bytes is None:
            return None
        return within(self.size_bytes, self.before_bytes, self.after_bytes)


class RamReport(namedtuple("RamReport", "frames uses lists ranges reconciled meminfo_before meminfo_after "
                                        "zone_free_pages free_marks notes seconds")):
    """A walk of every RAM frame: ``frames`` walked; ``uses`` {use: frames} (None
    where the frames cannot be read: without root); ``lists`` {use: {list: frames}};
    ``ranges`` the PFN ranges walked; ``reconciled`` a :class:`Reconciled` per line of
    :data:`RECONCILE`; ``meminfo_before``/``_after`` every meminfo field (bytes, huge
    page counts as counts); ``zone_free_pages`` the zones' own free count after the walk;
    ``free_marks`` ``"every page"`` or ``"first page"`` (how the kernel marks free
    blocks); ``notes`` what could not be known and how things were counted;
    ``seconds`` the walk's time."""

    __slots__ = ()


def within(value: int, before: int, after: int) -> bool:
    """Whether ``value`` lies within the larger of 2% and 8 MiB of the range the
    kernel's count spanned while it was walked (``before`` to ``after``)."""
    lo, hi = min(before, after), max(before, after)
    slack = max(TOLERANCE * hi, TOLERANCE_MIN_BYTES)
    return lo - slack <= value <= hi + slack


def walk_ram(progress=None) -> RamReport:
    """Walk every frame of System RAM once (``progress(n)`` after each ``n`` frames)
    and put each in one use.  Returns a :class:`RamReport`.  Without root the frames
    cannot be read: the report has meminfo alone, the uses None and a note.  Raises
    :class:`~pagewalk.errors.PagewalkError` where ``/proc/kpageflags`` fails otherwise."""
    before = _kernel_counts()
    started = time.monotonic()
    try:
        flags_file = KpageFile(KPAGEFLAGS)
    except AccessDenied:
        after = _kernel_counts()
        notes = ["frames are root's only (/proc/kpageflags): the uses are unknown; meminfo's totals stand alone"]
        return RamReport(0, None, None, [], _reconcile(None, before, after), before, after, procfs.zone_free_pages(),
                         None, notes, time.monotonic() - started)
    with flags_file:
        ranges = _ram_ranges(flags_file)
        counts, lists, walked = _walk(flags_file, ranges, heads_only=False, progress=progress)
        zone_free = procfs.zone_free_pages()
        free_marks = "every page"
        if zone_free and counts["free"] < HEADS_ONLY_BELOW * zone_free:
            free_marks = "first page"  # an older kernel: the blocks' other pages have no flag
            counts, lists, walked = _walk(flags_file, ranges, heads_only=True, progress=None)
    after = _kernel_counts()
    notes = _notes(counts, before, after, zone_free, free_marks)
    return RamReport(walked, counts, lists, ranges, _reconcile(counts, before, after), before, after, zone_free,
                     free_marks, notes, time.monotonic() - started)


def _kernel_counts() -> dict[str, int]:
    """Every meminfo field, and the zones' free pages in bytes (:data:`ZONE_FREE`)."""
    counts = procfs.meminfo_fields()
    zone_free = procfs.zone_free_pages()
    if zone_free is not None:
        counts[ZONE_FREE] = zone_free * PAGE_SIZE
    return counts


def _ram_ranges(flags_file: KpageFile) -> list[PfnRange]:
    """System RAM as iomem lists it, cut to the frames kpageflags has; the whole
    kpageflags range where iomem shows no RAM (it hides addresses from all but root)."""
    end = flags_file.end_pfn()
    ranges = [PfnRange(r.start_pfn, min(r.end_pfn, end)) for r in system_ram() if r.start_pfn < end]
    return ranges or [PfnRange(0, end)]


def _walk(flags_file: KpageFile, ranges: list[PfnRange], *, heads_only: bool, progress
          ) -> tuple[dict[str, int], dict[str, dict[str, int]], int]:
    """Frames per use, and per use and list, over ``ranges``; and the frames walked.

    The kernel's reads (60 to 90 ns a frame) come from a thread per CPU, a chunk each;
    each chunk's distinct flag values are counted in C (:func:`pagewalk.native.value_counts`:
    a machine has a few hundred among millions of frames), and the rules of
    :mod:`pagewalk.core.frames` are applied to each distinct value once.  A kernel that
    marks only a free block's first page needs each frame's neighbours: its chunks are
    classified frame by frame."""
    import numpy as np

    from .. import native
    from ..kernel.kpage import CHUNK_PFNS
    from ..parallel import ordered_map

    spans = [(pfn, min(CHUNK_PFNS, r.end_pfn - pfn)) for r in ranges for pfn in range(r.start_pfn, r.end_pfn, CHUNK_PFNS)]
    per_use = np.zeros(len(fr.USES), dtype=np.int64)
    per_list = {name: np.zeros(len(fr.USES), dtype=np.int64) for name in fr.LISTS}

    def add(use: np.ndarray, flags: np.ndarray, weights: np.ndarray | None) -> None:
        per_use[:] += np.bincount(use, weights=weights, minlength=len(fr.USES)).astype(np.int64)
        for name, mask in fr.list_masks(flags).items():
            w = None if weights is None else weights[mask]
            per_list[name][:] += np.bincount(use[mask], weights=w, minlength=len(fr.USES)).astype(np.int64)

    def read(span: tuple[int, int]):
        first, n = span
        flags = flags_file.read_range(first, n)
        if heads_only:
            use = fr.classify(flags)
            use[fr.free_tails(flags, first)] = fr.USES.index("free")
            return len(flags), (use, flags)
        counts: dict[int, int] = {}
        native.value_counts(flags, counts)
        return len(flags), counts

    walked = 0
    values: dict[int, int] = {}
    for n, got in ordered_map(read, spans):
        walked += n
        if heads_only:
            add(*got, None)
        else:
            for value, count in got.items():
                values[value] = values.get(value, 0) + count
        if progress is not None:
            progress(n)
    if values:
        flags = np.fromiter(values.keys(), dtype=np.uint64, count=len(values))
        weights = np.fromiter(values.values(), dtype=np.float64, count=len(values))
        add(fr.classify(flags), flags, weights)
    counts = dict(zip(fr.USES, per_use.tolist()))
    lists = {use: {name: int(per_list[name][k]) for name in fr.LISTS} for k, use in enumerate(fr.USES)}
    return counts, lists, walked


def _meminfo_bytes(fields: tuple[str, ...], taken: tuple[str, ...], meminfo: dict[str, int]) -> int | None:
    """The sum of meminfo ``fields`` less ``taken`` in bytes; ``Hugetlb`` (Linux 5.16+)
    made up from the pool's counts where absent; None where a field is missing."""
    info = dict(meminfo)
    if "Hugetlb" not in info and "HugePages_Total" in info:
        info["Hugetlb"] = info["HugePages_Total"] * info.get("Hugepagesize", 0)
    if "SecPageTables" not in info:
        info["SecPageTables"] = 0  # (Linux 6.0+)
    if any(f not in info for f in fields + taken):
        return None
    return sum(info[f] for f in fields) - sum(info[f] for f in taken)


def _reconcile(counts: dict[str, int] | None, before: dict[str, int], after: dict[str, int]) -> list[Reconciled]:
    lines = []
    for name, uses, fields, taken in RECONCILE:
        frames = None if counts is None else sum(counts[u] for u in uses)
        shown = fields + tuple("-" + t for t in taken)
        lines.append(Reconciled(name, uses, frames, shown, _meminfo_bytes(fields, taken, before),
                                _meminfo_bytes(fields, taken, after)))
    return lines


def _notes(counts: dict[str, int], before: dict[str, int], after: dict[str, int], zone_free: int | None,
           free_marks: str) -> list[str]:
    """What the reader should know to read the totals."""
    notes = []
    if free_marks == "first page":
        notes.append("this kernel marks only the first page of a free block: the blocks' other pages were found "
                     "from their alignment")
    if zone_free is not None:
        unset = after.get("MemFree", 0) // PAGE_SIZE - zone_free
        if unset > max(TOLERANCE * zone_free, TOLERANCE_MIN_BYTES // PAGE_SIZE):
            notes.append(f"meminfo's MemFree counts {unset * PAGE_SIZE >> 20} MiB more than the zones' free lists "
                         "hold: memory the kernel has not initialised yet (deferred or unaccepted), whose frames "
                         "read as 'no flags'")
    if counts.get("no flags"):
        known = {k: after.get(k, 0) for k in ("KernelStack", "VmallocUsed", "Percpu")}
        parts = ", ".join(f"{k} {v >> 20} MiB" for k, v in known.items())
        notes.append(f"'no flags' holds what the kernel allocated for itself and memory not initialised yet; "
                     f"meminfo's own counters of the first: {parts}")
    return notes
