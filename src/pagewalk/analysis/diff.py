"""Differences between two snapshots (or a snapshot and the live process).

Pages are compared within the same mapping.  A mapping of A and one of B are the
same when they have the same path, device and inode (a file's at the same file
offset for each address), overlap, and together start at the same address, or
end at the same address for a mapping that grows down (a stack): so a mapping
that grew or shrank in place (a heap after brk, mremap, munmap of its tail) or
whose areas were merged or split (mprotect, madvise) is still the same, its pages
compared address by address.  A new mapping at the addresses of one just unmapped
(mmap often reuses them) is not the same unless it starts where the old one started.
Per page, from state A to state B:

* ``appeared``: present in B, neither present nor swapped in A (pages of a part
  the mapping grew by count here);
* ``vanished``: present in A, neither present nor swapped in B (pages of a part
  cut off count here);
* ``moved``: present in both, on another frame (compaction, migration, a
  copy-on-write break, KSM merging); None where frames were hidden;
* ``swapped_out`` / ``swapped_in``: present in A and swapped in B, or the reverse;
* ``written``: soft-dirty in B, where A cleared the soft-dirty bits when it was
  taken (``snapshot --clear-soft-dirty``, kernels with CONFIG_MEM_SOFT_DIRTY); None
  otherwise;
* ``huge_changed``: present in both, mapped huge in one and not the other.

The present pages of a mapping that is only in A count as vanished, of one only in
B as appeared; those mappings are listed in ``mappings_removed`` / ``mappings_added``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..core.process import Process
from ..kernel.maps import Mapping
from ..kernel.pagemap import PAGE_SHIFT, PM_PFRAME_MASK, PM_SOFT_DIRTY
from ..kernel.smaps import vm_flags
from .snapshot import Snapshot

__all__ = ["FIELDS", "diff", "different_process", "live"]

FIELDS = ("appeared", "vanished", "moved", "swapped_out", "swapped_in", "written", "huge_changed")


def _identity(m: Mapping) -> tuple:
    # text_path: Parquet keeps a path's bytes that are not UTF-8 as \xNN, as every text format does
    return (m.text_path, m.dev, m.inode)


def _file_page_zero(m: Mapping) -> int | None:
    """The page number the file's page 0 would have: equal for two mappings of the
    same file that map each address to the same file page.  None for anonymous
    memory, whose offset maps does not show."""
    return ((m.start - m.offset) >> PAGE_SHIFT) if m.inode else None


def _pages_in(snap: Snapshot, m: Mapping) -> slice:
    lo, hi = np.searchsorted(snap.vaddr, [np.uint64(m.start), np.uint64(m.end)])
    return slice(int(lo), int(hi))


class _Same(NamedTuple):
    """One mapping over time: its areas in A and in B (address-sorted, neither empty)."""

    in_a: list[Mapping]
    in_b: list[Mapping]

    @property
    def start(self) -> int:
        return min(self.in_a[0].start, self.in_b[0].start)

    @property
    def end(self) -> int:
        return max(self.in_a[-1].end, self.in_b[-1].end)


def _same_mappings(a: Snapshot, b: Snapshot) -> tuple[list[_Same], list[Mapping], list[Mapping]]:
    """The mappings of A and B grouped into the same mappings over time: ``(same,
    removed, added)``, each address-sorted."""
    # Areas of one identity that overlap across A and B are joined (union-find);
    # each joined group is then one mapping if it kept its start (or its end, growing down).
    areas = [("a", m) for m in a.mappings] + [("b", m) for m in b.mappings]
    parent = list(range(len(areas)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_identity: dict[tuple, list[int]] = {}
    for i, (_, m) in enumerate(areas):
        by_identity.setdefault((*_identity(m), _file_page_zero(m)), []).append(i)
    for members in by_identity.values():
        members.sort(key=lambda i: (areas[i][1].start, areas[i][1].end))
        reach, holder = -1, -1  # the furthest end so far, and whose
        for i in members:  # overlapping areas, swept in address order
            m = areas[i][1]
            if m.start < reach:
                parent[root(i)] = root(holder)
            if m.end > reach:
                reach, holder = m.end, i
    joined: dict[int, tuple[list[Mapping], list[Mapping]]] = {}
    for i, (side, m) in enumerate(areas):
        joined.setdefault(root(i), ([], []))[side == "b"].append(m)
    groups, removed, added = [], [], []
    for in_a, in_b in joined.values():
        if in_a and in_b and (in_a[0].start == in_b[0].start or (
                in_a[-1].end == in_b[-1].end and _grows_down(in_a, in_b, a, b))):
            groups.append(_Same(in_a, in_b))
        else:
            removed += in_a
            added += in_b
    removed.sort(key=lambda m: m.start)
    added.sort(key=lambda m: m.start)
    groups.sort(key=lambda g: g.start)
    return groups, removed, added


def _grows_down(in_a: list[Mapping], in_b: list[Mapping], a: Snapshot, b: Snapshot) -> bool:
    """Whether the mapping these areas make grows down (VM_GROWSDOWN): the main stack
    by its name, any other by the VmFlags of a live side's smaps."""
    if in_b[-1].path == "[stack]":
        return True
    for snap, m in ((b, in_b[-1]), (a, in_a[-1])):
        if snap.meta.get("live"):
            return "gd" in vm_flags(snap.pid, m.start)
    return False


