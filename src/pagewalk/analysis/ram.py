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

import contextlib
import time
from collections import Counter, namedtuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    import numpy as np

from ..core import frames as fr
from ..errors import AccessDenied
from ..kernel import memcg, procfs
from ..kernel.kpage import KPAGECGROUP, KPAGECOUNT, KPAGEFLAGS, KpageFile
from ..kernel.pagemap import PAGE_SIZE
from ..kernel.physmem import PfnRange, system_ram
from ..runs import merge_equal

__all__ = ["Reconciled", "RamReport", "KeptFrames", "CgroupUse", "RECONCILE", "CGROUP_RECONCILE", "ZONE_FREE",
           "TOLERANCE", "TOLERANCE_MIN_BYTES", "CGROUP_TOLERANCE_MIN_BYTES", "walk_ram", "within"]

TOLERANCE = 0.02  # issue 16's targets: within 2% of the kernel's count,
TOLERANCE_MIN_BYTES = 8 << 20  # or 8 MiB, whichever is larger
CGROUP_TOLERANCE_MIN_BYTES = 4 << 20  # per cgroup: 2% or 4 MiB
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


class Reconciled(namedtuple("Reconciled", "name uses frames fields before_bytes after_bytes min_bytes",
                            defaults=(TOLERANCE_MIN_BYTES,))):
    """One line of the reconciliation: the ``uses`` named ``name`` (``frames`` of them
    walked) and the kernel's ``fields`` that count the same (meminfo's, a leading ``-``
    taken away; or a cgroup's memory.stat), read before and after the walk, in bytes
    (None where the kernel lacks them); ``min_bytes`` the smallest slack allowed."""

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
        return within(self.size_bytes, self.before_bytes, self.after_bytes, self.min_bytes)


class RamReport(namedtuple("RamReport", "frames uses lists ranges reconciled meminfo_before meminfo_after "
                                        "zone_free_pages free_marks notes seconds cgroups kept")):
    """A walk of every RAM frame: ``frames`` walked; ``uses`` {use: frames} (None
    where the frames cannot be read: without root); ``lists`` {use: {list: frames}};
    ``ranges`` the PFN ranges walked; ``reconciled`` a :class:`Reconciled` per line of
    :data:`RECONCILE`; ``meminfo_before``/``_after`` every meminfo field (bytes, huge
    page counts as counts); ``zone_free_pages`` the zones' own free count after the walk;
    ``free_marks`` ``"every page"`` or ``"first page"`` (how the kernel marks free
    blocks); ``notes`` what could not be known and how things were counted;
    ``seconds`` the walk's time; ``cgroups`` and ``kept`` (a :class:`KeptFrames`):
    see :func:`walk_ram` (None unless asked)."""

    __slots__ = ()


class KeptFrames(namedtuple("KeptFrames", "first uses cgroups flags mapcounts")):
    """Every frame walked, as runs of frames alike, in the order of the report's
    ``ranges`` (frame positions 0, 1, ... across them): ``first`` (int64) the position
    where each run starts (a run lasts to the next one's start, the last to the
    frames walked); the run's use (uint8, an index into
    :data:`pagewalk.core.frames.USES`), and where asked its cgroup inode, raw
    kpageflags and map count (uint64; None where not asked).  Neighbouring runs may
    be alike (where chunks met).  Runs, not frames: a machine's frames come in long
    runs of one kind, and a terabyte is 268 million frames."""

    __slots__ = ()

    def lengths(self, frames: int):
        """Each run's length in frames (``frames``: all walked)."""
        import numpy as np

        return np.diff(np.append(self.first, frames))


class CgroupUse(namedtuple("CgroupUse", "inode path uses reconciled")):
    """The frames charged to one memory cgroup: its directory's ``inode`` (as
    /proc/kpagecgroup gives it; 0: charged to none), its ``path`` in the hierarchy
    (None for inode 0), ``uses`` {use: frames}, and ``reconciled`` (a
    :class:`Reconciled` per line of :data:`CGROUP_RECONCILE` beside its memory.stat;
    empty where that cannot be read)."""

    __slots__ = ()


def within(value: int, before: int, after: int, min_bytes: int = TOLERANCE_MIN_BYTES) -> bool:
    """Whether ``value`` lies within the larger of 2% and ``min_bytes`` of the range
    the kernel's count spanned while it was walked (``before`` to ``after``)."""
    lo, hi = min(before, after), max(before, after)
    slack = max(TOLERANCE * hi, min_bytes)
    return lo - slack <= value <= hi + slack


