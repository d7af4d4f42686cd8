"""The ``PAGEMAP_SCAN`` ioctl on a ``/proc/PID/pagemap`` fd (Linux 6.7+).

ABI (``include/uapi/linux/fs.h``): ``struct pm_scan_arg`` is 12 u64 (96 bytes):
size, flags, start, end, walk_end (out), vec, vec_len, max_pages,
category_inverted, category_mask, category_anyof_mask, return_mask.  The kernel
fills ``vec`` with ``struct page_region {start, end, categories}`` (3 u64),
merging neighbouring pages whose masked categories are equal, and returns how
many regions it wrote.  Holes between VMAs are never reported; ``VM_PFNMAP``
VMAs are skipped.

Kernel defect (seen on 6.18.44): with ``vec_len`` above 512 on a range that
yields more than 512 regions, ``walk_end`` can come back stale although the walk
finished, and a caller resuming from it counts pages twice.  So ``vec_len`` stays
at 512 and a call that fills fewer slots than ``vec_len`` ends the walk.

Works without privilege (it never returns PFNs) and is the one way an
unprivileged reader can tell the zero page apart (``PAGE_IS_PFNZERO``).
"""

from __future__ import annotations

import errno
import fcntl
import struct
from array import array
from collections.abc import Iterator

from .oserrors import translating
from .u64file import U64_MAX

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "PAGEMAP_SCAN", "PAGE_IS_WPALLOWED", "PAGE_IS_WRITTEN", "PAGE_IS_FILE", "PAGE_IS_PRESENT",
    "PAGE_IS_SWAPPED", "PAGE_IS_PFNZERO", "PAGE_IS_HUGE", "PAGE_IS_SOFT_DIRTY", "ZERO_HUGE_MASK",
    "zero_page", "huge_page", "CATEGORY_NAMES", "iter_page_regions", "ARG", "WALK_END_OFFSET", "supported",
    "categories_supported", "Scanner"
]

PAGEMAP_SCAN = 0xC0606610  # _IOWR('f', 16, struct pm_scan_arg)

PAGE_IS_WPALLOWED = 1 << 0
PAGE_IS_WRITTEN = 1 << 1
PAGE_IS_FILE = 1 << 2
PAGE_IS_PRESENT = 1 << 3
PAGE_IS_SWAPPED = 1 << 4
PAGE_IS_PFNZERO = 1 << 5
PAGE_IS_HUGE = 1 << 6
PAGE_IS_SOFT_DIRTY = 1 << 7  # 6.8
PAGE_IS_GUARD = 1 << 8  # 6.16

# The categories to ask for to tell zero-page and huge runs apart (see below)
ZERO_HUGE_MASK = PAGE_IS_PFNZERO | PAGE_IS_HUGE | PAGE_IS_PRESENT


def zero_page(categories):
    """Whether a region's ``categories`` (an int, or a numpy array of them, asked
    with ZERO_HUGE_MASK) are the zero page, the huge zero page included."""
    return (categories & PAGE_IS_PFNZERO) != 0


def huge_page(categories):
    """Whether a region's ``categories`` (as for :func:`zero_page`) are present
    pages mapped huge, the huge zero page not included."""
    return (categories & ZERO_HUGE_MASK) == PAGE_IS_HUGE | PAGE_IS_PRESENT


CATEGORY_NAMES = {
    PAGE_IS_WPALLOWED: "wpallowed",
    PAGE_IS_WRITTEN: "written",
    PAGE_IS_FILE: "file",
    PAGE_IS_PRESENT: "present",
    PAGE_IS_SWAPPED: "swapped",
    PAGE_IS_PFNZERO: "pfnzero",
    PAGE_IS_HUGE: "huge",
    PAGE_IS_SOFT_DIRTY: "soft_dirty",
    PAGE_IS_GUARD: "guard",
}

REGION = struct.Struct("<3Q")  # struct page_region {start, end, categories}


def iter_page_regions(data: bytes | memoryview):
    """Decode ``struct page_region`` records (3 little-endian u64 each): yields
    ``(start, end, categories)``, addresses in bytes (end exclusive)."""
    return REGION.iter_unpack(data)


ARG = struct.Struct("<12Q")
ARG_SIZE = ARG.size  # 96
WALK_END_OFFSET = 32
MAX_VEC_LEN = 512  # see the kernel defect in the module docstring


