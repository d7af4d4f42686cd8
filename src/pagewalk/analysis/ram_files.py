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

import errno
import heapq
import os
import stat as stat_module
import time
from collections import namedtuple

from ..errors import InvalidArgument, PagewalkError, Unsupported
from ..kernel import procfs, shmem
from ..kernel.pagecache import file_pages, open_noatime, residency

__all__ = ["FileCache", "FilesReport", "DISK_FILESYSTEMS", "local_roots", "walk_files"]

# File systems whose cache is page cache of a disk (tmpfs and its kind hold shared memory)
DISK_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "vfat", "exfat", "msdos", "jfs",
                              "reiserfs", "nilfs2", "bcachefs", "zfs", "ntfs", "ntfs3", "hfsplus", "udf",
                              "iso9660", "squashfs", "erofs", "fuseblk"})
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC  # a FIFO put there: no wait


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
    other file systems; a root that is a file is that file; a file reached twice, by a
    hard link or through overlapping roots, counted once) and count its pages in the
    page cache.  Returns a :class:`FilesReport` with the ``top`` largest files; with
    ``frames`` (root) their mapped pages too.  ``progress(1)`` after each file.  Raises
    :class:`~pagewalk.errors.InvalidArgument` for a root that does not exist or is
    neither a regular file nor a directory."""
    started = time.monotonic()
    heap: list[tuple[int, tuple[int, int], str, int, int | None, int | None]] = []
    walked = cached_files = cached_total = dirty_total = unreadable = 0
    dirty_known = True
    calls = [True]  # whether cachestat is still worth asking
    seen: set[tuple[int, int]] = set()  # files with other links, and directories: (device, inode)
    for root in roots:
        for path, st, fd in _regular_files(root, seen):
            if fd is None:
                unreadable += 1
                continue
            try:
                if st.st_nlink > 1 or len(roots) > 1:  # (another link, or another root, may lead here again)
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                cached, dirty, writeback = _cached(fd, path, st.st_size, calls)
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
            item = (cached, (st.st_dev, st.st_ino), path, st.st_size, dirty, writeback)
            if len(heap) < top:
                heapq.heappush(heap, item)
            elif item[:2] > heap[0][:2]:
                heapq.heapreplace(heap, item)
    heap.sort(key=lambda item: item[:2], reverse=True)
    notes = []
    largest = [FileCache(path, size_bytes, cached, dirty, writeback, None)
               for cached, _, path, size_bytes, dirty, writeback in heap]
    if frames and largest:
        largest = _with_mapped(largest, [item[1] for item in heap])
    if unreadable:
        notes.append(f"{unreadable} file(s) or directories could not be read and are left out")
    if not calls[0] or not dirty_known:
        notes.append("cachestat(2) was refused for some files: their cached pages come from mincore(2), "
                     "their dirty pages are unknown")
    return FilesReport(list(roots), largest, walked, cached_files, cached_total, dirty_total if dirty_known else None,
                       unreadable, time.monotonic() - started, notes)


def _open_checked(path: str, identity: tuple[int, int] | None = None, follow: bool = False
                  ) -> tuple[int, os.stat_result]:
    """``path`` opened for reading as what it is now, without opening anything else: it
    is first opened ``O_PATH`` (which opens no device and waits on no FIFO) and looked
    at; only a regular file (and only the one of ``identity``, (device, inode), where
    given) or a directory is then opened for reading, through that descriptor; a link
    is followed only with ``follow`` (a name the user gave).  Raises OSError otherwise
    (ENOENT where it changed)."""
    held = os.open(path, os.O_PATH | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW))
    try:
        st = os.fstat(held)
        if identity is not None and (st.st_dev, st.st_ino) != identity:
            raise OSError(errno.ENOENT, "changed while it was looked at", path)
        if stat_module.S_ISDIR(st.st_mode):
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        elif stat_module.S_ISREG(st.st_mode):
            flags = OPEN_FLAGS & ~os.O_NOFOLLOW  # (the descriptor's own link in /proc is followed)
        else:
            raise OSError(errno.EINVAL, "neither a regular file nor a directory", path)
        return os.open(f"/proc/self/fd/{held}", flags), st
    finally:
        os.close(held)


def _with_mapped(largest: list[FileCache], identities: list[tuple[int, int]]) -> list[FileCache]:
    """The files with their mapped pages, from their frames (as :func:`file_residency`
    finds them), each the very file the walk counted (by device and inode) or left
    unknown: a name may since lead elsewhere."""
    from ..kernel.pagemap import PagemapFile
    from .files import residency_of

    out = []
    with PagemapFile(os.getpid()) as own:
        for f, identity in zip(largest, identities):
            mapped = None
            try:
                fd, _ = _open_checked(f.path, identity)
            except OSError:
                fd = None  # gone or changed meanwhile
            if fd is not None:
                try:
                    mapped = residency_of(fd, f.path, own).mapped
                except PagewalkError:
                    pass
                finally:
                    os.close(fd)
            out.append(f._replace(mapped_pages=mapped))
    return out


def _regular_files(root: str, seen: set[tuple[int, int]]):
    """``(path, stat, fd or None where it cannot be opened)`` of every regular file
    under ``root``, on ``root``'s file system only, each opened relative to its
    directory without following a link (a FIFO put in its place opens without waiting;
    an unprivileged user can make no device there).  A directory is entered once
    (``seen``), and entered only if it is still the one its parent listed."""
    try:
        fd, st = _open_checked(root, follow=True)
    except FileNotFoundError:
        raise InvalidArgument(f"no such file or directory: {root}") from None
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise InvalidArgument(f"not a regular file or directory: {root}") from None
        yield root, None, None
        return
    if stat_module.S_ISREG(st.st_mode):
        yield root, st, fd
        return
    device = st.st_dev
    stack = [(root, fd, (st.st_dev, st.st_ino))]
    while stack:
        directory, dir_fd, identity = stack.pop()
        if dir_fd is None:
            try:
                dir_fd, _ = _open_checked(directory, identity)
            except OSError:
                yield directory, None, None
                continue
        if identity in seen:
            os.close(dir_fd)
            continue
        seen.add(identity)
        try:
            with os.scandir(dir_fd) as entries:
                names = [(e.name, e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False)) for e in entries]
            for name, is_dir, is_file in names:
                path = os.path.join(directory, name)
                try:
                    if is_dir:
                        sub = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                        if sub.st_dev == device and stat_module.S_ISDIR(sub.st_mode):
                            stack.append((path, None, (sub.st_dev, sub.st_ino)))
                    elif is_file:
                        file_fd = open_noatime(name, OPEN_FLAGS, dir_fd=dir_fd)
                        file_st = os.fstat(file_fd)
                        if stat_module.S_ISREG(file_st.st_mode):
                            yield path, file_st, file_fd
                        else:
                            os.close(file_fd)
                except PermissionError:
                    yield path, None, None
                except OSError:
                    pass  # gone meanwhile, or a link put in its place (ELOOP)
        except OSError:
            yield directory, None, None
        finally:
            os.close(dir_fd)

