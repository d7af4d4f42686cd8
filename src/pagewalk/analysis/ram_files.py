"""Which files hold the page cache (``pagewalk ram --files``): every regular file under
the given trees, or on every mounted local file system, and its pages in the cache.

Each file is opened read-only (``O_NOATIME`` where allowed) and asked with
``cachestat(2)`` (Linux 6.5+: cached, dirty and under-writeback pages of the whole file,
mm/filemap.c), which reads nothing in and marks nothing accessed.  Where the kernel
refuses it (before 6.5; since 6.14 a reader that neither owns nor may write the file),
``mincore(2)`` of the file mapped read-only gives the cached pages (dirty unknown).
The largest files' mapped pages come from their frames (root only), looked at as
``pagewalk file`` looks: without marking a page accessed (:mod:`pagewalk.kernel.pagecache`).
"""

from __future__ import annotations

import heapq
import os
import stat as stat_module
import time
from collections import namedtuple

from ..errors import PagewalkError, Unsupported
from ..kernel import procfs, shmem
from ..kernel.pagecache import file_pages, residency

__all__ = ["FileCache", "FilesReport", "DISK_FILESYSTEMS", "local_roots", "walk_files"]

# File systems whose cache is page cache of a disk (tmpfs and its kind hold shared memory)
DISK_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "vfat", "exfat", "msdos", "jfs",
                              "reiserfs", "nilfs2", "bcachefs", "zfs", "ntfs", "ntfs3", "hfsplus", "udf",
                              "iso9660", "squashfs", "erofs", "fuseblk"})
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO swapped in does not block


class FileCache(namedtuple("FileCache", "path size_bytes cached_pages dirty_pages writeback_pages mapped_pages")):
    """One file's pages in the page cache: ``cached_pages``; ``dirty_pages`` and
    ``writeback_pages`` (None where only mincore could be asked); ``mapped_pages``
    mapped by some process (None unless found: the largest files, as root)."""

    __slots__ = ()


class FilesReport(namedtuple("FilesReport", "roots files files_walked files_cached cached_pages dirty_pages "
                                            "unreadable seconds notes")):
    """The files walked: ``roots`` (the trees), ``files`` the largest
    :class:`FileCache` by cached pages, ``files_walked`` regular files looked at,
    ``files_cached`` those with a page in the cache, ``cached_pages`` and
    ``dirty_pages`` their sums, ``unreadable`` files and directories that could not be
    opened, ``seconds`` the walk's time, ``notes``."""

    __slots__ = ()


def local_roots() -> list[str]:
    """The mount points of every mounted local disk file system (one per device)."""
    roots, devices = [], set()
    for m in procfs.mounts():
        if m.fstype not in DISK_FILESYSTEMS:
            continue
        point = m.point
        try:
            dev = os.stat(point).st_dev
        except OSError:
            continue
        if dev not in devices:  # a bind mount shows the same files again
            devices.add(dev)
            roots.append(point)
    return roots


def _cached(fd: int, path: str, size_bytes: int, calls: list) -> tuple[int, int | None, int | None]:
    """(cached, dirty, writeback) pages of the open file: cachestat, else mincore."""
    if calls[0]:
        try:
            st = shmem.cachestat(fd, path=path)
            return st.nr_cache, st.nr_dirty, st.nr_writeback
        except Unsupported:
            calls[0] = False  # no cachestat on this kernel: mincore from now on
        except PagewalkError:
            pass  # refused for this file: mincore
    cached = 0
    for _, got in residency(fd, 0, file_pages(size_bytes), path):
        cached += got.count(1)
    return cached, None, None


