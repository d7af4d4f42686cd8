"""Idle page tracking: ``/sys/kernel/mm/page_idle/bitmap``, one bit a PFN, read and
written a u64 word (64 PFNs) at a time at byte ``8 * (pfn // 64)`` (mm/page_idle.c
``page_idle_bitmap_read``/``_write``; CONFIG_IDLE_PAGE_TRACKING, root only).  Writing
a 1 marks a frame idle; the kernel clears the bit when the page is accessed."""

from __future__ import annotations

import os

from ..errors import AccessDenied, Unsupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    import numpy as np

__all__ = ["IDLE_BITMAP", "IdleMarker", "read_idle", "idle_bits"]


IDLE_BITMAP = "/sys/kernel/mm/page_idle/bitmap"


class IdleMarker:
    """``-i``: set the idle bit of each frame in ``/sys/kernel/mm/page_idle/bitmap``
    (one bit a PFN, written a 64-bit word at a time; runs of words in one write)."""

    def __init__(self) -> None:
        try:
            self.fd = os.open(IDLE_BITMAP, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise Unsupported(f"cannot mark pages idle: {IDLE_BITMAP} does not exist (this kernel was built "
                              "without CONFIG_IDLE_PAGE_TRACKING)") from None
        except PermissionError:
            raise AccessDenied(IDLE_BITMAP, msg=f"cannot mark pages idle: {IDLE_BITMAP} is writable by root only"
                               ) from None

    def mark(self, pfns: np.ndarray) -> None:
        """Set the idle bit of each frame of ``pfns`` (a uint64 array, any order,
        repeats allowed).  Raises OSError as :func:`os.pwrite` does."""
        import numpy as np

        if len(pfns) == 0:
            return
        pfns = np.unique(pfns.astype(np.uint64))
        words = pfns >> np.uint64(6)
        bits = np.left_shift(np.uint64(1), pfns & np.uint64(63))
        starts = np.concatenate(([0], np.flatnonzero(np.diff(words)) + 1))
        values = np.bitwise_or.reduceat(bits, starts)
        uwords = words[starts].astype(np.int64)
        breaks = np.concatenate(([0], np.flatnonzero(np.diff(uwords) != 1) + 1, [len(uwords)]))
        for a, b in zip(breaks[:-1].tolist(), breaks[1:].tolist()):
            os.pwrite(self.fd, values[a:b].tobytes(), int(uwords[a]) * 8)

    def close(self) -> None:
        """Close the bitmap."""
        os.close(self.fd)


def read_idle(pfns: np.ndarray) -> np.ndarray:
    """Whether each frame of ``pfns`` (a uint64 array) is still idle: its bit in the
    bitmap, read in one ``pread`` over the words from the lowest to the highest.
    Returns a bool array of ``pfns``' length.  Raises OSError where the bitmap cannot
    be read (absent, or not root)."""
    import numpy as np

    fd = os.open(IDLE_BITMAP, os.O_RDONLY)
    try:
        words = pfns >> np.uint64(6)
        lo = int(words.min()) if len(words) else 0
        hi = int(words.max()) + 1 if len(words) else 0
        data = os.pread(fd, (hi - lo) * 8, lo * 8) if hi > lo else b""
    finally:
        os.close(fd)
    return idle_bits(data, lo, pfns)


def idle_bits(data: bytes, first_word: int, pfns: np.ndarray) -> np.ndarray:
    """Decode bitmap words ``data`` (u64 words from word ``first_word`` on): the bit of
    each frame of ``pfns`` (a uint64 array, each within the words), as a bool array."""
    import numpy as np

    words = np.frombuffer(data, dtype=np.uint64)
    index = ((pfns >> np.uint64(6)) - np.uint64(first_word)).astype(np.int64)
    return ((words[index] >> (pfns & np.uint64(63))) & np.uint64(1)).astype(bool)
