"""Frames seen from the processes: who maps a frame, and which frames processes share.

Both walk each process's resident pages once (:meth:`Process.resident_table`:
with PAGEMAP_SCAN only populated ranges are read) and compare PFNs with numpy.
Both need visible PFNs (CAP_SYS_ADMIN).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterable

import numpy as np

from ..core.process import Process
from ..core.states import zero_by_kpageflags
from ..errors import AccessDenied, InvalidArgument, PagewalkError
from ..kernel import probes, procfs
from ..kernel.kpage import KPAGECOUNT, KPAGEFLAGS, KpageFile
from ..kernel.maps import mapping_index

__all__ = ["Hit", "WhoReport", "who_maps", "SharedReport", "shared_frames"]

Hit = namedtuple("Hit", "pfn pid command vaddr mapping")


class WhoReport(namedtuple("WhoReport", "hits mapcounts zero_frames")):
    """``hits``: ``Hit(pfn, pid, command, vaddr, mapping)`` for every (process, virtual
    address in bytes) found mapping a frame, sorted by PFN, PID and address; ``mapcounts``: each frame's map count from ``/proc/kpagecount``;
    ``zero_frames``: the asked frames that are the shared zero page or part of the
    huge zero page, whose map count the kernel does not keep (it reads 0)."""

    __slots__ = ()
Pair = namedtuple("Pair", "pid_a mapping_a pid_b mapping_b pages")


def _require_frames(what: str) -> None:
    if not probes.pfn_visible():
        raise AccessDenied("/proc/PID/pagemap", msg=f"{what} compares physical frames, which the kernel hides "
                                                    "from this user: run as root (CAP_SYS_ADMIN)")


def _frames_of(process, with_zero: bool = False) -> tuple[np.ndarray, np.ndarray, list, np.ndarray]:
    """(PFNs, virtual addresses, the mappings, each page's mapping index) of the
    present pages that hold memory of their own (the zero page left out unless
    ``with_zero``)."""
    table = process.resident_table()
    maps = table.mappings
    keep = table.present if with_zero else table.resident
    vaddr = table.vaddr[keep]
    index = mapping_index(maps, vaddr)
    return table.pfn[keep], vaddr, maps, index


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
    _require_frames("who")
    targets = np.unique(np.asarray(list(pfns), dtype=np.int64))
    with KpageFile(KPAGEFLAGS) as flags:
        end = flags.end_pfn()
        beyond = targets[targets >= end]
        if len(beyond):
            raise InvalidArgument(f"PFN {int(beyond[0]):#x} is beyond the end of memory (the last PFN is {end - 1:#x})")
        zero = targets[zero_by_kpageflags(flags.read(targets.astype(np.uint64)))]  # the huge zero page's too
    with KpageFile(KPAGECOUNT) as count:
        mapcounts = dict(zip(targets.tolist(), count.read(targets.astype(np.uint64)).tolist()))
    expected = sum(mapcounts.values()) if not len(zero) else 0  # 0: no early stop
    hits: list[Hit] = []
    for pid in pids:
        if expected and len(hits) >= expected:
            break
        try:
            with Process(pid) as proc:
                pfn, vaddr, maps, index = _frames_of(proc, with_zero=bool(len(zero)))
                found = np.flatnonzero(np.isin(pfn, targets))
                command = procfs.command_name(pid)
                hits += [Hit(int(pfn[k]), pid, command, int(vaddr[k]), maps[int(index[k])].label())
                         for k in found.tolist()]
        except PagewalkError:
            pass  # kernel threads, processes gone or refused: nothing of theirs can be seen
        finally:
            if progress is not None:
                progress(1)
    hits.sort(key=lambda h: (h.pfn, h.pid, h.vaddr))
    return WhoReport(hits, mapcounts, frozenset(zero.tolist()))


class SharedReport(namedtuple("SharedReport", "pairs per_process frames changed")):
    """``pairs``: ``Pair(pid_a, mapping_a, pid_b, mapping_b, pages)``, the pages two
    processes share, by mapping pair, most first; ``per_process``: {pid: pages it
    shares with any other listed process}; ``frames``: the number of distinct frames
    mapped by two or more of the processes; ``changed``: {pid: how many of its mappings
    changed while its pages were read}.  All counts in pages (frames)."""

    __slots__ = ()


def shared_frames(pids: list[int]) -> SharedReport:
    """The physical pages (present, not the zero page) that two or more of ``pids`` map,
    by mapping pair; a frame a process maps twice counts once for it.

    Returns a :class:`SharedReport` (counts in pages).  Raises :class:`AccessDenied`
    where this user cannot see PFNs (CAP_SYS_ADMIN; fs/proc/task_mmu.c ``pagemap_open``),
    :class:`InvalidArgument` for fewer than two different PIDs, and what
    :meth:`pagewalk.Process.resident_table` raises for each PID."""
    _require_frames("shared")
    if len(set(pids)) < 2:
        raise InvalidArgument("shared needs at least two different PIDs")
    per: list[tuple[int, np.ndarray, np.ndarray, list]] = []
    changed: dict[int, int] = {}
    for pid in dict.fromkeys(pids):
        with Process(pid) as proc:
            pfn, _, maps, index = _frames_of(proc)
            if proc.changed:
                changed[pid] = len(proc.changed)
        order = np.argsort(pfn, kind="stable")
        pfn, index = pfn[order], index[order]
        first = np.concatenate(([True], pfn[1:] != pfn[:-1]))  # a frame mapped twice here counts once
        per.append((pid, pfn[first], index[first], maps))
    pairs: list[Pair] = []
    shared_any: dict[int, np.ndarray] = {pid: np.zeros(0, dtype=np.int64) for pid, *_ in per}
    for i in range(len(per)):
        for j in range(i + 1, len(per)):
            pid_a, pfn_a, idx_a, maps_a = per[i]
            pid_b, pfn_b, idx_b, maps_b = per[j]
            common, at_a, at_b = np.intersect1d(pfn_a, pfn_b, assume_unique=True, return_indices=True)
            if not len(common):
                continue
            shared_any[pid_a] = np.union1d(shared_any[pid_a], common)
            shared_any[pid_b] = np.union1d(shared_any[pid_b], common)
            keys, counts = np.unique(np.stack([idx_a[at_a], idx_b[at_b]], axis=1), axis=0, return_counts=True)
            pairs += [Pair(pid_a, maps_a[a].label(), pid_b, maps_b[b].label(), int(n))
                      for (a, b), n in zip(keys.tolist(), counts.tolist())]
    pairs.sort(key=lambda p: (-p.pages, p.pid_a, p.pid_b, p.mapping_a, p.mapping_b))
    frames = np.unique(np.concatenate(list(shared_any.values()))) if shared_any else np.zeros(0)
    return SharedReport(pairs, {pid: len(v) for pid, v in shared_any.items()}, len(frames), changed)

