"""Swapped-out pages of shared memory (shmem), which pagemap cannot show.

shmem backs MAP_SHARED|MAP_ANONYMOUS memory, shared mappings of /dev/zero, files
on tmpfs (/dev/shm, /tmp on many systems), memfd and SysV shared memory.  When
reclaim swaps out a shmem page it unmaps it from every page table (the PTE
becomes none) and keeps the swap entry in the object's page cache slot
(``mm/shmem.c`` ``shmem_writeout``).  So pagemap gives entry 0 for such an address:
not present, not swapped, like a page never touched.

``/proc/PID/smaps`` counts them in ``Swap:`` (``fs/proc/task_mmu.c``
``smap_gather_stats``): for a shared or read-only shmem mapping it adds every
swap entry of the object over the mapping's file page range
(``shmem_swap_usage``, ``shmem_partial_swap_usage``); for a private writable
mapping it adds one only where this process's PTE is none
(``smaps_pte_hole_lookup``), since a page copied on write has its own
anonymous PTE or swap entry.  ``SwapPss`` leaves them out.  smaps charges a
shared object's swapped page to every mapping of it.

This module finds them with ``cachestat(2)`` (Linux 6.5+, ``mm/filemap.c``
``filemap_cachestat``): over a byte range of a shmem file it counts the swap
entries as ``nr_evicted`` (clipped to the range, large entries included), which
is exactly what smaps adds.  Halving a range whose count is neither 0 nor its
length finds the runs of swapped pages.  The file is opened through
``/proc/PID/map_files/START-END`` (needs CAP_SYS_ADMIN), else through the maps
path or an open file descriptor of the process (``/proc/PID/fd/N``) when either
is the same inode, as an unprivileged reader may.  Nothing here reads a page in
or marks one accessed: opening a file and cachestat do neither, and the file is
first opened O_PATH, so that only a regular shmem file is ever really opened
(never a device node).

Which mappings can be shmem is decided from maps alone, without touching any
other filesystem (an NFS or FUSE mount could hang or see the access): the
device must be the kernel's internal shmem mount (that of a memfd of our own)
or a ``tmpfs`` mount in the process's mountinfo; mappings named like shared
anonymous memory, memfd or SysV memory on another internal mount (hugetlbfs)
are opened and ruled out by ``fstatfs``.  Known gaps: a tmpfs file reached
through overlayfs is not seen as shmem (cachestat on the overlay file sees an
empty page cache), nor a regular file on devtmpfs.

No numpy here; ctypes is imported only when a candidate mapping exists.
"""

from __future__ import annotations

import errno
import functools
import mmap
import os
import stat
from collections import namedtuple
from collections.abc import Iterable, Sequence

from ..errors import AccessDenied, PagewalkError, ProcessGone, Unsupported
from .maps import Mapping, read_maps
from .pagemap import PAGE_SHIFT, PAGE_SIZE

__all__ = [
    "ShmemSwap", "ShmemSwapResult", "cachestat", "swapped_file_runs", "parse_tmpfs_devs", "swapped_runs",
    "unique_pages", "why_unavailable"
]

NR_CACHESTAT = 451  # x86-64 and the generic syscall table (Linux 6.5)
TMPFS_MAGIC = 0x01021994  # include/uapi/linux/magic.h; shmem's f_type
STATFS_BYTES = 120  # sizeof(struct statfs) on 64-bit Linux; f_type is its first long


CacheStat = namedtuple("CacheStat", "nr_cache nr_dirty nr_writeback nr_evicted nr_recently_evicted")
CacheStat.__doc__ = """``struct cachestat`` (include/uapi/linux/mman.h), in pages.  For a shmem
file, ``nr_evicted`` counts the pages in swap (a page also in the swap cache
counts there, as smaps counts it), ``nr_cache`` those in memory."""


