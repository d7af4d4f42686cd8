"""The address space as one self-contained HTML page (no network fetches).

The page embeds its data as JSON and its script and style inline
(``picture.html`` beside this module): the mappings, and the populated pages as runs
of consecutive pages with the same state, pagemap bits and kpageflags whose frames
(or swap offsets) are consecutive, so a 4 GiB process whose frames are mostly
contiguous needs few runs.  Large arrays travel as base64 of little-endian typed
arrays.  Needs numpy only.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
from importlib import resources

import numpy as np

from ..analysis.picture import (COLORS, LABELS, PRESENT_STATES, STATES, UNKNOWN, ZERO, AddressSpace,
                                physical_raster, ram_ranges)
from ..core import flags
from ..kernel.outfile import write_private
from ..kernel.pagemap import PAGE_SIZE
from ..names import printable

__all__ = ["runs", "document", "write", "b64", "embed"]

PHYS_WIDTH, PHYS_HEIGHT = 100, 280  # cells of the physical panel
PAGEMAP_BITS = ((55, "soft-dirty"), (56, "exclusive"), (57, "uffd-wp"), (58, "guard"), (61, "file/shared"),
                (62, "swapped"), (63, "present"))


def b64(array: np.ndarray, dtype) -> str:
    """``array`` as base64 of little-endian ``dtype`` (how the pages carry arrays)."""
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode()


def runs(space: AddressSpace) -> dict:
    """The populated pages as runs (see the module doc), base64-encoded."""
    idx, state, pfn = space.index, space.state, space.pfn
    pm = ((space.raw >> np.uint64(55)) & np.uint64(0x1FF)).astype(np.uint16)
    kf = space.kpageflags if space.kpageflags is not None else np.zeros(len(idx), dtype=np.uint64)
    step = np.where(state[1:] == ZERO, 0, 1)  # the zero page repeats one frame
    same_frame_run = ((pfn[1:] >= 0) & (pfn[1:] == pfn[:-1] + step)) | ((pfn[1:] < 0) & (pfn[:-1] < 0))
    cut = np.ones(len(idx), dtype=bool)
    cut[1:] = ((idx[1:] != idx[:-1] + 1) | (state[1:] != state[:-1]) | (pm[1:] != pm[:-1]) | (kf[1:] != kf[:-1])
               | ~same_frame_run)
    first = np.flatnonzero(cut)
    columns = {"index": idx[first], "length": np.diff(np.append(first, len(idx))), "state": state[first],
               "pfn": pfn[first], "pm": pm[first], "kf": kf[first]}
    if space.unknown_ranges:  # the empty pages of those mappings may be in swap: unknown runs, not untouched
        columns = _with_unknown_gaps(columns, idx, space.unknown_ranges)
    kflags = space.kpageflags is not None
    kf = columns["kf"]
    return {"index": b64(columns["index"], np.float64), "length": b64(columns["length"], np.uint32),
            "state": b64(columns["state"], np.uint8), "pfn": b64(columns["pfn"], np.float64),
            "pm": b64(columns["pm"], np.uint16),
            "kf_lo": b64(kf & np.uint64(0xFFFFFFFF), np.uint32) if kflags else None,
            "kf_hi": b64(kf >> np.uint64(32), np.uint32) if kflags else None}


def _with_unknown_gaps(columns: dict, idx: np.ndarray, ranges: list[tuple[int, int]]) -> dict:
    """``columns`` (runs) with a run of state UNKNOWN for each gap between populated
    pages inside each of ``ranges`` (picture pages [first, end)), in index order."""
    starts, ends = [], []
    for first, end in ranges:  # a few mappings; the gaps of each in numpy
        inside = idx[(idx >= first) & (idx < end)]
        starts.append(np.concatenate(([first], inside + 1)))
        ends.append(np.concatenate((inside, [end])))
    start, stop = np.concatenate(starts), np.concatenate(ends)
    keep = stop > start
    n = int(keep.sum())
    gaps = {"index": start[keep], "length": stop[keep] - start[keep], "state": np.full(n, UNKNOWN),
            "pfn": np.full(n, -1), "pm": np.zeros(n), "kf": np.zeros(n, dtype=np.uint64)}
    merged = {k: np.concatenate((columns[k], gaps[k].astype(columns[k].dtype))) for k in columns}
    order = np.argsort(merged["index"], kind="stable")
    return {k: v[order] for k, v in merged.items()}


def document(space: AddressSpace) -> str:
    """The HTML page, as text."""
    maps = space.mappings
    m = np.searchsorted(space.first[1:], space.index, side="right")  # mapping of each populated page
    per_map = np.bincount(m * len(STATES) + space.state, minlength=len(maps) * len(STATES)).reshape(-1, len(STATES))
    per_map[:, 0] = np.diff(space.first) - per_map[:, 1:].sum(axis=1)
    for i, m in enumerate(maps):  # unknown rather than untouched (AddressSpace.counts)
        if space.unknown_ranges and (int(space.first[i]), int(space.first[i + 1])) in space.unknown_ranges:
            per_map[i, UNKNOWN], per_map[i, 0] = per_map[i, 0], 0
    ram = ram_ranges() if space.pfn_visible else []
    physical = None
    if ram:
        rgb = physical_raster(space, ram, PHYS_WIDTH, PHYS_HEIGHT)
        physical = {"width": PHYS_WIDTH, "height": PHYS_HEIGHT, "rgb": b64(rgb.reshape(-1), np.uint8),
                    "ranges": [[r.start_pfn, r.end_pfn, r.node] for r in ram],
                    "total_pages": sum(r.end_pfn - r.start_pfn for r in ram)}
    data = {
        "pid": space.pid, "command": printable(space.command), "page_size": PAGE_SIZE, "pfn_visible": space.pfn_visible,
        "kernel": os.uname().release, "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "states": list(STATES), "labels": list(LABELS), "present_states": list(PRESENT_STATES),
        "colors": list(COLORS), "totals": space.totals(),
        "mappings": {"start": [x.start for x in maps], "end": [x.end for x in maps], "perms": [x.perms for x in maps],
                     "name": [printable(x.label()) for x in maps], "first": space.first.tolist(),
                     "counts": per_map.tolist()},
        "runs": runs(space), "pm_bits": [list(b) for b in PAGEMAP_BITS],
        "kflag_bits": [[f.bit, f.name] for f in flags.FLAGS], "physical": physical,
    }
    return embed("picture.html", data, {"__PID__": str(space.pid)})


def embed(template_name: str, data: dict, fields: dict[str, str] | None = None) -> str:
    """The page ``template_name`` (beside this module) with ``data`` as JSON in place of
    ``__DATA__`` (and each of ``fields`` in place of its key)."""
    # No "<" at all inside the script element: "</script>" or "<!--<script>" in a
    # process, file or cgroup name would end or swallow it.  JSON spells it "\u003c".
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    template = resources.files(__package__).joinpath(template_name).read_text(encoding="utf-8")
    for key, value in (fields or {}).items():
        template = template.replace(key, value)
    return template.replace("__DATA__", payload)


def write(space: AddressSpace, path: str, force: bool = False) -> None:
    """Write the page to ``path`` (mode 0600: it holds physical addresses; ``force``: as
    :func:`pagewalk.kernel.outfile.write_private`'s)."""
    text = document(space).encode("utf-8")
    write_private(path, lambda f: f.write(text), force)
