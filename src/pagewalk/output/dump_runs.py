"""One line per run of pages: ``pagewalk dump --format text`` (the default)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..core.pagetable import PageTable
from ..kernel.maps import Mapping
from ..names import printable
from . import vecfmt as vf
from .dump import Format

__all__ = ["FEW_RUNS", "TextFormat"]


# Page-state columns that make a run's key, in the order their names are printed.
_STATE_BITS = ("present", "zero", "huge", "swapped", "swap_ambiguous", "guard", "uffd_wp", "file", "exclusive",
               "soft_dirty", "shmem_swapped", "shmem_unknown")
_STATE_NAMES = {"swap_ambiguous": "swapped-or-uffd-marker", "shmem_swapped": "swapped (shared memory)",
                "shmem_unknown": "untouched or swapped (shared memory): unknown to this reader"}

FEW_RUNS = 8  # _lines() formats this few runs one by one (a loop costs less than the arrays)


@functools.lru_cache(maxsize=256)
def _state_words(key: int) -> str:
    words = [_STATE_NAMES.get(name, name) for i, name in enumerate(_STATE_BITS) if key >> i & 1]
    if key >> len(_STATE_BITS) & 1:
        words.append("migration-or-special-entry")
    if not words:
        return "untouched"
    if "zero" in words:
        words.remove("present")
    if key >> _STATE_BITS.index("shmem_swapped") & 1:
        words.remove("swapped")  # said in full at the end
    return ",".join(words)


@dataclass
class _Runs:
    """Runs of pages, one element each: start address (bytes), length (pages),
    state key (bits of _STATE_BITS), first and last frame (-1 where none is shown)."""

    vaddr: np.ndarray
    count: np.ndarray
    key: np.ndarray
    first: np.ndarray
    last: np.ndarray

    def __getitem__(self, part: slice) -> _Runs:
        return _Runs(self.vaddr[part], self.count[part], self.key[part], self.first[part], self.last[part])

    def copy(self) -> _Runs:
        return _Runs(self.vaddr.copy(), self.count.copy(), self.key.copy(), self.first.copy(), self.last.copy())


class TextFormat(Format):
    """For people: one header per mapping, then one line per run of pages with the
    same state, consecutive addresses and (where shown) consecutive frames."""

    def __init__(self, *, filtered: bool = False) -> None:
        self.filtered = filtered
        self.page_size = 4096  # set from each table
        self._pending: _Runs | None = None  # the last run, which the next chunk may extend
        self._header: bytes | None = None  # a mapping's header line, until it has a run to show

    def mapping(self, m: Mapping, lo: int, hi: int) -> bytes:
        """The mapping's header line (:meth:`Format.mapping`); held back, and b"", when
        ``filtered``, until the mapping has a run to show."""
        line = f"{m.start:x}-{m.end:x} {m.perms} {printable(m.label())}"
        if (lo, hi) != (m.start, m.end):
            line += f"  (showing {lo:x}-{hi:x})"
        if m.is_vsyscall:
            line += "\n  (no pagemap entries: above the end of user space)"
        header = (line + "\n").encode()
        if self.filtered:
            self._header = header  # printed with the mapping's first run, if any
            return b""
        return header

    def _with_header(self, text: bytes) -> bytes:
        if text and self._header is not None:
            text, self._header = self._header + text, None
        return text

    def _keys(self, table: PageTable) -> np.ndarray:
        key = np.zeros(len(table), dtype=np.int64)
        for i, name in enumerate(_STATE_BITS):
            col = getattr(table, name)
            if col is not None:
                key |= col.astype(np.int64) << i
        other = table.swap_entry & ~table.swapped & ~table.guard & ~table.swap_ambiguous & ~table.uffd_wp
        key |= other.astype(np.int64) << len(_STATE_BITS)
        return key

    def chunk(self, m: Mapping, table: PageTable, keep: np.ndarray | None) -> bytes:
        """The lines of the runs of kept pages that this chunk ends (:meth:`Format.chunk`);
        the last run is held back, as the next chunk may continue it."""
        self.page_size = table.page_size
        if keep is None and len(table) and table.untouched():
            # Untouched (a big reservation): one run, no per-page work.
            one = np.array([0])
            runs, first_step = _Runs(np.array([table.start]), np.array([len(table)]), one, one - 1, one - 1), 1
        else:
            found = self._runs(table, keep)
            if found is None:
                return b""
            runs, first_step = found
        out = b""
        p = self._pending
        if p is not None:
            # Join the previous chunk's last run when this chunk continues it.
            if (int(p.vaddr[0]) + int(p.count[0]) * table.page_size == runs.vaddr[0] and p.key[0] == runs.key[0]
                    and (runs.first[0] < 0 or runs.first[0] == int(p.last[0]) + first_step)):
                runs.vaddr[0], runs.count[0], runs.first[0] = p.vaddr[0], runs.count[0] + p.count[0], p.first[0]
            else:
                out = self._lines(p)
        self._pending = runs[-1:].copy()
        return self._with_header(out + self._lines(runs[:-1]))

    def _runs(self, table: PageTable, keep: np.ndarray | None) -> tuple[_Runs, int] | None:
        """Runs of the kept pages and the frame step the first page expects (1, or 0
        for the zero page); None where no page is kept."""
        idx = np.arange(len(table), dtype=np.int64)
        key = self._keys(table)
        frame = np.where(table.present, table.pfn, np.where(table.swapped, table.swap_offset, -1))
        # Frames must be consecutive within a run, except the zero page's: one frame for all.
        zero = table.zero if table.zero is not None else np.zeros(len(table), dtype=bool)
        step = np.where(zero, 0, 1)
        if keep is not None:
            idx, key, frame, step = idx[keep], key[keep], frame[keep], step[keep]
        if len(idx) == 0:
            return None
        vaddr = table.start + idx * table.page_size
        follows = np.ones(len(idx), dtype=bool)
        follows[1:] = ((idx[1:] == idx[:-1] + 1) & (key[1:] == key[:-1])
                       & ((frame[1:] < 0) | (frame[1:] == frame[:-1] + step[1:])))
        starts = np.flatnonzero(~follows)
        if len(starts) == 0 or starts[0] != 0:
            starts = np.concatenate([[0], starts])
        ends = np.append(starts[1:], len(idx))
        return _Runs(vaddr[starts], ends - starts, key[starts], frame[starts], frame[ends - 1]), int(step[0])

    def end_mapping(self) -> bytes:
        """The held-back last run of the mapping (:meth:`Format.end_mapping`)."""
        p, self._pending = self._pending, None
        text = b"" if p is None else self._with_header(self._lines(p))
        self._header = None
        return text

    def _line(self, vaddr: int, count: int, key: int, first: int, last: int) -> str:
        """One run as :meth:`_lines` prints it (kept identical: tests compare both)."""
        kind = 1 if key & 1 else 2 if key >> _STATE_BITS.index("swapped") & 1 else 0
        frames = ("", "pfn ", "swap ")[kind]
        if kind and first < 0:
            frames += "-"
        elif kind:
            frames += f"{first:x}" + (f"-{last:x}" if last != first else "")
        plural = "  " if count == 1 else "s "
        return (f"  {vaddr:x}-{vaddr + count * self.page_size:x} {count:>9} page{plural}{frames:<24} "
                f"{_state_words(key)}\n")

    def _lines(self, runs: _Runs) -> bytes:
        vaddr, count, key, first, last = runs.vaddr, runs.count, runs.key, runs.first, runs.last
        n = len(vaddr)
        if n == 0:
            return b""
        if n <= FEW_RUNS:  # a loop over a few runs costs less than setting up the arrays
            return "".join(map(self._line, vaddr.tolist(), count.tolist(), key.tolist(), first.tolist(),
                               last.tolist())).encode()
        page = self.page_size
        uniq, inv = np.unique(key, return_inverse=True)
        words = [_state_words(int(k)) for k in uniq]
        present = (key & 1) != 0
        swapped = (key >> _STATE_BITS.index("swapped") & 1) != 0
        framed = present | swapped
        kind = np.where(present, 1, np.where(swapped, 2, 0))
        unknown = framed & (first < 0)
        single = count == 1
        first_col = vf.nullable(vf.hex_col(np.maximum(first, 0)), ~framed | unknown, "")
        last_col = vf.nullable(
            vf.join([vf.const(b"-", n), vf.hex_col(np.maximum(last, 0))]), ~framed | unknown | (first == last), "")
        frames = [vf.choice_col(kind + 3 * unknown, ["", "pfn ", "swap ", "", "pfn -", "swap -"]),
                  first_col, last_col]
        return vf.render([
            vf.const(b"  ", n),
            vf.hex_col(vaddr.astype(np.uint64)), vf.const(b"-", n),
            vf.hex_col((vaddr + count * page).astype(np.uint64)), vf.const(b" ", n),
            vf.pad(vf.dec_col(count), 9, right=True), vf.const(b" page" , n),
            vf.choice_col(single.astype(np.intp), [b"s ", b"  "]),
            vf.pad(vf.join(frames), 24), vf.const(b" ", n),
            vf.choice_col(inv, words), vf.const(b"\n", n),
        ])
