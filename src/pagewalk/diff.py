"""Differences between two snapshots (or a snapshot and the live process).

Pages are compared within the same mapping, identified by start, end, path and
inode (kernel.md 0: a new mapping often reuses the addresses of one just unmapped).
Per page, from state A to state B:

* ``appeared``: present in B, neither present nor swapped in A;
* ``vanished``: present in A, neither present nor swapped in B;
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

import numpy as np

from .maps import Mapping
from .pagemap import PM_PFRAME_MASK, PM_SOFT_DIRTY
from .snapshot import Snapshot

FIELDS = ("appeared", "vanished", "moved", "swapped_out", "swapped_in", "written", "huge_changed")


def _key(m: Mapping) -> tuple:
    return (m.start, m.end, m.path, m.inode)


def _pages_in(snap: Snapshot, m: Mapping) -> slice:
    lo, hi = np.searchsorted(snap.vaddr, [np.uint64(m.start), np.uint64(m.end)])
    return slice(int(lo), int(hi))


def diff(a: Snapshot, b: Snapshot) -> dict:
    """The differences from ``a`` to ``b`` as a dict (the ``diff --json`` document)."""
    ta, tb = a.table(), b.table()
    frames_known = a.meta["pfn_visible"] and b.meta["pfn_visible"]
    written_known = bool(a.meta.get("soft_dirty_cleared"))
    huge_known = bool(a.meta.get("huge_known") and b.meta.get("huge_known"))
    totals = {f: 0 for f in FIELDS}
    rows = []
    keys_b = {_key(m): m for m in b.mappings}
    keys_a = {_key(m) for m in a.mappings}
    for m in a.mappings:
        if _key(m) not in keys_b:
            continue
        sa, sb = _pages_in(a, m), _pages_in(b, m)
        counts = _compare(ta[sa], tb[sb], frames_known, written_known, huge_known)
        if any(counts.values()):
            rows.append({"start": m.start, "end": m.end, "path": m.text_path or None, **counts})
        for f in FIELDS:
            totals[f] += counts[f] or 0
    removed = [m for m in a.mappings if _key(m) not in keys_b]
    added = [m for m in b.mappings if _key(m) not in keys_a]
    for m in removed:
        totals["vanished"] += int(ta[_pages_in(a, m)].present.sum())
    for m in added:
        totals["appeared"] += int(tb[_pages_in(b, m)].present.sum())
    for f, known in (("moved", frames_known), ("written", written_known), ("huge_changed", huge_known)):
        if not known:
            totals[f] = None

    def listing(ms: list[Mapping], snap: Snapshot, table) -> list[dict]:
        return [{"start": m.start, "end": m.end, "perms": m.perms, "path": m.text_path or None,
                 "present": int(table[_pages_in(snap, m)].present.sum())} for m in ms]

    return {"a": _describe(a), "b": _describe(b), "totals": totals,
            "mappings_added": listing(added, b, tb), "mappings_removed": listing(removed, a, ta), "mappings": rows}


def _describe(snap: Snapshot) -> dict:
    return {"pid": snap.meta["pid"], "time": snap.meta["time"]}


def _compare(ta, tb, frames_known: bool, written_known: bool, huge_known: bool) -> dict:
    va, vb = ta.vaddr, tb.vaddr
    common, ia, ib = np.intersect1d(va, vb, assume_unique=True, return_indices=True)
    only_a = np.ones(len(va), dtype=bool)
    only_a[ia] = False
    only_b = np.ones(len(vb), dtype=bool)
    only_b[ib] = False
    pa, pb, sa, sb = ta.present, tb.present, ta.swapped, tb.swapped
    both_present = pa[ia] & pb[ib]
    frame = np.uint64(PM_PFRAME_MASK)
    counts = {
        "appeared": int((pb[only_b]).sum() + (pb[ib] & ~pa[ia] & ~sa[ia]).sum()),
        "vanished": int((pa[only_a]).sum() + (pa[ia] & ~pb[ib] & ~sb[ib]).sum()),
        "moved": int((both_present & ((ta.raw[ia] & frame) != (tb.raw[ib] & frame))).sum()) if frames_known else None,
        "swapped_out": int((pa[ia] & sb[ib]).sum()),
        "swapped_in": int((sa[ia] & pb[ib]).sum()),
        "written": int(((tb.raw & np.uint64(PM_SOFT_DIRTY)) != 0).sum()) if written_known else None,
        "huge_changed": int((both_present & (ta.huge[ia] != tb.huge[ib])).sum()) if huge_known else None,
    }
    return counts


def live(pid: int) -> Snapshot:
    """A snapshot of the live process, not written anywhere."""
    from .process import Process

    with Process(pid) as proc:
        return Snapshot.take(proc)

