"""``types -l`` and ``-L``: page-types' lists of frames, rendered a batch at a time
with numpy (:mod:`pagewalk.output.vecfmt`)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..analysis.pagetypes import Batch, Options
from ..core import flags as fl
from . import vecfmt as vf

__all__ = ["Lister"]


class _Run(NamedTuple):
    """A run of ``-l``: first virtual page and frame, length (pages), flags, cgroup
    inode and map count."""

    voffset: int
    offset: int
    count: int
    flags: int
    cgroup: int
    mapcnt: int


class Lister:
    """page-types' ``-l`` (runs of pages with equal flags, cgroup and map count and
    consecutive frames and virtual pages) and ``-L`` (one line a page), written
    to ``out`` as batches arrive; a run may continue into the next batch."""

    def __init__(self, options: Options, out, voffset_column: str | None) -> None:
        self.o = options
        self.out = out
        self.voffset_column = voffset_column  # "voffset", "foffset" or None
        self.pending: _Run | None = None  # the last run, which the next batch may extend

    def header(self) -> str:
        """The column names line of the listing, tab-separated as page-types prints it."""
        cols = [self.voffset_column] if self.voffset_column else []
        cols += ["cgroup"] if self.o.list_cgroup else []
        cols += ["map-cnt"] if self.o.list_mapcnt else []
        cols += ["offset", "len", "flags"] if self.o.list_mode == 1 else ["offset", "flags"]
        return "\t".join(cols) + "\n"

    def add(self, batch: Batch, flags: np.ndarray) -> None:
        """Write the lines of ``batch`` whose kpageflags bits (as ``-b`` shows them) are
        ``flags``, one per page; the last run is held back (:meth:`flush`)."""
        n = len(flags)
        if n == 0:
            return
        zeros = np.zeros(n, dtype=np.uint64)
        cg = batch.cgroup if batch.cgroup is not None else zeros
        cnt = batch.mapcnt if batch.mapcnt is not None else zeros
        voff = batch.voffset.astype(np.uint64)
        off = batch.offset.astype(np.uint64)
        if self.o.list_mode == 2:
            self.out.write(self._render(voff, off, None, flags, cg, cnt))
            return
        one = np.uint64(1)
        same = ((flags[1:] == flags[:-1]) & (cg[1:] == cg[:-1]) & (cnt[1:] == cnt[:-1])
                & (off[1:] == off[:-1] + one) & (voff[1:] == voff[:-1] + one))
        starts = np.concatenate(([0], np.flatnonzero(~same) + 1))
        lengths = np.diff(np.concatenate((starts, [n])))
        p = self.pending
        if (p is not None and (p.flags, p.cgroup, p.mapcnt) == (int(flags[0]), int(cg[0]), int(cnt[0]))
                and int(off[0]) == p.offset + p.count and int(voff[0]) == p.voffset + p.count):
            self.pending = p._replace(count=p.count + int(lengths[0]))
            starts, lengths = starts[1:], lengths[1:]
        if len(starts) == 0:
            return
        self.flush()
        last = len(starts) - 1
        k = starts[:last]
        self.out.write(self._render(voff[k], off[k], lengths[:last].astype(np.uint64), flags[k], cg[k], cnt[k]))
        s = starts[last]
        self.pending = _Run(int(voff[s]), int(off[s]), int(lengths[last]), int(flags[s]), int(cg[s]), int(cnt[s]))

    def flush(self) -> None:
        """Write the run held back for the next batch, if any."""
        if self.pending is not None:
            p, self.pending = self.pending, None
            self.out.write(self._render(*(np.array([x], dtype=np.uint64) for x in p)))

    def _render(self, voff, off, length, flags, cg, cnt) -> bytes:
        n = len(off)
        if n == 0:
            return b""
        tab = vf.const(b"\t", n)
        cols = []
        if self.voffset_column:
            cols += [vf.hex_col(voff), tab]
        if self.o.list_cgroup:
            cols += [vf.const(b"@", n), vf.dec_col(cg), tab]
        if self.o.list_mapcnt:
            cols += [vf.dec_col(cnt), tab]
        cols += [vf.hex_col(off), tab]
        if length is not None:
            cols += [vf.hex_col(length), tab]
        values, index = np.unique(flags, return_inverse=True)
        cols += [vf.choice_col(index, [fl.symbolic(v) for v in values.tolist()]), vf.const(b"\n", n)]
        return vf.render(cols)
