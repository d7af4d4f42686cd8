"""Frames seen from the processes: which frames processes share (who maps a given
frame: :mod:`pagewalk.analysis.who`).

It walks each process's resident pages once (:meth:`Process.resident_table`:
with PAGEMAP_SCAN only populated ranges are read) and compares PFNs with numpy.
It needs visible PFNs (CAP_SYS_ADMIN).
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ..core.process import Process
from ..errors import InvalidArgument
from ..kernel.maps import mapping_index
from .who import require_frames

__all__ = ["SharedReport", "shared_frames"]

Pair = namedtuple("Pair", "pid_a mapping_a pid_b mapping_b pages start_a perms_a start_b perms_b",
                  defaults=(None, None, None, None))


def _frames_of(process) -> tuple[np.ndarray, np.ndarray, list, np.ndarray]:
    """(PFNs, virtual addresses, the mappings, each page's mapping index) of the
    present pages that hold memory of their own (the zero page left out)."""
    table = process.resident_table()
    maps = table.mappings
    vaddr = table.vaddr[table.resident]
    return table.pfn[table.resident], vaddr, maps, mapping_index(maps, vaddr)


class SharedReport(namedtuple("SharedReport", "pairs per_process frames changed")):
    """``pairs``: ``Pair(pid_a, mapping_a, pid_b, mapping_b, pages, start_a, perms_a,
    start_b, perms_b)``, the pages two
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
    require_frames("shared")
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
            # each mapping with its start and permissions: a library's mappings share its name
            pairs += [Pair(pid_a, maps_a[a].label(), pid_b, maps_b[b].label(), int(n), maps_a[a].start,
                           maps_a[a].perms, maps_b[b].start, maps_b[b].perms)
                      for (a, b), n in zip(keys.tolist(), counts.tolist())]
    pairs.sort(key=lambda p: (-p.pages, p.pid_a, p.pid_b, p.mapping_a, p.mapping_b, p.start_a, p.start_b))
    frames = np.unique(np.concatenate(list(shared_any.values()))) if shared_any else np.zeros(0)
    return SharedReport(pairs, {pid: len(v) for pid, v in shared_any.items()}, len(frames), changed)

