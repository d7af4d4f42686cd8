"""Files of little-endian u64 entries read at ``8 * index``: ``/proc/PID/pagemap``
(indexed by virtual page, fs/proc/task_mmu.c) and ``/proc/kpageflags``,
``/proc/kpagecount``, ``/proc/kpagecgroup`` (indexed by PFN, fs/proc/page.c).

The base class :class:`U64File` holds what they share: the descriptor, closing it,
use as a context manager, and bulk reads of runs of entries.  No numpy here: a
single-address lookup stays cheap.
"""

from __future__ import annotations

import os

__all__ = ["ENTRY_BYTES", "U64_MAX", "U64File", "read_entries_into"]

ENTRY_BYTES = 8  # one u64 entry
U64_MAX = (1 << 64) - 1  # the largest u64 (ULONG_MAX on 64-bit kernels)


def read_entries_into(fd: int, buf: memoryview, index: int) -> int:
    """Fill the byte buffer ``buf`` with u64 entries from entry ``index`` of the file
    open as ``fd``, in as few ``preadv`` calls as the kernel allows.

    Returns the number of entries read: fewer than ``len(buf) // 8`` at the end of
    the file (a 0-byte read).  Raises OSError as :func:`os.preadv` does."""
    wanted = len(buf) // ENTRY_BYTES
    got = 0
    while got < wanted:
        n = os.preadv(fd, [buf[got * ENTRY_BYTES :]], (index + got) * ENTRY_BYTES)
        if n <= 0:
            break
        got += n // ENTRY_BYTES
    return got


class U64File:
    """An open file of u64 entries: ``fd`` (-1 once closed) and ``path``.

    Subclasses open ``fd`` in their ``__init__``; :meth:`close` is idempotent, and
    the object is its own context manager (closed on leaving the ``with``)."""

    fd: int = -1
    path: str = ""

    def close(self) -> None:
        """Close the descriptor (again: nothing)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
