"""Facts about this machine and this reader that every command needs.

Each function answers one question from the kernel directly (most cache the
answer for the life of the process).  Reads ``/proc/self/pagemap`` (fs/proc/task_mmu.c),
``/proc/self/status`` (fs/proc/array.c) and sysfs choice files such as
``/sys/kernel/mm/transparent_hugepage/enabled`` (mm/huge_memory.c).  None imports numpy.
"""

from __future__ import annotations

import functools
import os
import struct

from ..errors import PagewalkError
from .pagemap import PAGE_SHIFT, PAGE_SIZE, PM_PFRAME_MASK, PM_PRESENT, PM_SOFT_DIRTY, PagemapFile
from .procfs import read_status, read_text

__all__ = [
    "pfn_visible", "CAP_SYS_ADMIN", "zero_pfns", "kernel_release", "bracketed_choice", "parse_choice",
    "reuse_freed_memory", "soft_dirty_supported", "readable", "frames_readable", "UFFD_USER_MODE_ONLY",
    "uffd_wp_async"
]


def _self_entry(vaddr: int) -> int | None:
    """This process's pagemap entry of address ``vaddr``; None if unreadable."""
    try:
        with PagemapFile(os.getpid()) as own:
            entries = own.entries(vaddr >> PAGE_SHIFT, 1)
    except PagewalkError:
        return None
    return entries[0] if entries else None


@functools.cache
def pfn_visible() -> bool:
    """Whether pagemap shows this reader real PFNs (it needs CAP_SYS_ADMIN in the
    initial user namespace).  Asked of the kernel, not guessed from the uid: the
    entry of a page this process just wrote has a nonzero PFN exactly when PFNs
    are shown."""
    probe = bytearray(PAGE_SIZE)
    probe[0] = 1
    entry = _self_entry(id(probe))  # CPython: id() is the object's address, surely present
    if entry is None or not entry & PM_PRESENT:
        return _has_cap_sys_admin()
    return bool(entry & PM_PFRAME_MASK)


CAP_SYS_ADMIN = 21  # include/uapi/linux/capability.h


def _has_cap_sys_admin() -> bool:
    """CAP_SYS_ADMIN in this process's effective set (``CapEff`` of
    ``/proc/self/status``); where that cannot be read, whether it runs as root."""
    status = read_status("self")
    if status is None or status.cap_effective is None:
        return os.geteuid() == 0
    return bool(status.cap_effective >> CAP_SYS_ADMIN & 1)