def _call(fd: int, start: int, end: int, vec_addr: int, vec_len: int, *, flags: int = 0,
          max_pages: int = 0, inverted: int = 0, mask: int = 0, anyof: int = 0,
          return_mask: int = 0) -> tuple[int, int]:
    """One PAGEMAP_SCAN ioctl over ``[start, end)`` (bytes); returns (regions written
    into ``vec_addr``, walk_end: the address the walk stopped at).  Raises OSError."""
    arg = bytearray(ARG.pack(ARG_SIZE, flags, start, end, 0, vec_addr, vec_len, max_pages,
                             inverted, mask, anyof, return_mask))
    count = fcntl.ioctl(fd, PAGEMAP_SCAN, arg, True)
    return count, struct.unpack_from("<Q", arg, WALK_END_OFFSET)[0]


def supported(fd: int) -> bool:
    """Whether this kernel has PAGEMAP_SCAN: a bad ``vec`` gives EFAULT only if the
    ioctl exists (the kernel selftests' probe); older kernels say EINVAL or ENOTTY."""
    try:
        _call(fd, 0, 0, U64_MAX, 1)  # a vec no process can map
    except OSError as exc:
        return exc.errno == errno.EFAULT
    return True


_accepted_categories: int | None = None


def categories_supported(fd: int) -> int:
    """The category bits this kernel accepts (EINVAL names an unknown bit).  A
    property of the kernel, so remembered once it is known; an fd whose process
    has gone cannot tell, and its answer (0) is not remembered."""
    global _accepted_categories
    if _accepted_categories is not None:
        return _accepted_categories
    if not supported(fd):
        return 0
    accepted = 0
    for bit in CATEGORY_NAMES:
        try:
            _call(fd, 0, 0, 0, 0, return_mask=bit)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                return 0  # not an answer about the kernel (the process may have gone)
            continue
        accepted |= bit
    _accepted_categories = accepted
    return accepted


class Scanner:
    """Repeated PAGEMAP_SCAN calls over one ``/proc/PID/pagemap`` fd with one reusable
    buffer of ``vec_len`` (at most :data:`MAX_VEC_LEN`) regions.  Its walks raise
    :class:`pagewalk.errors.PagewalkError` (``ProcessGone`` where ``pid`` exited)."""

    def __init__(self, fd: int, vec_len: int = MAX_VEC_LEN, *, pid: int | None = None) -> None:
        self.fd = fd
        self.pid = pid  # for errors: a process that exits mid-walk is ProcessGone, not an OSError
        self.vec_len = min(vec_len, MAX_VEC_LEN)
        # an array, not ctypes (1 ms of start-up): buffer_info() gives its address
        self._vec = array("Q", bytes(REGION.size * self.vec_len))
        self._addr = self._vec.buffer_info()[0]

    def _walk(self, start: int, end: int, mask: int, anyof: int, inverted: int,
              return_mask: int) -> Iterator[int]:
        """Call the ioctl until ``[start, end)`` is covered; yield how many regions
        each call left in the buffer."""
        while start < end:
            with translating(self.pid, f"/proc/{self.pid}/pagemap", started=True):
                count, walk_end = _call(self.fd, start, end, self._addr, self.vec_len, mask=mask,
                                        anyof=anyof, inverted=inverted, return_mask=return_mask)
            yield count
            if count < self.vec_len or walk_end <= start:
                return
            start = walk_end

    def regions(self, start: int, end: int, *, mask: int = 0, anyof: int = 0,
                inverted: int = 0, return_mask: int) -> Iterator[tuple[int, int, int]]:
        """Yield ``(start, end, categories & return_mask)`` of the matching pages in
        ``[start, end)``, in address order.  A region may be cut in two where one
        call ends and the next begins."""
        vec = memoryview(self._vec).cast("B")
        for count in self._walk(start, end, mask, anyof, inverted, return_mask):
            yield from iter_page_regions(vec[: REGION.size * count])

    def region_lists(self, start: int, end: int, *, mask: int = 0, anyof: int = 0,
                     inverted: int = 0, return_mask: int) -> tuple[list[int], list[int], list[int]]:
        """The matching regions as three lists (starts, ends, categories), with no
        numpy and no Python step per region while copying them out."""
        starts: list[int] = []
        ends: list[int] = []
        cats: list[int] = []
        for count in self._walk(start, end, mask, anyof, inverted, return_mask):
            flat = self._vec[: 3 * count]
            starts += flat[0::3]
            ends += flat[1::3]
            cats += flat[2::3]
        return starts, ends, cats

    def region_array(self, start: int, end: int, *, mask: int = 0, anyof: int = 0,
                     inverted: int = 0, return_mask: int) -> np.ndarray:
        """All matching regions as an ``(n, 3)`` numpy array of start, end, categories."""
        import numpy as np

        vec = np.frombuffer(self._vec, dtype=np.uint64).reshape(-1, 3)
        parts = [vec[:count].copy() for count in self._walk(start, end, mask, anyof, inverted, return_mask)]
        return np.concatenate(parts) if parts else np.empty((0, 3), dtype=np.uint64)
