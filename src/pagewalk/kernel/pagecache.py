"""Page-cache residency of files: which pages are cached, and their frames.

``mincore`` on a shared read-only mapping of the file says which pages are in the
cache (any user may ask).  Frames need more: each cached page is mapped into this
reader's page table by one plain load from it, as page-types -f does, this process's
own pagemap is read for the mapping, and the mapping is dropped again before the
caller reads kpageflags and kpagecount, so those show the file's other users, not
this reader.

Looking must not change what is seen.  A load that finds its page in
the cache maps it (``filemap_map_pages``, ``filemap_fault``) without marking it
accessed, where ``MADV_POPULATE_READ`` would (GUP with FOLL_TOUCH).  The mapping is
``MADV_RANDOM`` while the pages are loaded: a miss reads no neighbours in (fault-around
still maps cached neighbours, never reading them), and the young bits of this mapping
are not handed to the pages when it is unmapped (``vma_has_recency``);
``MADV_SEQUENTIAL`` before ``munmap`` says the same to kernels before 6.3, which only
checked that one.  Only pages mincore reported are loaded; one that left the cache in
between is read back from disk, which the major-fault count tells, and callers say.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import stat as stat_module
from array import array
from collections.abc import Iterator

from ..errors import AccessDenied, InvalidArgument, PagewalkError
from .oserrors import from_oserror
from ..runs import byte_runs
from .pagemap import PAGE_SHIFT, PAGE_SIZE, PagemapFile

__all__ = [
    "PROT_READ", "MAP_SHARED", "MADV_RANDOM", "MADV_SEQUENTIAL", "open_file", "file_error", "file_pages",
    "load_pages", "residency", "cached_frames", "read_back_note", "regular_files", "open_noatime"
]

MAPPED_PAGES_MAX = 1 << 16  # file pages mapped at a time: one mapping of at most 256 MiB
PROT_READ, MAP_SHARED = 0x1, 0x01
MADV_RANDOM, MADV_SEQUENTIAL = 1, 2
MAP_FAILED = ctypes.c_void_p(-1).value
IOV_MAX = 1024  # iovecs one pwritev takes (UIO_MAXIOV)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
_libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_libc.pwritev.restype = ctypes.c_ssize_t
_libc.pwritev.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_long)


def open_file(path: str, follow_symlink: bool = False) -> int:
    """A read-only descriptor of the file ``path``, opened without changing its access
    time where allowed (O_NOATIME needs ownership); a symbolic link is refused unless
    ``follow_symlink``.  Raises :class:`AccessDenied` or :class:`InvalidArgument`
    (:func:`file_error`)."""
    try:
        return open_noatime(path, os.O_RDONLY | os.O_CLOEXEC | (0 if follow_symlink else os.O_NOFOLLOW))
    except PermissionError:
        raise AccessDenied(path, "the file is not readable by this user") from None
    except OSError as exc:
        raise file_error(exc, path) from None


def open_noatime(name: str, flags: int, dir_fd: int | None = None) -> int:
    """``os.open`` with ``O_NOATIME`` (reading for pagewalk leaves the access time as it
    was), or without it where the kernel refuses it (it needs ownership).  Raises
    OSError."""
    try:
        return os.open(name, flags | os.O_NOATIME, dir_fd=dir_fd)
    except PermissionError:
        return os.open(name, flags, dir_fd=dir_fd)


def file_error(exc: OSError, path: str) -> PagewalkError:
    """:func:`from_oserror` in the words of a file the user named: a missing file or
    a symbolic link not followed is an :class:`InvalidArgument`."""
    return from_oserror(exc, None, path, denied="not readable by this user",
                        missing=InvalidArgument(f"no such file: {path}"),
                        loop=InvalidArgument(f"{path} is a symbolic link (not followed)"))


def file_pages(size_bytes: int) -> int:
    """Pages of a file of this size, the partial last page included."""
    return (size_bytes + PAGE_SIZE - 1) >> PAGE_SHIFT


def load_pages(addresses: array) -> tuple[bytearray, int]:
    """Read one byte at each address (an ``array('Q')``) as a plain load from this
    process would, and return ``(loaded: a byte each address, 1 or 0; major faults
    meanwhile)``.

    The kernel does the reading: ``pwritev`` of one-byte iovecs into a memfd copies from
    each address, which faults its page in exactly as a load does (no GUP, nothing marked
    accessed).  An address past the end of a file that shrank meanwhile fails the copy
    (EFAULT) instead of killing this process with SIGBUS, and reads as not loaded.  A
    major fault is a page that was not in the cache and was read from disk (or, rarely,
    a fault retried after waiting for a locked page)."""
    n = len(addresses)
    loaded = bytearray(b"\x01" * n)
    if not n:
        return loaded, 0
    iov = array("Q", bytes(16 * n))  # struct iovec {base, len}, built without a step per address
    iov[0::2] = addresses
    iov[1::2] = array("Q", [1]) * n
    base = iov.buffer_info()[0]
    sink = os.memfd_create("pagewalk-load", os.MFD_CLOEXEC)
    try:
        faults_before = resource.getrusage(resource.RUSAGE_THREAD).ru_majflt
        done = 0
        while done < n:
            copied = _libc.pwritev(sink, base + done * 16, min(IOV_MAX, n - done), 0)
            if copied > 0:
                done += copied  # one byte per address: the first `copied` were read
                continue
            err = ctypes.get_errno() if copied < 0 else errno.EFAULT
            if err == errno.EINTR:
                continue
            if err != errno.EFAULT:
                raise PagewalkError(f"cannot read the mapped file: {os.strerror(err)}")
            loaded[done] = 0  # past the end of the file now
            done += 1
        return loaded, resource.getrusage(resource.RUSAGE_THREAD).ru_majflt - faults_before
    finally:
        os.close(sink)


_LOW_BIT = bytes(i & 1 for i in range(256))  # mincore's byte a page: bit 0 says cached


class _Mapped:
    """A read-only shared mapping of ``count`` file pages from ``first``, with
    readahead off (see the module's docstring)."""

    def __init__(self, fd: int, first: int, count: int, path: str) -> None:
        self.length = count << PAGE_SHIFT
        addr = _libc.mmap(None, self.length, PROT_READ, MAP_SHARED, fd, first << PAGE_SHIFT)
        if addr in (None, MAP_FAILED):
            raise file_error(OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno())), path)
        self.addr = addr
        _libc.madvise(self.addr, self.length, MADV_RANDOM)

    def cached(self) -> bytes:
        """A byte a page: 1 where the page is in the page cache (mincore), else 0."""
        vec = bytearray(self.length >> PAGE_SHIFT)
        if _libc.mincore(self.addr, self.length, (ctypes.c_char * len(vec)).from_buffer(vec)) != 0:
            raise PagewalkError(f"mincore failed: {os.strerror(ctypes.get_errno())}")
        return bytes(vec).translate(_LOW_BIT)

    def map_in(self, cached: bytes) -> tuple[bytes, int]:
        """Map in the pages ``cached`` marks by one load from each; return the marks
        less the pages past a shrunk file's end, and the pages read back."""
        addresses = array("Q")
        for a, b in byte_runs(cached):
            addresses.extend(range(self.addr + (a << PAGE_SHIFT), self.addr + (b << PAGE_SHIFT), PAGE_SIZE))
        loaded, read_back = load_pages(addresses)
        if loaded.count(0):  # a file that shrank: rare, so a step per page that failed
            kept = bytearray(cached)
            for i in (k for k, ok in enumerate(loaded) if not ok):
                kept[(addresses[i] - self.addr) >> PAGE_SHIFT] = 0
            cached = bytes(kept)
        return cached, read_back

    def close(self) -> None:
        if self.addr:
            _libc.madvise(self.addr, self.length, MADV_SEQUENTIAL)  # see the module's docstring
            _libc.munmap(self.addr, self.length)
            self.addr = 0


