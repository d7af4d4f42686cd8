"""Idle page tracking: ``/sys/kernel/mm/page_idle/bitmap``, one bit a PFN
(mm/page_idle.c; CONFIG_IDLE_PAGE_TRACKING, root only)."""

from __future__ import annotations

import os

from ..errors import Unsupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    import numpy as np


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
            raise Unsupported(f"cannot mark pages idle: {IDLE_BITMAP} is writable by root only") from None

    def mark(self, pfns: np.ndarray) -> None:
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
        os.close(self.fd)
