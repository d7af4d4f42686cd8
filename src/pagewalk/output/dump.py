"""Per-page output formats of ``pagewalk dump``: seed, text, csv, jsonl.

Each format turns one chunk of a mapping's page table (a
:class:`~pagewalk.pagetable.PageTable` and the mask of pages kept) into bytes,
vectorised, so output streams in bounded memory.
"""

from __future__ import annotations

import functools
import json
import os

import numpy as np

from ..kernel.maps import Mapping
from ..names import printable, unicode_text
from ..kernel.pagemap import PM_FILE, PM_PFRAME_MASK, PM_PRESENT, PM_SOFT_DIRTY, PM_SWAP
from ..core.pagetable import PageTable
from . import vecfmt as vf

U64 = np.uint64


class Format:
    """Base: ``header()``, then ``mapping()`` per mapping and ``chunk()`` per table.

    Formats with ``batches`` set also take many small tables of several mappings
    at once (:meth:`batch`), so a process of thousands of small mappings is not
    formatted mapping by mapping."""

    batches = False

    def batch(self, items: list[tuple[Mapping, PageTable, np.ndarray | None]]) -> bytes:
        """The pages of several ``(mapping, table, keep)`` items, in order."""
        merged = PageTable.concat([(t, k) for _, t, k in items])
        lengths = [len(t) if k is None else int(np.count_nonzero(k)) for _, t, k in items]
        index = np.repeat(np.arange(len(items)), lengths)
        return self.rows([m for m, _, _ in items], index, merged)

    def rows(self, maps: list[Mapping], index: np.ndarray | None, table: PageTable) -> bytes:
        """Every page of ``table``; row ``i`` belongs to ``maps[index[i]]`` (``maps[0]``
        for all rows when ``index`` is None)."""
        raise NotImplementedError

    def header(self) -> bytes:
        return b""

    def mapping(self, m: Mapping, lo: int, hi: int) -> bytes:
        return b""

    def chunk(self, m: Mapping, table: PageTable, keep: np.ndarray | None) -> bytes:
        raise NotImplementedError

    def end_mapping(self) -> bytes:
        return b""

    def footer(self) -> bytes:
        return b""


def _mapping_col(maps: list[Mapping], index: np.ndarray | None, n: int, text) -> vf.Column:
    """The per-row mapping field: ``text(mapping)`` of each row's mapping."""
    if index is None:
        return vf.const(text(maps[0]), n)
    return vf.choice_col(index, [text(m) for m in maps])