def walk_files(roots: list[str], top: int = 20, *, frames: bool = False, progress=None) -> FilesReport:
    """Walk every regular file under ``roots`` (not following links nor crossing into
    other file systems; a root that is a file is that file) and count its pages in the
    page cache.  Returns a :class:`FilesReport` with the ``top`` largest files; with
    ``frames`` (root) their mapped pages too.  ``progress(1)`` after each file."""
    started = time.monotonic()
    heap: list[tuple[int, str, int, int | None, int | None]] = []
    walked = cached_files = cached_total = dirty_total = unreadable = 0
    dirty_known = True
    calls = [True]  # whether cachestat is still worth asking
    for root in roots:
        for path, size_bytes, fd in _regular_files(root):
            if fd is None:
                unreadable += 1
                continue
            try:
                cached, dirty, writeback = _cached(fd, path, size_bytes, calls)
            except PagewalkError:
                unreadable += 1
                continue
            finally:
                os.close(fd)
            walked += 1
            if progress is not None:
                progress(1)
            if not cached:
                continue
            cached_files += 1
            cached_total += cached
            if dirty is None:
                dirty_known = False
            else:
                dirty_total += dirty
            item = (cached, path, size_bytes, dirty, writeback)
            if len(heap) < top:
                heapq.heappush(heap, item)
            elif item > heap[0]:
                heapq.heapreplace(heap, item)
    largest = [FileCache(path, size_bytes, cached, dirty, writeback, None)
               for cached, path, size_bytes, dirty, writeback in sorted(heap, reverse=True)]
    notes = []
    if frames and largest:
        largest = _with_mapped(largest)
    if unreadable:
        notes.append(f"{unreadable} file(s) or directories could not be read and are left out")
    if not calls[0] or not dirty_known:
        notes.append("cachestat(2) was refused for some files: their cached pages come from mincore(2), "
                     "their dirty pages are unknown")
    return FilesReport(list(roots), largest, walked, cached_files, cached_total, dirty_total if dirty_known else None,
                       unreadable, time.monotonic() - started, notes)


def _with_mapped(largest: list[FileCache]) -> list[FileCache]:
    """The files with their mapped pages, from their frames (:func:`file_residency`)."""
    from ..kernel.pagemap import PagemapFile
    from .files import file_residency

    out = []
    with PagemapFile(os.getpid()) as own:
        for f in largest:
            try:
                mapped = file_residency(f.path, own).mapped
            except PagewalkError:
                mapped = None  # gone or changed meanwhile
            out.append(f._replace(mapped_pages=mapped))
    return out


def _regular_files(root: str):
    """``(path, size in bytes, fd or None where it cannot be opened)`` of every regular
    file under ``root``, opened relative to its directory (no path resolution a file,
    no link followed), on ``root``'s file system only."""
    try:
        st = os.stat(root)
    except OSError:
        yield root, 0, None
        return
    if stat_module.S_ISREG(st.st_mode):
        try:
            yield root, st.st_size, os.open(root, OPEN_FLAGS & ~os.O_NOFOLLOW)
        except OSError:
            yield root, 0, None
        return
    device = st.st_dev
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            yield directory, 0, None
            continue
        try:
            with os.scandir(dir_fd) as entries:
                names = [(e.name, e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False)) for e in entries]
            for name, is_dir, is_file in names:
                path = os.path.join(directory, name)
                if is_dir:
                    try:
                        if os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_dev == device:
                            stack.append(path)
                    except OSError:
                        pass  # gone meanwhile
                elif is_file:
                    try:
                        fd = os.open(name, OPEN_FLAGS | os.O_NOATIME, dir_fd=dir_fd)
                    except PermissionError:
                        try:
                            fd = os.open(name, OPEN_FLAGS, dir_fd=dir_fd)  # O_NOATIME needs ownership
                        except OSError:
                            yield path, 0, None
                            continue
                    except OSError:
                        continue  # gone meanwhile, or a link swapped in (ELOOP)
                    st = os.fstat(fd)
                    if not stat_module.S_ISREG(st.st_mode):
                        os.close(fd)
                        continue
                    yield path, st.st_size, fd
        except OSError:
            yield directory, 0, None
        finally:
            os.close(dir_fd)
