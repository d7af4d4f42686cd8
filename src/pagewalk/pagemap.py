"""``/proc/PID/pagemap``: one little-endian u64 per virtual page.

Bit layout (``fs/proc/task_mmu.c``, Documentation/admin-guide/mm/pagemap.rst)::

    63 present   62 swap entry   61 file or shared-anon   58 guard marker
    57 uffd-wp   56 exclusively mapped   55 soft-dirty
    0-54 PFN if present; if a swap entry: bits 0-4 type, 5-54 offset

A "swap entry" (bit 62) is any non-present, non-empty PTE: real swap, but also
migration entries and PTE markers (guard regions, uffd-wp markers on unpopulated
pages).  Markers use swap type 31.  A reader without CAP_SYS_ADMIN (checked
against the credentials of whoever *opened* the file) gets PFNs and swap
type/offset as zero; every flag bit is still reported.

File semantics: entry for ``vaddr`` at offset ``vaddr // page_size * 8``;
offsets and sizes must be multiples of 8; the walk ends at the end of user
space (``TASK_SIZE``), so a read there is short and a read past it (``[vsyscall]``)
returns 0 bytes.  A read also returns 0 bytes once the process's memory is gone.

This module does not import numpy: a single-address lookup stays cheap.
"""

from __future__ import annotations

import os
import struct

from .errors import ProcessGone, translating

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PAGE_SHIFT = PAGE_SIZE.bit_length() - 1
ENTRY_BYTES = 8

PM_PFRAME_BITS = 55
PM_PFRAME_MASK = (1 << PM_PFRAME_BITS) - 1
PM_SOFT_DIRTY = 1 << 55
PM_MMAP_EXCLUSIVE = 1 << 56
PM_UFFD_WP = 1 << 57
PM_GUARD_REGION = 1 << 58
PM_FILE = 1 << 61
PM_SWAP = 1 << 62
PM_PRESENT = 1 << 63

SWAP_TYPE_BITS = 5  # MAX_SWAPFILES_SHIFT
SWAP_TYPE_MASK = (1 << SWAP_TYPE_BITS) - 1
# Swap types are allocated downward from 31 for non-swap entries: the PTE marker
# (31), then up to 3 device-private, 3 migration and 1 hwpoison types.  Real swap
# devices are numbered from 0 and cannot reach the top eight.
SWP_PTE_MARKER = 31
FIRST_SPECIAL_SWAP_TYPE = 32 - 8
PTE_MARKER_UFFD_WP = 1
PTE_MARKER_POISONED = 2
PTE_MARKER_GUARD = 4

_U64 = struct.Struct("<Q")


def is_swapped(entry: int, pfn_visible: bool) -> bool:
    """A real swap entry: not a PTE marker (guard, uffd-wp) and not a migration entry.

    Unprivileged readers cannot see the swap type, so a swap entry with the
    uffd-wp bit is taken for a uffd-wp marker (the common case: write-protected
    unpopulated pages) and a migration entry counts as swapped.
    """
    if not entry & PM_SWAP or entry & PM_GUARD_REGION:
        return False
    if pfn_visible:
        return (entry & SWAP_TYPE_MASK) < FIRST_SPECIAL_SWAP_TYPE
    return not entry & PM_UFFD_WP


def is_guard(entry: int, pfn_visible: bool) -> bool:
    """A guard-region marker (bit 58 since 6.15; before, marker type 31 with offset bit 4)."""
    if entry & PM_GUARD_REGION:
        return True
    return bool(
        pfn_visible
        and entry & PM_SWAP
        and entry & SWAP_TYPE_MASK == SWP_PTE_MARKER
        and (entry & PM_PFRAME_MASK) >> SWAP_TYPE_BITS & PTE_MARKER_GUARD
    )


class PagemapFile:
    """An open ``/proc/PID/pagemap`` with bulk, bounded reads.

    Every read is a ``pread`` (or ``preadv`` into a caller's buffer) of many
    entries at once.  A 0-byte read is told apart: past the end of user space
    (``[vsyscall]``) it means "no entries"; when the process's memory is gone it
    raises :class:`ProcessGone`.
    """

    def __init__(self, pid: int, *, started: bool = False) -> None:
        self.pid = pid
        self.path = f"/proc/{pid}/pagemap"
        with translating(pid, self.path, started=started):
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> PagemapFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def alive(self) -> bool:
        """True while the process still has its memory (entry 0, a hole, reads as 8 bytes)."""
        try:
            return len(os.pread(self.fd, ENTRY_BYTES, 0)) == ENTRY_BYTES
        except OSError:
            return False

    def _check_short(self, got_entries: int, wanted: int) -> None:
        # A short or empty read is the end of user space, unless the memory is gone.
        if got_entries < wanted and not self.alive():
            raise ProcessGone(self.pid)

    def read_into(self, buf: memoryview, vpn: int) -> int:
        """Fill ``buf`` (a writable byte buffer, length a multiple of 8) with the
        entries from virtual page ``vpn`` on; return how many entries were read."""
        wanted = len(buf) // ENTRY_BYTES
        got = 0
        with translating(self.pid, self.path, started=True):
            while got < wanted:
                n = os.preadv(self.fd, [buf[got * ENTRY_BYTES :]], (vpn + got) * ENTRY_BYTES)
                if n <= 0:
                    break
                got += n // ENTRY_BYTES
        self._check_short(got, wanted)
        return got

    def read(self, vpn: int, count: int) -> bytes:
        """``count`` raw entries from virtual page ``vpn`` (fewer at the end of user space)."""
        chunks = []
        got = 0
        with translating(self.pid, self.path, started=True):
            while got < count:
                data = os.pread(self.fd, (count - got) * ENTRY_BYTES, (vpn + got) * ENTRY_BYTES)
                if not data:
                    break
                chunks.append(data)
                got += len(data) // ENTRY_BYTES
        self._check_short(got, count)
        return b"".join(chunks)

    def entry(self, vaddr: int) -> int | None:
        """The raw entry of the page holding ``vaddr``; None above the end of user space."""
        data = self.read(vaddr >> PAGE_SHIFT, 1)
        return _U64.unpack(data)[0] if data else None

    def entries(self, vpn: int, count: int) -> list[int]:
        """Raw entries as Python ints (for small lookups that should not pay for numpy)."""
        data = self.read(vpn, count)
        return list(struct.unpack(f"<{len(data) // ENTRY_BYTES}Q", data))
