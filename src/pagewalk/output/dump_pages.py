"""One line per page: ``pagewalk dump --format seed``, ``csv`` and ``jsonl``."""

from __future__ import annotations

import json
import os

import numpy as np

from ..core.pagetable import PageTable
from ..kernel.maps import Mapping
from ..kernel.pagemap import PM_FILE, PM_PFRAME_MASK, PM_PRESENT, PM_SOFT_DIRTY, PM_SWAP
from ..names import printable, unicode_text
from . import vecfmt as vf
from .dump import Format

__all__ = ["ROW_FIELDS", "CsvFormat", "JsonlFormat", "RecordFormat", "SeedFormat"]

U64 = np.uint64


def _mapping_col(maps: list[Mapping], index: np.ndarray | None, n: int, text) -> vf.Column:
    """The per-row mapping field: ``text(mapping)`` of each row's mapping."""
    if index is None:
        return vf.const(text(maps[0]), n)
    return vf.choice_col(index, [text(m) for m in maps])


class SeedFormat(Format):
    """Byte for byte the seed's ``pagemap_dump.c``: ``addr pfn soft-dirty file/shared
    swapped present library``, the frame field printed raw as the seed does.  With
    ``escape`` (a terminal reads it) paths are escaped as in every human output: a
    file's name is anybody's choice, and the seed's raw bytes would be commands to the
    terminal."""

    def __init__(self, escape: bool = False) -> None:
        self.escape = escape

    def _path(self, m: Mapping) -> bytes:
        return os.fsencode(printable(m.path) if self.escape else m.path)

    def header(self) -> bytes:
        """The seed's column line (:meth:`Format.header`)."""
        return b"addr pfn soft-dirty file/shared swapped present library\n"

    batches = True

    def chunk(self, m: Mapping, table: PageTable, keep: np.ndarray | None) -> bytes:
        """The kept pages of ``table``, one line each (:meth:`Format.chunk`)."""
        if keep is None and len(table) and not table.raw.any():
            fast = self._untouched(m, table)
            if fast is not None:
                return fast
        return self.rows([m], None, table if keep is None else PageTable.concat([(table, keep)]))

    def rows(self, maps: list[Mapping], index: np.ndarray | None, table: PageTable) -> bytes:
        """One line per page of ``table`` (:meth:`Format.rows`)."""
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
            _mapping_col(maps, index, n, lambda m: self._path(m) + b"\n"),
        ])

    def _untouched(self, m: Mapping, table: PageTable) -> bytes | None:
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
        return vf.render([vf.hex_fixed(vpns, width), vf.const(b"000 0 0 0 0 0 " + self._path(m) + b"\n", n)])


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
        """``path`` as this format writes a text field (a subclass's job)."""
        raise NotImplementedError

    batches = True

    def chunk(self, m: Mapping, table: PageTable, keep: np.ndarray | None) -> bytes:
        """The kept pages of ``table``, one record each, in slices of :attr:`SLICE_ROWS`
        rows (:meth:`Format.chunk`)."""
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
        """One record per page of ``table`` (:meth:`Format.rows`)."""
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
        """The column names line (:data:`ROW_FIELDS`)."""
        return (",".join(ROW_FIELDS) + "\n").encode()

    def quote(self, path: str) -> str:
        """``path`` as a CSV field: bytes that are not UTF-8 as ``\\xNN``; in double quotes
        (inner ones doubled) when it holds a comma, a quote or a line break."""
        path = unicode_text(path)  # as in jsonl and Parquet: bytes that are not UTF-8 as \xNN
        return '"' + path.replace('"', '""') + '"' if any(c in path for c in ',"\n\r') else path


class JsonlFormat(RecordFormat):
    """One JSON object per page and line; unknown values are ``null``."""

    true, false, null = "true", "false", "null"
    seps = [(("{" if i == 0 else ", ") + json.dumps(name) + ": ").encode() for i, name in enumerate(ROW_FIELDS)]
    end = b"}\n"

    def quote(self, path: str) -> str:
        """``path`` as a JSON string (bytes that are not UTF-8 as ``\\xNN``); ``null`` when empty."""
        return json.dumps(unicode_text(path) or None)