class ShmemSwap(namedtuple("ShmemSwap", "key first_page first_vpn npages pages runs needs_pte_check")):
    """The swapped-out pages of the shmem object behind one mapping.

    ``key`` identifies the object across processes (hashable, opaque: the
    file's device and inode, and for SysV memory the IPC namespace, since SysV
    inode numbers are segment ids; inode numbers on the kernel's internal mount
    come from a 32-bit counter, so two live objects share one only after it
    wrapped); ``first_page`` is the file page index at the
    mapping's start and ``first_vpn`` its virtual page number, so virtual page
    ``v`` is file page ``first_page + v - first_vpn``; ``npages`` the mapping's
    length in pages.  ``pages`` counts the object's swapped pages over the
    mapping's file range (for a shared or read-only mapping, exactly what smaps
    ``Swap:`` counts); ``runs`` lists them as sorted, merged ``(first_vpn,
    end_vpn)`` runs of virtual page numbers ([] when there are none), or is None
    when only the count was asked for.  ``needs_pte_check`` marks a private writable mapping: smaps counts
    an object's swapped page there only where this process's PTE is none (a
    page copied on write is this process's own);
    :meth:`pagewalk.core.pagetable.PageTable.mark_shmem_swap` keeps just those (such
    records always carry ``runs``).
    """

    __slots__ = ()

    def file_runs(self) -> list[tuple[int, int]]:
        """``runs`` as file page index runs of the object."""
        shift = self.first_page - self.first_vpn
        return [(a + shift, b + shift) for a, b in self.runs or ()]


class ShmemSwapResult(dict):
    """What :func:`swapped_runs` returns: ``{mapping index: ShmemSwap | None}`` for
    the mappings that are (or may be) shmem; None where this reader cannot find
    their swapped pages, and ``why[index]`` then says why in a few words."""

    def __init__(self) -> None:
        super().__init__()
        self.why: dict[int, str] = {}

    @property
    def note(self) -> str | None:
        """One line for the user when some mappings are unknown, else None."""
        if not self.why:
            return None
        reasons = sorted(set(self.why.values()))
        n = len(self.why)
        return (f"swapped shared memory unknown in {n} mapping{'s' if n > 1 else ''}: " + "; ".join(reasons))


# -- the kernel calls ---------------------------------------------------------------