def _rows_of(snap: Snapshot, areas: list[Mapping]):
    """The recorded pages of ``areas`` (sorted): a slice, or an index array when
    they are apart."""
    parts = [_pages_in(snap, m) for m in areas]
    if all(p.stop == q.start for p, q in zip(parts, parts[1:])):
        return slice(parts[0].start, parts[-1].stop)
    return np.concatenate([np.arange(p.start, p.stop) for p in parts])


def diff(a: Snapshot, b: Snapshot) -> dict:
    """The differences from ``a`` to ``b`` as a dict (the ``diff --json`` document):
    ``a``/``b`` describe each snapshot; ``totals`` and each of ``mappings`` (a mapping
    in both, by ``start``/``end`` in bytes) count pages per :data:`FIELDS`, None where a
    side could not know them; ``mappings_added``/``mappings_removed`` list the mappings
    of one side only with their ``present`` pages.  Snapshots of different processes
    are compared by address alone (:func:`different_process` says so)."""
    ta, tb = a.table(), b.table()
    frames_known = a.meta["pfn_visible"] and b.meta["pfn_visible"]
    written_known = bool(a.meta.get("soft_dirty_cleared"))
    huge_known = bool(a.meta.get("huge_known") and b.meta.get("huge_known"))
    totals: dict[str, int | None] = {f: 0 for f in FIELDS}
    rows = []
    groups, removed, added = _same_mappings(a, b)
    unknown_a, unknown_b = _shmem_swap_unknown(a), _shmem_swap_unknown(b)
    unknowable = set()
    for same in groups:
        in_a, in_b = same
        counts = _compare(ta, _rows_of(a, in_a), tb, _rows_of(b, in_b), frames_known, written_known, huge_known)
        # shared memory whose swap a side could not look up: a page that left (or came)
        # there may have gone to swap (or come from it)
        if counts["vanished"] and any((m.start, m.end) in unknown_b for m in in_b):
            counts["vanished"] = counts["swapped_out"] = None
        if counts["appeared"] and any((m.start, m.end) in unknown_a for m in in_a):
            counts["appeared"] = counts["swapped_in"] = None
        unknowable.update(f for f, v in counts.items() if v is None)
        if any(counts.values()) or any(counts[f] is None for f in ("vanished", "appeared")):
            rows.append({"start": same.start, "end": same.end, "path": in_b[0].text_path or None, **counts})
        for f in FIELDS:
            totals[f] += counts[f] or 0
    for m in removed:
        totals["vanished"] += int(ta[_pages_in(a, m)].present.sum())
    for m in added:
        totals["appeared"] += int(tb[_pages_in(b, m)].present.sum())
    for f, known in (("moved", frames_known), ("written", written_known), ("huge_changed", huge_known)):
        if not known:
            totals[f] = None
    for f in unknowable:
        totals[f] = None

    def listing(ms: list[Mapping], snap: Snapshot, table) -> list[dict]:
        return [{"start": m.start, "end": m.end, "perms": m.perms, "path": m.text_path or None,
                 "present": int(table[_pages_in(snap, m)].present.sum())} for m in ms]

    return {"a": _describe(a), "b": _describe(b), "totals": totals,
            "mappings_added": listing(added, b, tb), "mappings_removed": listing(removed, a, ta), "mappings": rows}


