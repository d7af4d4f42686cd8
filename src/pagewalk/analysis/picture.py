"""A process's address space as a picture: the state of every page, laid out to draw.

The mappings are laid end to end in address order with the gaps between them
left out: page ``i`` of the picture is page ``i - first[m]`` of mapping ``m``.
Each page has one class (:func:`pagewalk.core.states.classify`, in the words of
:mod:`pagewalk.core.states`): present pages are ``anonymous``, ``file`` (file-backed or
shared), ``huge`` or ``zero``; the others ``swapped``, ``shmem_swapped``,
``guard`` or ``untouched``.  Drawing needs only counts per state over ranges of pages
(:meth:`AddressSpace.counts`), from which a pixel standing for many pages takes the
colour of its mix.  The physical side places the process's frames in the RAM
ranges of ``/proc/iomem``, with NUMA nodes from sysfs.

This module computes (numpy only); :mod:`pagewalk.output.picture` draws PNG and SVG
with matplotlib and :mod:`pagewalk.output.picture_html` writes the HTML page.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ..core import states
from ..kernel import probes, procfs
from ..kernel.kpage import KPAGEFLAGS, KpageFile
from ..kernel.maps import mapping_index
from ..kernel.pagemap import PAGE_SHIFT
from ..kernel.physmem import node_blocks, system_ram

__all__ = [
    "STATES", "UNTOUCHED", "ANONYMOUS", "FILE", "HUGE", "ZERO", "SWAPPED", "SHMEM_SWAPPED", "GUARD",
    "UNKNOWN", "PRESENT_STATES", "LABELS", "COLORS", "PALETTE", "Band", "AddressSpace", "first_pages",
    "mix", "ram_ranges", "physical_raster"
]

STATES = states.CLASSES
UNTOUCHED, ANONYMOUS, FILE, HUGE, ZERO, SWAPPED, SHMEM_SWAPPED, GUARD, UNKNOWN = range(len(STATES))
PRESENT_STATES = tuple(STATES.index(s) for s in states.PRESENT_CLASSES)
LABELS = tuple(states.CLASS_LABELS[s] for s in STATES)
# Colours told apart also by people with the common colour-vision deficiencies
# (Okabe-Ito), untouched a light grey and guard a dark one.
COLORS = ("#e6e6e6", "#0072b2", "#009e73", "#cc79a7", "#f0e442", "#d55e00", "#e69f00", "#333333", "#b3b3b3")
PALETTE = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in COLORS], dtype=np.float64)
MAX_BANDS = 40  # bands drawn with a legible label each; smaller mappings share bands beyond this

Band = namedtuple("Band", "first pages lo hi")  # picture pages [first, first + pages); mappings [lo, hi)
RamRange = namedtuple("RamRange", "start_pfn end_pfn node")


class AddressSpace:
    """The pages of one process at one moment, in picture order (see the module doc).

    ``index``: picture page of each populated page (sorted); ``state``, ``pfn`` (the
    frame, or for swapped pages the swap offset; -1 where unknown), ``raw`` (the
    pagemap entry) and ``kpageflags`` (None unless read) of each.  ``unknown``:
    the shared-memory mappings whose swap could not be looked up, whose empty
    pages count as ``unknown``, not ``untouched``."""

    def __init__(self, pid: int, command: str, mappings: list, index: np.ndarray, state: np.ndarray,
                 pfn: np.ndarray, raw: np.ndarray, kpageflags: np.ndarray | None, pfn_visible: bool,
                 unknown: list = ()) -> None:
        self.pid, self.command, self.mappings = pid, command, mappings
        self.first = first_pages(mappings)
        self.total_pages = int(self.first[-1])
        self.index, self.state, self.pfn, self.raw, self.kpageflags = index, state, pfn, raw, kpageflags
        self.pfn_visible = pfn_visible
        self._by_state = [index[(state == s)] for s in range(len(STATES))]
        at = {m: i for i, m in enumerate(mappings)}
        self.unknown_ranges = [(int(self.first[at[m]]), int(self.first[at[m] + 1])) for m in unknown if m in at]

    @classmethod
    def take(cls, process) -> AddressSpace:
        """Read ``process`` (a :class:`pagewalk.Process`) now; as root also the
        kpageflags of its frames."""
        if probes.frames_readable():
            with KpageFile(KPAGEFLAGS) as f:
                table = process.resident_table(kpageflags=f, shmem_swap=True)
            process.check_alive("the picture")
        else:
            table = process.resident_table(shmem_swap=True)
        # every row lies inside the mappings the table was read with ([vsyscall] has none)
        maps = [m for m in table.mappings if not m.is_vsyscall]
        # picture page = the mapping's first picture page + the page's place in it
        shift = first_pages(maps)[:-1] - np.array([m.start >> PAGE_SHIFT for m in maps], dtype=np.int64)
        index = shift[mapping_index(maps, table.vaddr)] + (table.vaddr >> np.uint64(PAGE_SHIFT)).astype(np.int64)
        present = table.present
        state = states.classify(present, table.file, table.huge, table.zero, table.swapped, table.guard,
                                table.shmem_swapped)
        pfn = np.where(present, table.pfn, np.where(table.swapped, table.swap_offset, -1))
        return cls(process.pid, procfs.command_name(process.pid), maps, index, state, pfn, table.raw,
                   table.kpageflags, process.pfn_visible, table.shmem_unknown_mappings)

    # -- counting ----------------------------------------------------------------------
    def counts(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Pages in each state within picture pages ``[lo, hi)`` (one row per range)."""
        lo, hi = np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)
        out = np.zeros((len(lo), len(STATES)), dtype=np.int64)
        for s in range(1, len(STATES)):
            where = self._by_state[s]
            out[:, s] = np.searchsorted(where, hi) - np.searchsorted(where, lo)
        out[:, UNTOUCHED] = hi - lo - out[:, 1:].sum(axis=1)
        for first, end in self.unknown_ranges:  # their empty pages may be in swap: unknown, not untouched
            a, b = np.maximum(lo, first), np.minimum(hi, end)
            empty = np.maximum(b - a, 0)
            for s in range(1, len(STATES) - 1):
                where = self._by_state[s]
                empty -= np.where(b > a, np.searchsorted(where, b) - np.searchsorted(where, a), 0)
            out[:, UNKNOWN] += empty
            out[:, UNTOUCHED] -= empty
        return out

    def totals(self) -> dict[str, int]:
        """Pages in each state over the whole address space."""
        row = self.counts(np.array([0]), np.array([self.total_pages]))[0]
        return dict(zip(STATES, row.tolist()))

    def frames(self) -> tuple[np.ndarray, np.ndarray]:
        """The process's frames (sorted, repeats removed) and the state of each."""
        held = np.isin(self.state, PRESENT_STATES) & (self.pfn >= 0)
        pfns, first = np.unique(self.pfn[held], return_index=True)
        return pfns, self.state[held][first]

    # -- layout ------------------------------------------------------------------------
    def bands(self, max_bands: int = MAX_BANDS) -> list[Band]:
        """Bands to draw: one a mapping, or, beyond ``max_bands`` mappings, the largest
        mappings alone and the runs of smaller ones between them sharing a band."""
        n = len(self.mappings)
        sizes = np.diff(self.first)
        if n <= max_bands:
            alone = np.ones(n, dtype=bool)
        else:
            alone = np.zeros(n, dtype=bool)
            alone[np.argsort(-sizes, kind="stable")[: max_bands // 2]] = True
        out: list[Band] = []
        i = 0
        while i < n:
            j = i + 1
            if not alone[i]:
                while j < n and not alone[j]:
                    j += 1
            out.append(Band(int(self.first[i]), int(self.first[j] - self.first[i]), i, j))
            i = j
        return out

    def gap_bytes(self, band: Band, following: Band) -> int:
        """Unmapped bytes between the last mapping of ``band`` and the first of ``following``."""
        return self.mappings[following.lo].start - self.mappings[band.hi - 1].end

    def raster(self, first: int, pages: int, width: int, height: int) -> np.ndarray:
        """``pages`` picture pages from ``first`` drawn row by row into ``height`` x
        ``width`` pixels (RGB uint8): a pixel standing for several pages takes the
        colour of their state mix; with fewer pages than pixels, a page spans several."""
        cells = width * height
        p = np.arange(cells + 1, dtype=np.int64)
        edge = first + p * pages // cells
        lo, hi = edge[:-1], np.maximum(edge[1:], edge[:-1] + 1)
        return mix(self.counts(lo, hi)).reshape(height, width, 3)


def first_pages(mappings: list) -> np.ndarray:
    """The picture page of each mapping's first page, and the total at the end."""
    sizes = np.array([(m.end - m.start) >> PAGE_SHIFT for m in mappings], dtype=np.int64)
    return np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)


def mix(counts: np.ndarray) -> np.ndarray:
    """RGB (uint8) of each row of state counts: the colours weighted by the counts."""
    total = np.maximum(counts.sum(axis=1, keepdims=True), 1)
    return np.rint(counts @ PALETTE / total).astype(np.uint8)


# -- the physical side --------------------------------------------------------------

def ram_ranges() -> list[RamRange]:
    """The machine's RAM as PFN ranges (``System RAM`` in ``/proc/iomem``; only root
    sees its addresses), each with its NUMA node (None where sysfs does not say)."""
    ranges = system_ram()
    if not ranges or all(end <= 1 for _, end in ranges):
        return []  # addresses shown as zeros: not root
    nodes = node_blocks()
    out = []
    for start, end in ranges:
        pieces = [(max(start, a), min(end, b), node) for a, b, node in nodes if a < end and b > start]
        if not pieces:
            out.append(RamRange(start, end, None))
            continue
        at = start
        for a, b, node in sorted(pieces):
            if a > at:
                out.append(RamRange(at, a, None))
            out.append(RamRange(a, b, node))
            at = b
        if at < end:
            out.append(RamRange(at, end, None))
    return _merge_adjacent(out)


def _merge_adjacent(ranges: list[RamRange]) -> list[RamRange]:
    out: list[RamRange] = []
    for r in ranges:
        if out and out[-1].end_pfn == r.start_pfn and out[-1].node == r.node:
            out[-1] = RamRange(out[-1].start_pfn, r.end_pfn, r.node)
        else:
            out.append(r)
    return out


def physical_raster(space: AddressSpace, ram: list[RamRange], width: int, height: int) -> np.ndarray:
    """RAM (its ranges end to end) drawn row by row into ``height`` x ``width``
    pixels: a pixel holding any of the process's frames takes their colours, the
    stronger the more of its frames are the process's; others are untouched grey."""
    starts = np.array([r.start_pfn for r in ram], dtype=np.int64)
    first = np.concatenate(([0], np.cumsum([r.end_pfn - r.start_pfn for r in ram])))
    total = int(first[-1])
    pfns, states = space.frames()
    r = np.searchsorted(starts, pfns, side="right") - 1
    known = (r >= 0) & (pfns < np.array([x.end_pfn for x in ram], dtype=np.int64)[np.maximum(r, 0)])
    position = first[r[known]] + pfns[known] - starts[r[known]]  # sorted, as pfns are
    states = states[known]
    cells = width * height
    edge = np.arange(cells + 1, dtype=np.int64) * total // cells
    lo, hi = edge[:-1], np.maximum(edge[1:], edge[:-1] + 1)
    counts = np.zeros((cells, len(STATES)), dtype=np.int64)
    for s in PRESENT_STATES:
        where = position[states == s]
        counts[:, s] = np.searchsorted(where, hi) - np.searchsorted(where, lo)
    held = counts.sum(axis=1)
    share = held / (hi - lo)
    strength = np.where(held > 0, 0.6 + 0.4 * share, 0.0)[:, None]  # one frame is enough to show
    colour = np.where(held[:, None] > 0, counts @ PALETTE / np.maximum(held, 1)[:, None], PALETTE[UNTOUCHED])
    rgb = strength * colour + (1 - strength) * PALETTE[UNTOUCHED]
    return np.rint(rgb).astype(np.uint8).reshape(height, width, 3)