def walk_ram(progress=None, *, by_cgroup: bool = False, keep_frames: bool = False, keep_flags: bool = False,
             cgroup_stats: bool = True) -> RamReport:
    """Walk every frame of System RAM once (``progress(n)`` after each ``n`` frames)
    and put each in one use.  Returns a :class:`RamReport`; with ``by_cgroup`` its
    ``cgroups`` (:class:`CgroupUse` per memory cgroup, from ``/proc/kpagecgroup``,
    beside each cgroup's memory.stat), with ``keep_frames`` its ``kept``
    (:class:`KeptFrames`: every frame's use, and its cgroup with ``by_cgroup``, its
    flags and map count with ``keep_flags``, as runs).  Without root the frames cannot be
    read: the report has meminfo alone, the uses None and a note.  Raises
    :class:`~pagewalk.errors.PagewalkError` where a kpage file fails otherwise
    (:class:`~pagewalk.errors.Unsupported`: a kernel without memory cgroups asked
    ``by_cgroup``).  ``cgroup_stats`` False: the cgroups are named, their memory.stat
    not read (their ``reconciled`` empty)."""
    # This process is counted too, and its memory should not move while the kernel's
    # counts are read around the walk: numpy imported first (the command also has glibc
    # keep freed blocks: probes.reuse_freed_memory)
    import numpy  # noqa: F401

    before = _kernel_counts()
    started = time.monotonic()
    try:
        flags_file = KpageFile(KPAGEFLAGS)
    except AccessDenied:
        after = _kernel_counts()
        notes = ["frames are root's only (/proc/kpageflags): the uses are unknown"
                 + (" and so are the cgroups'" if by_cgroup else "") + "; meminfo's totals stand alone"]
        return RamReport(0, None, None, [], _reconcile(None, before, after), before, after, _zone_free(after),
                         None, notes, time.monotonic() - started, None, None)
    cgroup_file = count_file = hierarchy = None
    names: dict[int, str] = {}
    stats_before: dict[str, dict[str, int] | None] = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(flags_file)
        if by_cgroup:
            cgroup_file = stack.enter_context(KpageFile(KPAGECGROUP))
            hierarchy = memcg.find_hierarchy()
            if hierarchy is not None:
                names = memcg.cgroup_paths(hierarchy)
                if cgroup_stats:
                    stats_before = memcg.read_stats(hierarchy, names.values())
        if keep_frames and keep_flags:
            count_file = stack.enter_context(KpageFile(KPAGECOUNT))
        ranges = _ram_ranges(flags_file)
        keep = (keep_frames, keep_frames and keep_flags, count_file)
        walk = _walk(flags_file, ranges, heads_only=False, progress=progress, cgroup_file=cgroup_file, keep=keep)
        # the kernel's counts again at once: this process's own memory, counted by the
        # walk, shrinks as the walk's buffers go
        after = _kernel_counts()
        zone_free = _zone_free(after)
        free_marks = "every page"
        if zone_free and walk.per_use[fr.USES.index("free")] < HEADS_ONLY_BELOW * zone_free:
            free_marks = "first page"  # an older kernel: the blocks' other pages have no flag
            walk = _walk(flags_file, ranges, heads_only=True, progress=None, cgroup_file=cgroup_file, keep=keep)
            after = _kernel_counts()
        stats_after: dict[str, dict[str, int] | None] = {}
        if hierarchy is not None:
            names = {**names, **memcg.cgroup_paths(hierarchy)}  # (and those made during the walk)
            if cgroup_stats:
                stats_after = memcg.read_stats(hierarchy, names.values())
    counts, lists = walk.counts()
    notes = _notes(counts, before, after, zone_free, free_marks)
    cgroups = None
    if by_cgroup:
        cgroups = _cgroup_uses(walk.cgroups, hierarchy, names, stats_before, stats_after)
        if hierarchy is None:
            notes.append("no memory cgroup hierarchy is mounted: cgroups are named by inode number only")
        elif len(names) >= memcg.MAX_CGROUPS:
            notes.append(f"more than {memcg.MAX_CGROUPS} cgroups: those beyond are named by inode number only, "
                         "and their parents' own counts in memory.stat include them")
    return RamReport(walk.walked, counts, lists, ranges, _reconcile(counts, before, after), before, after, zone_free,
                     free_marks, notes, time.monotonic() - started, cgroups, walk.kept() if keep_frames else None)