def _shmem_swap_unknown(snap: Snapshot) -> set[tuple[int, int]]:
    """The (start, end) of the shared-memory mappings whose swap was not looked up."""
    return {tuple(r) for r in snap.meta.get("shmem_swap_unknown", [])}


def different_process(a: Snapshot, b: Snapshot) -> str | None:
    """One line saying how ``a`` and ``b`` are not of one process (another PID, or
    the same PID running another command: an exec, or the PID reused), or None.
    Commands are compared by ``comm``: servers rewrite their argv as they run."""
    comm_a, comm_b = a.meta.get("comm"), b.meta.get("comm")
    pid_a, pid_b = a.meta.get("pid"), b.meta.get("pid")
    sides = f"PID {pid_a} ({comm_a or '?'}) and PID {pid_b} ({comm_b or '?'})"
    if pid_a != pid_b:
        return f"{sides} are different processes: pages are compared by address alone"
    if comm_a and comm_b and comm_a != comm_b:
        return f"{sides} are different commands (an exec, or the PID was reused): pages are compared by address alone"
    return None


def _describe(snap: Snapshot) -> dict:
    return {"pid": snap.meta["pid"], "time": snap.meta["time"]}


def _compare(ta, rows_a, tb, rows_b, frames_known: bool, written_known: bool, huge_known: bool) -> dict:
    """Counts of one mapping: the pages ``rows_a`` of table ``ta`` against ``rows_b`` of ``tb``."""
    va, vb = ta.vaddr[rows_a], tb.vaddr[rows_b]
    common, ia, ib = np.intersect1d(va, vb, assume_unique=True, return_indices=True)
    only_a = np.ones(len(va), dtype=bool)
    only_a[ia] = False
    only_b = np.ones(len(vb), dtype=bool)
    only_b[ib] = False
    pa, pb, sa, sb = ta.present[rows_a], tb.present[rows_b], ta.swapped[rows_a], tb.swapped[rows_b]
    raw_a, raw_b = ta.raw[rows_a], tb.raw[rows_b]
    both_present = pa[ia] & pb[ib]
    frame = np.uint64(PM_PFRAME_MASK)
    counts = {
        "appeared": int((pb[only_b]).sum() + (pb[ib] & ~pa[ia] & ~sa[ia]).sum()),
        "vanished": int((pa[only_a]).sum() + (pa[ia] & ~pb[ib] & ~sb[ib]).sum()),
        "moved": int((both_present & ((raw_a[ia] & frame) != (raw_b[ib] & frame))).sum()) if frames_known else None,
        "swapped_out": int((pa[ia] & sb[ib]).sum()),
        "swapped_in": int((sa[ia] & pb[ib]).sum()),
        "written": int(((raw_b & np.uint64(PM_SOFT_DIRTY)) != 0).sum()) if written_known else None,
        "huge_changed": int((both_present & (ta.huge[rows_a][ia] != tb.huge[rows_b][ib])).sum()) if huge_known else None,
    }
    return counts


def live(pid: int) -> Snapshot:
    """A snapshot of the live process, not written anywhere; its ``notes`` what could
    not be known of the process (``meta["mappings_changed"]``: what changed as it was read)."""
    with Process(pid) as proc:
        snap = Snapshot.take(proc)
        snap.notes = list(proc.notes)
    snap.meta["live"] = True  # (never saved) its smaps may be asked what a mapping is
    return snap