@functools.cache
def zero_pfns() -> frozenset[int]:
    """PFNs of the shared zero page and of the huge zero page (if THP uses one),
    found by reading pages of a fresh anonymous mapping of our own.  Empty when
    PFNs are hidden from this reader."""
    if not pfn_visible():
        return frozenset()
    import ctypes  # (here: only where PFNs are visible and the zero page is asked)
    import mmap

    def address(m: mmap.mmap) -> int:
        anchor = ctypes.c_char.from_buffer(m)
        try:
            return ctypes.addressof(anchor)
        finally:
            del anchor

    found: set[int] = set()
    small = mmap.mmap(-1, PAGE_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        _ = small[0]  # a read fault on private anonymous memory maps the zero page
        entry = _self_entry(address(small))
        if entry is not None and entry & PM_PRESENT:
            found.add(entry & PM_PFRAME_MASK)
    finally:
        small.close()
    hpage = 2 << 20  # PMD size on x86-64
    big = mmap.mmap(-1, 2 * hpage, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        base = address(big)
        aligned = (base + hpage - 1) & ~(hpage - 1)
        try:
            big.madvise(14, aligned - base, hpage)  # MADV_HUGEPAGE
            _ = big[aligned - base]  # maps the huge zero page where THP uses one
        except (OSError, ValueError):
            pass
        entry = _self_entry(aligned)
        if entry is not None and entry & PM_PRESENT and entry & PM_PFRAME_MASK not in found:
            pfn = entry & PM_PFRAME_MASK
            found.update(range(pfn, pfn + (hpage >> PAGE_SHIFT)))
    finally:
        big.close()
    return frozenset(found)


def kernel_release() -> str:
    """The running kernel's release (``uname -r``), such as ``6.8.0-45-generic``."""
    return os.uname().release


def bracketed_choice(path: str) -> str | None:
    """The selected value of the sysfs choice file ``path`` (:func:`parse_choice`);
    None where it cannot be read."""
    text = read_text(path)
    return None if text is None else parse_choice(text)


def parse_choice(text: str) -> str:
    """The selected value of a sysfs choice file's text, the word in brackets of
    ``always [madvise] never`` (mm/huge_memory.c); the whole text, stripped, where
    no word is bracketed."""
    for word in text.split():
        if word.startswith("["):
            return word.strip("[]")
    return text.strip()


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc's mallopt parameters


@functools.cache
def reuse_freed_memory(max_bytes: int = 64 << 20) -> None:
    """Let glibc keep freed blocks of up to ``max_bytes`` on the heap for reuse
    (``mallopt`` M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, and M_ARENA_MAX 1).

    By default glibc serves each large block (numpy's per-chunk temporaries) with a
    fresh mmap and unmaps it when freed, so every chunk page-faults its temporaries
    in again; kept on the heap, the next chunk reuses the same, already mapped
    memory.  Reading threads allocate from that one heap too, rather than each from
    an arena of its own.  Returns None; a no-op off glibc."""
    import ctypes  # (about 2 ms: only for the bulk commands that call this)

    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, max_bytes)
        libc.mallopt(_M_TRIM_THRESHOLD, 2 * max_bytes)
        libc.mallopt(_M_ARENA_MAX, 1)
    except (OSError, AttributeError):
        pass


@functools.cache
def soft_dirty_supported() -> bool:
    """Whether this kernel has soft-dirty bits (CONFIG_MEM_SOFT_DIRTY): a page this
    process has just written is soft-dirty in pagemap (bit 55) exactly then, since
    marking a PTE dirty marks it soft-dirty too.  One pread, no imports."""
    probe = bytearray(PAGE_SIZE)
    probe[0] = 1  # the object was just written, its header page surely present and dirty
    entry = _self_entry(id(probe))
    return entry is not None and bool(entry & PM_PRESENT) and bool(entry & PM_SOFT_DIRTY)


def readable(path: str) -> tuple[bool, str]:
    """Whether the first entry of ``path`` can be read, and how to say so:
    ``(True, "readable")`` or ``(False, "permission denied")`` (the error, lowercase)."""
    try:
        with open(path, "rb", buffering=0) as f:
            f.read(8)
        return True, "readable"
    except OSError as exc:
        return False, os.strerror(exc.errno or 0).lower()


def frames_readable(*, counts: bool = False) -> bool:
    """Whether this reader sees frames: PFNs in pagemap (:func:`pfn_visible`) and a
    readable ``/proc/kpageflags`` (and ``/proc/kpagecount`` with ``counts``), the
    per-frame files being root's only (fs/proc/page.c)."""
    files = ("/proc/kpageflags", "/proc/kpagecount") if counts else ("/proc/kpageflags",)
    return pfn_visible() and all(os.access(path, os.R_OK) for path in files)


UFFDIO_API = 0xC018AA3F
UFFD_API = 0xAA
UFFD_FEATURE_WP_ASYNC = 1 << 15
UFFD_USER_MODE_ONLY = 1
NR_USERFAULTFD = 323  # x86-64


def uffd_wp_async() -> tuple[bool, str]:
    """Whether userfaultfd offers asynchronous write-protection (UFFD_FEATURE_WP_ASYNC,
    fs/userfaultfd.c), which PAGEMAP_SCAN's written-page tracking needs, and the
    features word or the error as text.  Opens a userfaultfd (user-mode faults only)
    and asks UFFDIO_API; x86-64 syscall number."""
    import fcntl  # (here: doctor's alone)

    import ctypes  # (about 2 ms: only for doctor)

    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(NR_USERFAULTFD, os.O_CLOEXEC | UFFD_USER_MODE_ONLY)
    if fd < 0:
        return False, f"userfaultfd: {os.strerror(ctypes.get_errno()).lower()}"
    try:
        arg = bytearray(struct.pack("<QQQ", UFFD_API, 0, 0))
        fcntl.ioctl(fd, UFFDIO_API, arg, True)
        features = struct.unpack_from("<Q", arg, 8)[0]
        return bool(features & UFFD_FEATURE_WP_ASYNC), f"features 0x{features:x}"
    except OSError as exc:
        return False, f"UFFDIO_API: {os.strerror(exc.errno or 0).lower()}"
    finally:
        os.close(fd)