def _cgroup_uses(pairs: dict[int, int], hierarchy: memcg.Hierarchy | None, names: dict[int, str],
                 stats_before: dict[str, dict[str, int] | None], stats_after: dict[str, dict[str, int] | None]
                 ) -> list[CgroupUse]:
    """The frames per (cgroup inode, use) of the walk as a :class:`CgroupUse` per
    cgroup, biggest first, each beside its memory.stat (read before and after)."""
    per_inode: dict[int, dict[str, int]] = {}
    for key, frames in pairs.items():
        uses = per_inode.setdefault(key >> 5, dict.fromkeys(fr.USES, 0))
        uses[fr.USES[key & 31]] += frames
    children: dict[str, list[str]] = {}
    for path in set(names.values()):  # (a path removed and made again during the walk: once)
        if path != "/":
            children.setdefault(path.rsplit("/", 1)[0] or "/", []).append(path)
    out = []
    for inode, uses in per_inode.items():
        path = None if inode == 0 else names.get(inode, f"? (inode {inode}: not in the hierarchy seen)")
        checked = []
        if hierarchy is not None and path in stats_after:
            checked = [Reconciled(name, group, sum(uses[u] for u in group), (fields[hierarchy.version], "- children's"),
                                  *(_own_bytes(stats, path, children.get(path, ()), fields[hierarchy.version])
                                    for stats in (stats_before, stats_after)), CGROUP_TOLERANCE_MIN_BYTES)
                       for name, group, fields in CGROUP_RECONCILE]
        out.append(CgroupUse(inode, path, uses, checked))
    out.sort(key=lambda c: -sum(c.uses.values()))
    return out


# Per cgroup, the uses set beside memory.stat: (name, uses, the field per cgroup version),
# each a count of the cgroup's subtree: v1's total_*, v2's own.  memory.stat's
# cache/file is the cgroup's NR_FILE_PAGES: files and shared memory; the swap cache
# is counted per node there, per cgroup only as NR_SWAPCACHE (mm/swap_state.c).
CGROUP_RECONCILE = (
    ("anonymous", ("anonymous", "KSM"), {1: "total_rss", 2: "anon"}),
    ("page cache + shared memory", ("page cache", "shared memory"), {1: "total_cache", 2: "file"}),
    ("shared memory", ("shared memory",), {1: "total_shmem", 2: "shmem"}),
)


def _own_bytes(stats: dict[str, dict[str, int] | None], path: str, children: list[str], field: str) -> int | None:
    """A cgroup's own count of ``field``: its subtree's less its live children's
    subtrees.  What is left is its own pages and those of its removed children: a
    removed cgroup's pages stay charged to it, and /proc/kpagecgroup names the nearest
    live ancestor (mm/memcontrol.c ``page_cgroup_ino``), so they are the parent's
    here.  None where the cgroup's memory.stat cannot be read (or lacks ``field``)."""
    own = stats.get(path)
    if own is None or field not in own:
        return None
    return own[field] - sum((stats.get(c) or {}).get(field, 0) for c in children)


def _kernel_counts() -> dict[str, int]:
    """Every meminfo field, and the zones' free pages in bytes (:data:`ZONE_FREE`)."""
    counts = procfs.meminfo_fields()
    zone_free = procfs.zone_free_pages()
    if zone_free is not None:
        counts[ZONE_FREE] = zone_free * PAGE_SIZE
    return counts


def _zone_free(counts: dict[str, int]) -> int | None:
    """The zones' free pages of :func:`_kernel_counts` (None where zoneinfo is unreadable)."""
    return None if ZONE_FREE not in counts else counts[ZONE_FREE] // PAGE_SIZE


def _ram_ranges(flags_file: KpageFile) -> list[PfnRange]:
    """System RAM as iomem lists it, cut to the frames kpageflags has; the whole
    kpageflags range where iomem shows no RAM (it hides addresses from all but root)."""
    end = flags_file.end_pfn()
    ranges = [PfnRange(r.start_pfn, min(r.end_pfn, end)) for r in system_ram() if r.start_pfn < end]
    return ranges or [PfnRange(0, end)]


class _Walk:
    """What one pass over the frames found: frames per use, per use and list, and
    ``walked``; with ``cgroups`` {(cgroup inode, use index): frames}; and what
    :meth:`kept` joins: the use, cgroup inode, flags, map count of every frame
    (where kept), chunk by chunk, in PFN order."""

    def __init__(self) -> None:
        import numpy as np

        self.per_use = np.zeros(len(fr.USES), dtype=np.int64)
        self.per_list = np.zeros((len(fr.LISTS), len(fr.USES)), dtype=np.int64)
        self.walked = 0
        self.cgroups: Counter[int] = Counter()
        self.chunks: dict[str, list] = {name: [] for name in KeptFrames._fields}

    def kept(self) -> KeptFrames:
        import numpy as np

        return KeptFrames(*(np.concatenate(parts) if parts and parts[0] is not None else None
                            for parts in self.chunks.values()))

    def counts(self) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        uses = dict(zip(fr.USES, self.per_use.tolist()))
        lists = {use: {name: int(self.per_list[i][k]) for i, name in enumerate(fr.LISTS)}
                 for k, use in enumerate(fr.USES)}
        return uses, lists


