"""What a physical frame is used for, decided once, from its kpageflags (``pagewalk ram``).

Each frame of RAM gets exactly one use, the first of these that applies (the bits are
those of include/uapi/linux/kernel-page-flags.h, computed in fs/proc/page.c
``stable_page_flags``):

* ``hwpoison`` (bit 19) and ``offline`` (bit 23: ballooned or logically offline);
* ``free``: in the buddy allocator (bit 10).  Linux 6.18 sets the bit on every page
  of a free block (seen here: the frames with it add up to the zones' ``nr_free_pages``);
  kernels that mark only a block's first page are recognised by :func:`free_tails`;
* ``hugetlb``: a page of the hugetlb pool (bit 17), in use or free;
* ``slab`` (bit 7) and ``page tables`` (bit 26): kernel memory with a flag of its own;
  both come before the anonymous bit, which slab pages can show (kernel.md 2.2);
* ``zero page`` (bit 24): the shared zero page and the huge zero page;
* ``KSM``: anonymous pages merged by KSM (bit 21);
* ``anonymous``: anonymous pages mapped by a process (bits 12 and 11: meminfo's
  ``AnonPages``); ``swap cache``: anonymous pages mapped by none (bit 12 without 11:
  in the swap cache, or on their way out);
* ``shared memory``: swap-backed pages that are not anonymous (bit 14 without 12):
  tmpfs, /dev/shm, memfd, SysV and shared anonymous memory (meminfo's ``Shmem``);
* ``page cache``: other pages of files: on an LRU list, mapped, dirty, under writeback
  or with private data (bits 5, 11, 4, 8, 35);
* ``kernel reserved`` (bit 32, a "kernel hacking" bit): memory the kernel set aside;
* ``no flags``: frames with no flag at all: pages the kernel allocated for itself
  (vmalloc, stacks, per-CPU data, drivers), and on kernels that initialise memory
  lazily, free memory whose page structures are not set up yet; their flags cannot
  tell these apart (``ram`` breaks the use down with meminfo's own counters);
* ``kernel other``: any other combination of flags.

Lists (as RAMMap shows them), counted within each use: ``active`` (bit 6),
``inactive`` (on an LRU list, bit 5, not active), ``unevictable`` (18), ``referenced``
(2), ``dirty`` (4), ``writeback`` (8), ``mapped`` (11); and ``thp`` (22): the frames of
transparent huge pages (anonymous, shared memory or page cache).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    import numpy as np

__all__ = ["USES", "LISTS", "classify", "list_masks", "free_tails"]

KPF = {"referenced": 2, "uptodate": 3, "dirty": 4, "lru": 5, "active": 6, "slab": 7, "writeback": 8, "buddy": 10,
       "mmap": 11, "anon": 12, "swapcache": 13, "swapbacked": 14, "huge": 17, "unevictable": 18, "hwpoison": 19,
       "ksm": 21, "thp": 22, "offline": 23, "zero_page": 24, "pgtable": 26, "reserved": 32, "private": 35}

USES = ("hwpoison", "offline", "free", "hugetlb", "slab", "page tables", "zero page", "KSM", "anonymous",
        "swap cache", "shared memory", "page cache", "kernel reserved", "no flags", "kernel other")
LISTS = ("active", "inactive", "unevictable", "referenced", "dirty", "writeback", "mapped", "thp")


def _bit(flags: np.ndarray, name: str) -> np.ndarray:
    import numpy as np

    return (flags & np.uint64(1 << KPF[name])) != 0


def classify(flags: np.ndarray) -> np.ndarray:
    """The use of each frame (an index into :data:`USES`, uint8 array) from its raw
    kpageflags (uint64 array): the first use in :data:`USES` whose rule holds."""
    import numpy as np

    anon, mapped = _bit(flags, "anon"), _bit(flags, "mmap")
    file_page = _bit(flags, "lru") | mapped | _bit(flags, "dirty") | _bit(flags, "writeback") | _bit(flags, "private")
    rules = (
        _bit(flags, "hwpoison"), _bit(flags, "offline"), _bit(flags, "buddy"), _bit(flags, "huge"),
        _bit(flags, "slab"), _bit(flags, "pgtable"), _bit(flags, "zero_page"), anon & _bit(flags, "ksm"),
        anon & mapped, anon, _bit(flags, "swapbacked"), file_page, _bit(flags, "reserved"), flags == 0,
        np.ones(len(flags), dtype=bool),
    )
    return np.select(rules, np.arange(len(USES), dtype=np.uint8), 0).astype(np.uint8)


def list_masks(flags: np.ndarray) -> dict[str, np.ndarray]:
    """Each list of :data:`LISTS` as a bool array over the frames."""
    lru, active = _bit(flags, "lru"), _bit(flags, "active")
    return {"active": active, "inactive": lru & ~active, "unevictable": _bit(flags, "unevictable"),
            "referenced": _bit(flags, "referenced"), "dirty": _bit(flags, "dirty"),
            "writeback": _bit(flags, "writeback"), "mapped": _bit(flags, "mmap"), "thp": _bit(flags, "thp")}


def free_tails(flags: np.ndarray, first_pfn: int, max_order: int = 10) -> np.ndarray:
    """For kernels that mark only a free block's first page as buddy: the frames after
    each marked one that belong to its block (bool array).  A block of order k starts
    at a multiple of 2**k, so a first page at PFN p is followed by at most
    2**min(trailing zeros of p, max_order) - 1 pages of its block, and each of them has
    no flag; the block is taken as the largest power of two that this and the flagless
    frames after it allow, which counts a flagless kernel page right after a small
    block as free (rare; the zones' counts say how far off).  A step per free block:
    only for kernels that mark first pages (:mod:`pagewalk.analysis.ram` tells)."""
    import numpy as np

    n = len(flags)
    out = np.zeros(n, dtype=bool)
    heads = np.flatnonzero(_bit(flags, "buddy"))
    if not len(heads):
        return out
    pfn = heads.astype(np.int64) + first_pfn
    lowest = np.where(pfn == 0, 1 << max_order, pfn & -pfn)  # PFN 0 is aligned to any block
    align = np.minimum(lowest, 1 << max_order)  # the largest block the PFN can start
    zero = flags == 0
    for h, size in zip(heads.tolist(), align.tolist()):  # a step per free block, not per page
        run = zero[h + 1 : min(n, h + size)]
        flagless = len(run) if run.all() else int(np.argmin(run))
        block = 1 << (flagless + 1).bit_length() - 1  # the largest power of two that fits
        out[h + 1 : h + block] = True
    return out