class _Calls:
    """ctypes bindings, made on first use (importing ctypes costs about 2 ms)."""

    def __init__(self) -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        self.get_errno = ctypes.get_errno
        self.syscall = libc.syscall
        self.syscall.restype = ctypes.c_long
        self.fstatfs_fn = libc.fstatfs
        self.range = (ctypes.c_uint64 * 2)()
        self.stat = (ctypes.c_uint64 * 5)()
        self.statfs = (ctypes.c_long * (STATFS_BYTES // 8))()

    def cachestat(self, fd: int, offset: int, length: int) -> int:
        """The raw call: 0, or the errno."""
        self.range[0], self.range[1] = offset, length
        if self.syscall(NR_CACHESTAT, fd, self.range, self.stat, 0) < 0:
            return self.get_errno() or errno.EIO
        return 0

    def evicted(self, fd: int, first_page: int, end_page: int) -> int:
        """nr_evicted over file pages [first_page, end_page)."""
        code = self.cachestat(fd, first_page << PAGE_SHIFT, (end_page - first_page) << PAGE_SHIFT)
        if code:
            raise _cachestat_error(code, None)
        return self.stat[3]

    def fs_type(self, fd: int) -> int:
        if self.fstatfs_fn(fd, self.statfs) < 0:
            code = self.get_errno()
            raise OSError(code, os.strerror(code))
        return self.statfs[0] & 0xFFFFFFFF


@functools.cache
def _calls() -> _Calls:
    return _Calls()


def _cachestat_error(code: int, path: str | None) -> PagewalkError:
    what = path or "a shared memory file"
    if code == errno.ENOSYS:
        return Unsupported("cachestat(2) is not available (Linux 6.5 or later)")
    if code == errno.EPERM:
        return AccessDenied(what, "cachestat(2) needs write permission on the file, or to own it")
    if code == errno.EOPNOTSUPP:
        return Unsupported(f"cachestat(2) does not work on {what} (hugetlbfs)")
    return PagewalkError(f"cachestat(2) on {what}: {os.strerror(code)}")


def cachestat(fd: int, offset_bytes: int = 0, length_bytes: int = 0, *, path: str | None = None) -> CacheStat:
    """``cachestat(2)`` over ``[offset_bytes, offset_bytes + length_bytes)`` of the
    open file ``fd`` (length 0: to the end of the file), as :class:`CacheStat`.

    Raises :class:`~pagewalk.errors.Unsupported` without the syscall (ENOSYS,
    before Linux 6.5) or on hugetlbfs, :class:`~pagewalk.errors.AccessDenied` when
    the kernel refuses (EPERM: since Linux 6.14 a file opened read-only needs
    write permission or ownership), PagewalkError otherwise; ``path`` names the
    file in the message."""
    calls = _calls()
    code = calls.cachestat(fd, offset_bytes, length_bytes)
    if code:
        raise _cachestat_error(code, path)
    return CacheStat(*calls.stat)


def swapped_file_runs(fd: int, first_page: int, npages: int, total: int | None = None) -> list[tuple[int, int]]:
    """Runs ``(first, end)`` of file page indexes in ``[first_page, first_page +
    npages)`` whose pages are in swap, found by halving ranges with cachestat:
    a range whose count is 0 or its length is settled, another one is split and
    only its left half asked (the right half's count is the difference).  So it
    makes about one call per run boundary per level: ``2 x runs x log2(npages)``
    at most, and never more than ``npages``.  ``total``: the count over the whole
    range if already known."""
    calls = _calls()
    end = first_page + npages
    if total is None:
        total = calls.evicted(fd, first_page, end)
    runs: list[tuple[int, int]] = []
    stack = [(first_page, end, total)]
    while stack:
        lo, hi, count = stack.pop()
        if count <= 0:
            continue
        if count >= hi - lo:
            if runs and runs[-1][1] == lo:
                runs[-1] = (runs[-1][0], hi)
            else:
                runs.append((lo, hi))
            continue
        mid = (lo + hi) // 2
        left = calls.evicted(fd, lo, mid)
        right = count - left
        if not 0 <= right <= hi - mid:  # pages moved in or out meanwhile: ask
            right = calls.evicted(fd, mid, hi)
        stack.append((mid, hi, right))
        stack.append((lo, mid, left))
    return runs


# -- which mappings, and opening their objects ---------------------------------------


@functools.cache
def _internal_shmem_dev() -> int | None:
    """The device of the kernel's internal shmem mount, which holds shared anonymous
    memory, memfd and SysV segments: that of a memfd of our own."""
    try:
        fd = os.memfd_create("pagewalk-probe", os.MFD_CLOEXEC)
    except (OSError, AttributeError):
        return None
    try:
        return os.fstat(fd).st_dev
    finally:
        os.close(fd)


def _tmpfs_devs(pid: int) -> set[int] | None:
    """Devices of the tmpfs mounts the process sees (its mountinfo), None where it
    cannot be read.  Fields: ID parent MAJOR:MINOR root mountpoint options
    [optional...] - fstype source superoptions.  Lines end at ``\n`` only: a
    mount point may hold ``\r`` or other line breaks, which the kernel leaves."""
    try:
        with open(f"/proc/{pid}/mountinfo", "rb") as f:
            return parse_tmpfs_devs(f.read())
    except OSError:
        return None


def parse_tmpfs_devs(data: bytes) -> set[int]:
    """The device numbers (:func:`os.makedev`) of the ``tmpfs`` mounts in the text of
    ``/proc/PID/mountinfo`` (fs/proc_namespace.c ``show_mountinfo``)."""
    devs = set()
    for line in data.split(b"\n"):
        fields = line.split(b" ")
        try:
            sep = fields.index(b"-", 6)
        except ValueError:
            continue
        if fields[sep + 1 : sep + 2] == [b"tmpfs"]:
            major, _, minor = fields[2].partition(b":")
            devs.add(os.makedev(int(major), int(minor)))
    return devs


def _maps_dev(m: Mapping) -> int | None:
    """The mapping's device number if its major is 0 (tmpfs and every kernel-internal
    mount; disk filesystems have a real major) and it is not 00:00 (no file)."""
    if not m.on_internal_mount:
        return None
    try:
        return os.makedev(0, int(m.dev[3:], 16))
    except ValueError:
        return None


_SHMEM_NAMED_KINDS = ("anon_shared", "memfd", "sysv")  # shmem, or hugetlbfs for memfd/SysV


class _NotShmem(Exception):
    pass


class _Unknown(Exception):
    """This reader cannot find the mapping's swapped pages; the message says why."""


NEEDS_ADMIN = "opening the object needs CAP_SYS_ADMIN (/proc/PID/map_files)"


class _Reader:
    """Opens the shmem objects behind one process's mappings."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.internal_dev = _internal_shmem_dev()
        self._tmpfs: set[int] | None = None
        self._tmpfs_read = False
        self._fd_names: dict[tuple[int, int], str] | None = None
        self.map_files_denied = False
        self.unsupported: str | None = None
        self._ipc_ns: str | None = None
        # Objects opened in this call, for their other mappings: fd, or None (not shmem).
        # SysV inode numbers are segment ids, which may equal another object's inode.
        self.objects: dict[tuple[int, int, bool], int | None] = {}

    def close(self) -> None:
        for fd in self.objects.values():
            if fd is not None:
                os.close(fd)

    def may_be_shmem(self, m: Mapping, dev: int) -> bool:
        if dev == self.internal_dev:
            return True
        if not self._tmpfs_read:
            self._tmpfs, self._tmpfs_read = _tmpfs_devs(self.pid), True
        # mounts unknown (mountinfo unreadable): open it and let fstatfs decide
        return self._tmpfs is None or dev in self._tmpfs or m.kind in _SHMEM_NAMED_KINDS

    def fd_names(self) -> dict[tuple[int, int], str]:
        """(device, inode) -> /proc/PID/fd/N, for the process's open files (stat
        follows the link without opening anything)."""
        if self._fd_names is None:
            self._fd_names = {}
            base = f"/proc/{self.pid}/fd"
            try:
                names = os.listdir(base)
            except OSError:
                names = []
            for name in names:
                try:
                    st = os.stat(f"{base}/{name}")
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    self._fd_names.setdefault((st.st_dev, st.st_ino), f"{base}/{name}")
        return self._fd_names

    def names(self, m: Mapping, dev: int) -> Iterable[str]:
        """Paths that may lead to the mapping's file, best first."""
        if not self.map_files_denied:
            yield f"/proc/{self.pid}/map_files/{m.start:x}-{m.end:x}"
        if m.path.startswith("/") and not m.deleted:
            yield m.path
        if m.kind != "sysv":  # no file descriptor ever refers to a SysV segment
            found = self.fd_names().get((dev, m.inode))
            if found:
                yield found

    def object_fd(self, m: Mapping, dev: int) -> int:
        """An O_RDONLY fd of the mapping's shmem file, opened once a call; raises
        _NotShmem or _Unknown."""
        ident = (dev, m.inode, m.kind == "sysv")
        if ident not in self.objects:
            try:
                self.objects[ident] = self.open(m, dev)
            except _NotShmem:
                self.objects[ident] = None
        fd = self.objects[ident]
        if fd is None:
            raise _NotShmem
        return fd

    def open(self, m: Mapping, dev: int) -> int:
        """A new O_RDONLY fd of the mapping's shmem file; raises _NotShmem or _Unknown.

        Each name is opened O_PATH first (no open of the file itself), checked to
        be the maps line's inode, a regular file, on tmpfs; only then reopened."""
        calls = _calls()
        why = NEEDS_ADMIN
        for name in self.names(m, dev):
            try:
                probe = os.open(name, os.O_PATH | os.O_CLOEXEC)
            except OSError as exc:
                if "/map_files/" in name:
                    if exc.errno in (errno.EPERM, errno.EACCES):
                        self.map_files_denied = True
                    elif exc.errno == errno.ENOENT and not os.path.exists(f"/proc/{self.pid}"):
                        raise ProcessGone(self.pid) from None
                    elif exc.errno == errno.ENOENT:
                        why = "the mapping changed while it was read"
                continue
            try:
                st = os.fstat(probe)
                if (st.st_dev, st.st_ino) != (dev, m.inode):
                    continue
                if not stat.S_ISREG(st.st_mode) or calls.fs_type(probe) != TMPFS_MAGIC:
                    raise _NotShmem
                try:
                    return os.open(f"/proc/self/fd/{probe}", os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
                except OSError as exc:
                    why = f"cannot open the shared memory object: {os.strerror(exc.errno or 0).lower()}"
            finally:
                os.close(probe)
        raise _Unknown(why)

    def key(self, m: Mapping, dev: int) -> tuple:
        if m.kind != "sysv":
            return (dev, m.inode)
        # A SysV segment's inode number is its id, unique only within its IPC namespace.
        if self._ipc_ns is None:
            try:
                self._ipc_ns = os.readlink(f"/proc/{self.pid}/ns/ipc")
            except OSError:
                self._ipc_ns = f"pid {self.pid}"
        return (dev, m.inode, self._ipc_ns)

    def record(self, m: Mapping, dev: int, exact: bool, within: tuple[int, int] | None = None,
               cache: dict | None = None) -> ShmemSwap:
        if self.unsupported:
            raise _Unknown(self.unsupported)
        fd = self.object_fd(m, dev)
        first_page, npages = m.offset >> PAGE_SHIFT, (m.end - m.start) >> PAGE_SHIFT
        try:
            pages = _calls().evicted(fd, first_page, first_page + npages)
            needs_pte_check = not m.shared and "w" in m.perms[:2]
            runs = [] if not pages else None
            if pages and (exact or needs_pte_check):
                shift = (m.start >> PAGE_SHIFT) - first_page
                if within is None:
                    span = (self.key(m, dev), first_page, npages, pages)
                    found = cache.get(span) if cache is not None else None
                    if found is None:
                        found = swapped_file_runs(fd, first_page, npages, pages)
                        if cache is not None:
                            cache[span] = found
                    runs = [(a + shift, b + shift) for a, b in found]
                    pages = sum(b - a for a, b in runs)
                else:  # runs only where asked (a dump's range, v2p's pages): pages stays the whole count
                    lo = max(within[0], m.start >> PAGE_SHIFT) - shift
                    hi = min(within[1], m.end >> PAGE_SHIFT) - shift
                    runs = [(a + shift, b + shift) for a, b in swapped_file_runs(fd, lo, hi - lo)] if hi > lo else []
        except Unsupported as exc:
            self.unsupported = str(exc)
            raise _Unknown(self.unsupported) from None
        except AccessDenied:
            raise _Unknown("cachestat(2) needs write permission on the object, or to own it") from None
        return ShmemSwap(self.key(m, dev), first_page, m.start >> PAGE_SHIFT, npages, pages, runs, needs_pte_check)


def swapped_runs(pid: int, mappings: Sequence[Mapping], indices: Iterable[int] | None = None, *,
                 exact: bool = True, within: tuple[int, int] | None = None,
                 cache: dict | None = None) -> ShmemSwapResult:
    """The swapped-out shmem pages behind the process's mappings (``mappings`` as
    read from its maps; ``indices`` limits the work to those of them).

    Returns ``{index: ShmemSwap}`` for each shmem mapping, None for one that is
    (or may be) shmem but whose swap this reader cannot find (``result.why[index]``
    says why: no cachestat, /proc/PID/map_files denied, no permission); mappings
    that are not shmem are absent.  ``exact`` also finds the runs (needed for
    per-page answers); without it each mapping costs one cachestat call, and
    only private writable mappings with swapped pages get runs.  ``within``:
    virtual page numbers ``[first, end)``; runs are found only there (halving a
    whole mapping costs about a call per page when swap is scattered).  ``cache``:
    a dict kept by the caller over several processes (``usage --all``), so the
    runs of an object range many processes map are found once.

    Cost when nothing is swapped: per shmem object an O_PATH open, fstat,
    fstatfs and a reopen (about 20 us in all), and one cachestat per mapping.  A process whose maps show no device
    with major 0 (other than 00:00) costs nothing and imports nothing.
    """
    result = ShmemSwapResult()
    reader: _Reader | None = None
    try:
        for i in range(len(mappings)) if indices is None else indices:
            m = mappings[i]
            dev = _maps_dev(m)
            if dev is None:
                continue
            if reader is None:
                reader = _Reader(pid)
            if not reader.may_be_shmem(m, dev):
                continue
            try:
                result[i] = reader.record(m, dev, exact, within, cache)
            except _NotShmem:
                continue
            except _Unknown as exc:
                result[i] = None
                result.why[i] = str(exc)
    finally:
        if reader is not None:
            reader.close()
    return result


# -- using the records ------------------------------------------------------------------


def unique_pages(records: Iterable[ShmemSwap | None]) -> int:
    """Swapped shmem pages counted once per object page, over records from any
    number of processes (smaps charges each to every mapping of it).  None
    records are skipped (unknown: the caller notes them).

    Records with ``runs`` are united page by page.  A record without runs counts
    as a whole: identical ranges of one object once; if it partly overlaps another
    record's range of the same object, ValueError (ask with ``exact=True``)."""
    by_key: dict[tuple, list[ShmemSwap]] = {}
    for r in records:
        if r is not None:
            by_key.setdefault(r.key, []).append(r)
    total = 0
    for group in by_key.values():
        exact_runs: list[tuple[int, int]] = []
        ranges: dict[tuple[int, int], ShmemSwap] = {}
        for r in group:
            span = (r.first_page, r.first_page + r.npages)
            if r.runs is not None:
                exact_runs.extend(r.file_runs())
                ranges[span] = r
            else:
                ranges.setdefault(span, r)
        counted = sorted(ranges)
        for span, r in ranges.items():
            if r.runs is not None:
                continue
            if any(other != span and other[0] < span[1] and span[0] < other[1] for other in counted):
                raise ValueError("shared memory ranges overlap in part: unique_pages needs exact runs")
            total += r.pages
        exact_runs.sort()
        end = -1
        for a, b in exact_runs:
            if b <= end:
                continue
            total += b - max(a, end)
            end = b
    return total


def why_unavailable() -> str | None:
    """Why this reader may miss swapped shared memory (for ``doctor``), or None when
    cachestat works and /proc/PID/map_files can be opened."""
    try:
        fd = os.memfd_create("pagewalk-doctor", os.MFD_CLOEXEC)
    except OSError as exc:
        return f"memfd_create to probe with: {os.strerror(exc.errno or 0).lower()}"
    try:
        os.ftruncate(fd, PAGE_SIZE)
        try:
            cachestat(fd)
        except PagewalkError as exc:
            return str(exc)
        area = mmap.mmap(fd, PAGE_SIZE)
        try:
            st = os.fstat(fd)
            mine = next((m for m in read_maps(os.getpid()) if m.inode == st.st_ino), None)
            name = "" if mine is None else f"{mine.start:x}-{mine.end:x}"  # map_files' names
            try:
                os.close(os.open(f"/proc/self/map_files/{name}", os.O_PATH | os.O_CLOEXEC))
            except OSError as exc:
                return f"/proc/PID/map_files: {os.strerror(exc.errno or 0).lower()} (needs CAP_SYS_ADMIN)"
        finally:
            area.close()
    finally:
        os.close(fd)
    return None