def _tally(use: np.ndarray, flags: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Frames per use, and per list and use, of frames whose uses are ``use`` (each
    counted ``weights`` times where given)."""
    import numpy as np

    n = len(fr.USES)
    per_use = np.bincount(use, weights=weights, minlength=n).astype(np.int64)
    per_list = np.zeros((len(fr.LISTS), n), dtype=np.int64)
    for i, mask in enumerate(fr.list_masks(flags).values()):
        per_list[i] = np.bincount(use[mask], weights=None if weights is None else weights[mask], minlength=n)
    return per_use, per_list


def _walk(flags_file: KpageFile, ranges: list[PfnRange], *, heads_only: bool, progress,
          cgroup_file: KpageFile | None = None, keep: tuple = (False, False, None)) -> _Walk:
    """One pass over the frames of ``ranges``: see :class:`_Walk`.

    The kernel's reads (60 to 90 ns a frame) come from a thread per CPU, a chunk each.
    Each chunk's distinct flag values (with ``cgroup_file``: distinct pairs of flags
    and cgroup) are counted in C (:func:`pagewalk.native.value_counts`: a machine has a
    few hundred among millions of frames) and the rules of :mod:`pagewalk.core.frames`
    are applied to each distinct value once.  A kernel that marks only a free block's
    first page needs each frame's neighbours, and ``keep`` each frame's use: then
    chunks are classified frame by frame (numpy).  ``keep``: (keep each frame's
    use and cgroup, keep its flags, the open kpagecount to read its map count from)."""
    import numpy as np

    from .. import native
    from ..kernel.kpage import CHUNK_PFNS
    from ..parallel import ordered_map

    spans, position = [], 0
    for r in ranges:
        for pfn in range(r.start_pfn, r.end_pfn, CHUNK_PFNS):
            n = min(CHUNK_PFNS, r.end_pfn - pfn)
            spans.append((pfn, n, position))
            position += n
    keep_uses, keep_flags, count_file = keep
    by_frame = heads_only or keep_uses

    def read(span: tuple[int, int, int]):
        first, n, position = span
        flags = flags_file.read_range(first, n)
        if not by_frame:  # {flags: frames}, or {(flags, cgroup inode): frames}
            counts: Counter = Counter()
            native.value_counts(flags, counts, None if cgroup_file is None else cgroup_file.read_range(first, n))
            return n, counts, None
        use = fr.classify(flags)
        if heads_only:
            use[fr.free_tails(flags, first)] = fr.USES.index("free")
        cgroups = None if cgroup_file is None else cgroup_file.read_range(first, n)
        pairs: Counter[int] = Counter()
        if cgroups is not None:  # (inode, use) as one u64: inodes of kernfs stay far below 2**59
            native.value_counts((cgroups << np.uint64(5)) | use, pairs)
        runs = None
        if keep_uses:  # as runs of alike frames: (where each starts, each column's value)
            counts = None if count_file is None else count_file.read_range(first, n)
            columns = (use, cgroups, flags if keep_flags else None, counts)
            heads, values, _ = merge_equal([c for c in columns if c is not None])
            found = iter(values)
            runs = (heads + position, *(None if c is None else next(found) for c in columns))
        return n, _tally(use, flags, None), (pairs, runs)

    walk = _Walk()
    values: Counter = Counter()
    for n, got, frames in ordered_map(read, spans):
        walk.walked += n
        if frames is None:
            values.update(got)
        else:
            walk.per_use += got[0]
            walk.per_list += got[1]
            pairs, runs = frames
            walk.cgroups.update(pairs)
            if runs is not None:
                for parts, part in zip(walk.chunks.values(), runs):
                    parts.append(part)
        if progress is not None:
            progress(n)
    if values:
        paired = cgroup_file is not None
        keys = list(values)
        flags = np.fromiter((k[0] for k in keys) if paired else keys, dtype=np.uint64, count=len(keys))
        weights = np.fromiter(values.values(), dtype=np.float64, count=len(values))
        use = fr.classify(flags)
        per_use, per_list = _tally(use, flags, weights)
        walk.per_use += per_use
        walk.per_list += per_list
        if paired:
            for (_, inode), u, frames in zip(keys, use.tolist(), values.values()):
                walk.cgroups[(inode << 5) | u] += frames
    return walk


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
    if counts.get("hugetlb") and "HugePages_Free" in after:
        pages, size = after.get("HugePages_Total", 0), after.get("Hugepagesize", 0)
        free = after["HugePages_Free"]
        notes.append(f"hugetlb: a pool of {pages} pages of {size >> 10} KiB (meminfo), {pages - free} in use and "
                     f"{free} free (the pool's other sizes: /sys/kernel/mm/hugepages)")
    if counts.get("no flags"):
        known = {k: after.get(k, 0) for k in ("KernelStack", "VmallocUsed", "Percpu")}
        parts = ", ".join(f"{k} {v >> 20} MiB" for k, v in known.items())
        notes.append(f"'no flags' holds what the kernel allocated for itself and memory not initialised yet; "
                     f"meminfo's own counters of the first: {parts}")
    return notes
