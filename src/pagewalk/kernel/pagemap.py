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

from ..errors import ProcessGone
from .config import kernel_config
from .oserrors import translating
from .u64file import ENTRY_BYTES, U64File, read_entries_into

__all__ = [
    "PAGE_SIZE", "PAGE_SHIFT", "PM_PFRAME_MASK", "PFN_LIMIT", "PM_SOFT_DIRTY", "PM_MMAP_EXCLUSIVE",
    "PM_UFFD_WP", "PM_GUARD_REGION", "PM_FILE", "PM_SWAP", "PM_PRESENT", "SWAP_TYPE_BITS", "SWAP_TYPE_MASK",
    "SWP_PTE_MARKER", "PTE_MARKER_GUARD", "max_swapfiles", "PagemapFile"
]

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PAGE_SHIFT = PAGE_SIZE.bit_length() - 1

PM_PFRAME_BITS = 55
PM_PFRAME_MASK = (1 << PM_PFRAME_BITS) - 1
PFN_LIMIT = 1 << PM_PFRAME_BITS  # no PFN reaches it: no file indexed by PFN goes this far
PM_SOFT_DIRTY = 1 << 55
PM_MMAP_EXCLUSIVE = 1 << 56
PM_UFFD_WP = 1 << 57
PM_GUARD_REGION = 1 << 58
PM_FILE = 1 << 61
PM_SWAP = 1 << 62
PM_PRESENT = 1 << 63

SWAP_TYPE_BITS = 5  # MAX_SWAPFILES_SHIFT
SWAP_TYPE_MASK = (1 << SWAP_TYPE_BITS) - 1
SWP_PTE_MARKER = 31
PTE_MARKER_GUARD = 4  # include/linux/swapops.h (uffd-wp's marker shows as PM_UFFD_WP instead)

_max_swapfiles: int | None = None


def max_swapfiles() -> int:
    """``MAX_SWAPFILES`` of this kernel: swap types from it up are not swap devices.

    Special types are allocated downward from 31: the PTE marker (31), then 3
    device-private types (CONFIG_DEVICE_PRIVATE), 3 migration types
    (CONFIG_MIGRATION) and 1 hwpoison type (CONFIG_MEMORY_FAILURE).  Read from
    /proc/config.gz where the kernel offers it; otherwise 24, the smallest value
    any configuration gives (so no special entry is ever taken for swap)."""
    global _max_swapfiles
    if _max_swapfiles is None:
        config = kernel_config()
        _max_swapfiles = 32 - 1 - 3 - 3 - 1 if config is None else (
            32 - 1 - 3 * ("CONFIG_DEVICE_PRIVATE" in config) - 3 * ("CONFIG_MIGRATION" in config)
            - ("CONFIG_MEMORY_FAILURE" in config))
    return _max_swapfiles


class PagemapFile(U64File):
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
        with translating(self.pid, self.path, started=True):
            got = read_entries_into(self.fd, buf, vpn)
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

    def entries(self, vpn: int, count: int) -> list[int]:
        """``count`` raw entries from virtual page ``vpn`` as Python ints (for small
        lookups that should not pay for numpy; :class:`pagewalk.core.translate.Translation` decodes one)."""
        data = self.read(vpn, count)
        return list(struct.unpack(f"<{len(data) // ENTRY_BYTES}Q", data))