def residency(fd: int, first: int, count: int, path: str) -> Iterator[tuple[int, bytes]]:
    """``(first page, cached)`` over ``count`` file pages from page ``first`` of the
    file open as ``fd``, ``cached`` a byte a page (1: in the page cache), in chunks of
    at most :data:`MAPPED_PAGES_MAX` pages (``mincore`` of each chunk mapped in turn).
    Raises :class:`PagewalkError` where the file cannot be mapped (:func:`file_error`)
    or mincore fails."""
    end = first + count
    while first < end:
        n = min(MAPPED_PAGES_MAX, end - first)
        m = _Mapped(fd, first, n, path)
        try:
            yield first, m.cached()
        finally:
            m.close()
        first += n


def cached_frames(fd: int, first: int, count: int, path: str, self_pagemap: PagemapFile
                  ) -> Iterator[tuple[int, bytes, bytes, int]]:
    """``(first page, cached, pagemap entries, pages read back)`` over ``count`` pages
    from ``first``, in chunks (``cached`` a byte a page, as :func:`residency` gives it;
    the entries u64, native order); the mapping is gone before each chunk is yielded.
    Pages read back left the cache between mincore and their load and were read from
    disk again: say so (:func:`read_back_note`)."""
    end = first + count
    while first < end:
        n = min(MAPPED_PAGES_MAX, end - first)
        m = _Mapped(fd, first, n, path)
        try:
            cached, read_back = m.map_in(m.cached())
            entries = self_pagemap.read(m.addr >> PAGE_SHIFT, n)
        finally:
            m.close()
        yield first, cached, entries, read_back
        first += n


def read_back_note(path: str, pages: int) -> str:
    """The note for pages that reading ``path`` brought back into the cache."""
    return (f"note: {path}: {pages} page(s) left the page cache while being read and were read back from disk "
            "(major faults)")


def regular_files(path: str, follow_symlink: bool = False) -> Iterator[tuple[str, os.stat_result]]:
    """``path`` itself if it is a regular file, else every regular file under it,
    not following symbolic links nor crossing into other file systems (page-types'
    ``nftw(FTW_MOUNT | FTW_PHYS)``); with ``follow_symlink``, ``path`` itself may be
    a link (fincore follows the names it is given).  A directory that cannot be read
    raises."""
    try:
        st = os.stat(path, follow_symlinks=follow_symlink)
    except OSError as exc:
        if follow_symlink and exc.errno == errno.ELOOP:
            raise InvalidArgument(f"{path}: too many levels of symbolic links") from None
        raise file_error(exc, path) from None

    if stat_module.S_ISREG(st.st_mode):
        yield path, st
        return
    if not stat_module.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"not a regular file or directory: {path}")
    device = st.st_dev

    def failed(exc: OSError) -> None:
        raise file_error(exc, exc.filename or path)

    for root, dirs, files in os.walk(path, onerror=failed):
        dirs[:] = sorted(d for d in dirs if os.stat(os.path.join(root, d), follow_symlinks=False).st_dev == device)
        for name in sorted(files):
            full = os.path.join(root, name)
            try:
                st = os.stat(full, follow_symlinks=False)
            except OSError:
                continue  # gone meanwhile
            if stat_module.S_ISREG(st.st_mode):
                yield full, st