class SeedFormat(Format):
    """Byte for byte the seed's ``pagemap_dump.c``: ``addr pfn soft-dirty file/shared
    swapped present library``, the frame field printed raw as the seed does."""

    def header(self) -> bytes:
        return b"addr pfn soft-dirty file/shared swapped present library\n"

    batches = True

    def chunk(self, m: Mapping, table: PageTable, keep: np.ndarray | None) -> bytes:
        if keep is None and len(table) and not table.raw.any():
            fast = self._untouched(m, table)
            if fast is not None:
                return fast
        return self.rows([m], None, table if keep is None else PageTable.concat([(table, keep)]))

    def rows(self, maps: list[Mapping], index: np.ndarray | None, table: PageTable) -> bytes:
        raw = table.raw
        n = len(raw)
        if n == 0:
            return b""
        sp = vf.const(b" ", n)
        return vf.render([
            vf.hex_col(table.vaddr), sp,
            vf.hex_col(raw & U64(PM_PFRAME_MASK)), sp,
            vf.bit_col((raw & U64(PM_SOFT_DIRTY)) != 0), sp,
            vf.bit_col((raw & U64(PM_FILE)) != 0), sp,
            vf.bit_col((raw & U64(PM_SWAP)) != 0), sp,
            vf.bit_col((raw & U64(PM_PRESENT)) != 0), sp,
            _mapping_col(maps, index, n, lambda m: os.fsencode(m.path) + b"\n"),
        ])

    @staticmethod
    def _untouched(m: Mapping, table: PageTable) -> bytes | None:
        """Fast path for untouched ranges (big reservations): every line is the page
        number in hex, ``000``, and the same tail, so no per-field masks are needed.
        None where that does not hold (other page sizes, page 0, a change of width)."""
        first_vpn = table.start // table.page_size
        last_vpn = first_vpn + len(table) - 1
        width = max(1, (first_vpn.bit_length() + 3) // 4)
        if table.page_size != 4096 or first_vpn == 0 or width != (last_vpn.bit_length() + 3) // 4:
            return None
        vpns = np.arange(first_vpn, last_vpn + 1, dtype=np.uint64)
        n = len(vpns)
        return vf.render([vf.hex_fixed(vpns, width), vf.const(b"000 0 0 0 0 0 " + os.fsencode(m.path) + b"\n", n)])


ROW_FIELDS = ("vaddr", "pfn", "present", "swapped", "file", "exclusive", "soft_dirty", "uffd_wp", "guard",
              "zero", "swap_type", "swap_offset", "mapping", "shmem_swapped")  # new columns at the end
_BOOL_FIELDS = ("present", "file", "exclusive", "soft_dirty", "uffd_wp", "guard", "zero")


def _record_columns(maps: list[Mapping], index: np.ndarray | None, table: PageTable, *, true: str, false: str,
                    null: str, quote) -> list[vf.Column]:
    """The per-page fields of csv and jsonl, in ROW_FIELDS order (no separators)."""
    n = len(table)
    cols: dict[str, vf.Column] = {"vaddr": vf.dec_col(table.vaddr)}
    for name in ("pfn", "swap_type", "swap_offset"):
        values = getattr(table, name)
        cols[name] = vf.nullable(vf.dec_col(np.maximum(values, 0)), values < 0, null)
    for name in _BOOL_FIELDS:
        flags = getattr(table, name)
        cols[name] = vf.const(null, n) if flags is None else vf.bool_col(flags, true, false)
    # in swap, or not: unknown where this reader cannot tell (states.py)
    unknown = table.swapped_unknown
    shmem = table.shmem_swapped if table.shmem_swapped is not None else np.zeros(n, dtype=bool)
    for name, flags in (("swapped", table.swapped), ("shmem_swapped", shmem)):
        col = vf.bool_col(flags, true, false)
        cols[name] = col if unknown is None else vf.nullable(col, unknown, null)
    cols["mapping"] = _mapping_col(maps, index, n, lambda m: quote(m.path))
    return [cols[f] for f in ROW_FIELDS]


def _interleave(cols: list[vf.Column], seps: list[bytes], n: int) -> list[vf.Column]:
    out: list[vf.Column] = []
    for sep, col in zip(seps, cols):
        if sep:
            out.append(vf.const(sep, n))
        out.append(col)
    return out


class RecordFormat(Format):
    """One record per page (csv, jsonl), rendered in slices of :attr:`SLICE_ROWS`
    rows so that wide rows stay within bounded memory."""

    SLICE_ROWS = 1 << 14
    true = false = null = ""
    seps: list[bytes] = []
    end = b"\n"

    def quote(self, path: str) -> str:
        raise NotImplementedError

    batches = True

    def chunk(self, m: Mapping, table: PageTable, keep: np.ndarray | None) -> bytes:
        out = []
        for a in range(0, len(table), self.SLICE_ROWS):
            part = table[a : a + self.SLICE_ROWS]
            if keep is None and part.untouched():
                out.append(self._untouched(m, part))
            else:
                kept = part if keep is None else PageTable.concat([(part, keep[a : a + self.SLICE_ROWS])])
                out.append(self.rows([m], None, kept))
        return b"".join(out)

    def rows(self, maps: list[Mapping], index: np.ndarray | None, table: PageTable) -> bytes:
        n = len(table)
        if n == 0:
            return b""
        cols = _record_columns(maps, index, table, true=self.true, false=self.false, null=self.null,
                               quote=self.quote)
        return vf.render(_interleave(cols, self.seps, n) + [vf.const(self.end, n)])

    def _untouched(self, m: Mapping, table: PageTable) -> bytes:
        """Untouched pages (big reservations): the record of the first one, with the
        address (the first field) changed per row; no per-field work."""
        first = self.rows([m], None, table[:1])
        prefix = self.seps[0]
        suffix = first[len(prefix) + len(str(table.start)) :]
        n = len(table)
        return vf.render([vf.const(prefix, n), vf.dec_col(table.vaddr), vf.const(suffix, n)])


class CsvFormat(RecordFormat):
    """One row per page; booleans 0/1, integers decimal, unknown values empty."""

    true, false, null = "1", "0", ""
    seps = [b""] + [b","] * (len(ROW_FIELDS) - 1)

    def header(self) -> bytes:
        return (",".join(ROW_FIELDS) + "\n").encode()

    def quote(self, path: str) -> str:
        path = unicode_text(path)  # as in jsonl and Parquet: bytes that are not UTF-8 as \xNN
        return '"' + path.replace('"', '""') + '"' if any(c in path for c in ',"\n\r') else path


class JsonlFormat(RecordFormat):
    """One JSON object per page and line; unknown values are ``null``."""

    true, false, null = "true", "false", "null"
    seps = [(("{" if i == 0 else ", ") + json.dumps(name) + ": ").encode() for i, name in enumerate(ROW_FIELDS)]
    end = b"}\n"

    def quote(self, path: str) -> str:
        return json.dumps(unicode_text(path) or None)


# -- the folded text format ---------------------------------------------------------

# Page-state columns that make a run's key, in the order their names are printed.
_STATE_BITS = ("present", "zero", "huge", "swapped", "swap_ambiguous", "guard", "uffd_wp", "file", "exclusive",
               "soft_dirty", "shmem_swapped", "shmem_unknown")
_STATE_NAMES = {"swap_ambiguous": "swapped-or-uffd-marker", "shmem_swapped": "swapped (shared memory)",
                "shmem_unknown": "untouched or swapped (shared memory): unknown to this reader"}


FEW_RUNS = 8


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


class TextFormat(Format):
    """For people: one header per mapping, then one line per run of pages with the
    same state, consecutive addresses and (where shown) consecutive frames."""

    def __init__(self, *, filtered: bool = False) -> None:
        self.filtered = filtered
        self.page_size = 4096  # set from each table
        self._pending: list | None = None  # the last run, which the next chunk may extend
        self._header: bytes | None = None  # a mapping's header line, until it has a run to show

    def mapping(self, m: Mapping, lo: int, hi: int) -> bytes:
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
        self.page_size = table.page_size
        if keep is None and len(table) and table.untouched():
            # Untouched (a big reservation): one run, no per-page work.
            one = np.array([0])
            runs = (np.array([table.start]), np.array([len(table)]), one, one - 1, one - 1, 1)
        else:
            runs = self._runs(table, keep)
            if runs is None:
                return b""
        run_vaddr, run_count, run_key, run_first, run_last, first_step = runs
        out = b""
        p = self._pending
        if p is not None:
            # Join the previous chunk's last run when this chunk continues it.
            if (p[0] + p[1] * table.page_size == run_vaddr[0] and p[2] == run_key[0]
                    and (run_first[0] < 0 or run_first[0] == p[4] + first_step)):
                run_vaddr[0], run_count[0], run_first[0] = p[0], run_count[0] + p[1], p[3]
            else:
                out = self._lines(np.array([p[0]]), np.array([p[1]]), np.array([p[2]]),
                                  np.array([p[3]]), np.array([p[4]]))
        self._pending = [int(run_vaddr[-1]), int(run_count[-1]), int(run_key[-1]), int(run_first[-1]),
                         int(run_last[-1])]
        k = len(run_vaddr) - 1
        return self._with_header(out + self._lines(run_vaddr[:k], run_count[:k], run_key[:k], run_first[:k],
                                                   run_last[:k]))

    def _runs(self, table: PageTable, keep: np.ndarray | None):
        """Runs of the kept pages: start address, length, state key, first and last
        frame (-1 where none is shown), and the frame step the first page expects."""
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
        return vaddr[starts], ends - starts, key[starts], frame[starts], frame[ends - 1], int(step[0])

    def end_mapping(self) -> bytes:
        p, self._pending = self._pending, None
        text = b"" if p is None else self._with_header(
            self._lines(np.array([p[0]]), np.array([p[1]]), np.array([p[2]]), np.array([p[3]]), np.array([p[4]])))
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

    def _lines(self, vaddr, count, key, first, last) -> bytes:
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


def make_format(name: str, *, filtered: bool = False) -> Format:
    """The format called ``name`` (text, seed, csv, jsonl); ``filtered`` says pages are
    being chosen by --where, so the text format names only mappings with pages shown."""
    if name == "seed":
        return SeedFormat()
    if name == "csv":
        return CsvFormat()
    if name == "jsonl":
        return JsonlFormat()
    return TextFormat(filtered=filtered)
