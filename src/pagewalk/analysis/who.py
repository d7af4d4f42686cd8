"""Who maps a frame (``pagewalk who``): every process and virtual address whose page
is one of the given physical frames, found by reading each process's populated
pagemap entries (:meth:`Process.populated_entries`) and looking the frames up in
C (:func:`pagewalk.native.find_frames`), with no numpy.  Needs visible PFNs
(CAP_SYS_ADMIN)."""

from __future__ import annotations

import bisect
from array import array
from collections import namedtuple
from collections.abc import Callable, Iterable

from .. import native
from ..core.states import zero_by_kpageflags
from ..errors import AccessDenied, InvalidArgument, PagewalkError
from ..kernel import probes, procfs
from ..kernel.kpage import KPAGECOUNT, KPAGEFLAGS, KpageFile
from ..kernel.pagemap import PAGE_SHIFT, PM_PFRAME_MASK

__all__ = ["Hit", "WhoReport", "who_maps", "require_frames"]

Hit = namedtuple("Hit", "pfn pid command vaddr mapping")
Hit.__doc__ = """One page that maps an asked frame: ``pfn``, ``pid``, ``command``, ``vaddr`` (bytes)
and ``mapping`` (its mapping's label)."""


class WhoReport(namedtuple("WhoReport", "hits mapcounts zero_frames")):
    """``hits``: ``Hit(pfn, pid, command, vaddr, mapping)`` for every (process, virtual
    address in bytes) found mapping a frame, sorted by PFN, PID and address; ``mapcounts``: each frame's map count from ``/proc/kpagecount``;
    ``zero_frames``: the asked frames that are the shared zero page or part of the
    huge zero page, whose map count the kernel does not keep (it reads 0)."""

    __slots__ = ()


def require_frames(what: str) -> None:
    """Raise :class:`AccessDenied` where this user cannot see PFNs (CAP_SYS_ADMIN):
    ``what`` (a command) compares physical frames."""
    if not probes.pfn_visible():
        raise AccessDenied("/proc/PID/pagemap", msg=f"{what} compares physical frames, which the kernel hides "
                                                    "from this user: run as root (CAP_SYS_ADMIN)")


def who_maps(pfns: Iterable[int], pids: Iterable[int], progress: Callable[[int], None] | None = None
             ) -> WhoReport:
    """Every (process, virtual address) that maps one of ``pfns``, each PFN's map
    count from ``/proc/kpagecount``, and which PFNs are zero pages.  The walk stops
    early once as many mappings were found as the map counts promise; a zero page
    promises none (its map count reads 0), so with one asked every process is read.
    Processes that cannot be read (kernel threads, gone, refused) are passed over;
    ``progress(1)`` is called after each process looked at.

    Returns a :class:`WhoReport`.  Raises :class:`AccessDenied` where this user cannot
    see PFNs (CAP_SYS_ADMIN; fs/proc/task_mmu.c ``pagemap_open``) or read the kpage
    files, :class:`InvalidArgument` for a PFN beyond the end of memory."""
    from ..core.process import Process

    require_frames("who")
    targets = sorted(set(pfns))
    with KpageFile(KPAGEFLAGS) as flags:
        end = flags.end_pfn()
        beyond = [p for p in targets if p >= end]
        if beyond:
            raise InvalidArgument(f"PFN {beyond[0]:#x} is beyond the end of memory (the last PFN is {end - 1:#x})")
        zero = {p for p, f in flags.values(set(targets)).items() if zero_by_kpageflags(f)}  # huge zero page's too
    with KpageFile(KPAGECOUNT) as count:
        counted = count.values(set(targets))
    mapcounts = {p: counted.get(p, 0) for p in targets}
    expected = sum(mapcounts.values()) if not zero else 0  # 0: no early stop
    wanted = array("Q", targets)
    hits: list[Hit] = []
    for pid in pids:
        if expected and len(hits) >= expected:
            break
        try:
            with Process(pid) as proc:
                hits += _hits(proc, wanted)
        except PagewalkError:
            pass  # kernel threads, processes gone or refused: nothing of theirs can be seen
        finally:
            if progress is not None:
                progress(1)
    hits.sort(key=lambda h: (h.pfn, h.pid, h.vaddr))
    return WhoReport(hits, mapcounts, frozenset(zero))


def _hits(proc, wanted: array) -> list[Hit]:
    """The pages of ``proc`` that map one of the sorted PFNs ``wanted``."""
    maps = proc.mappings()
    starts = [m.start for m in maps]
    found: list[tuple[int, int]] = []  # (pfn, vaddr)
    for raw, segments, vpns in proc.populated_entries(maps):
        indices = native.find_frames(raw, wanted, segments)
        if indices:
            words = raw.cast("Q")
            firsts = [first for first, _ in segments]
            for i in indices:  # a hit, not a page: few
                k = bisect.bisect_right(firsts, i) - 1
                found.append((words[i] & PM_PFRAME_MASK, (vpns[k] + i - firsts[k]) << PAGE_SHIFT))
    command = procfs.command_name(proc.pid) if found else ""
    return [Hit(pfn, proc.pid, command, vaddr, maps[bisect.bisect_right(starts, vaddr) - 1].label())
            for pfn, vaddr in found]
