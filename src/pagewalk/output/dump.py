"""The protocol of the per-page output formats of ``pagewalk dump``.

Two families implement it: :mod:`.dump_pages` (one line per page: seed, csv,
jsonl) and :mod:`.dump_runs` (text: one line per run of pages).  Each format turns
one chunk of a mapping's page table (a :class:`~pagewalk.core.pagetable.PageTable`
and the mask of pages kept) into bytes, vectorised, so output streams in bounded
memory.
"""

from __future__ import annotations

import numpy as np

from ..core.pagetable import PageTable
from ..kernel.maps import Mapping

__all__ = ["Format"]


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
        """The bytes before everything else (column names, or nothing)."""
        return b""

    def mapping(self, m: Mapping, lo: int, hi: int) -> bytes:
        """The bytes that open mapping ``m``, shown from address ``lo`` to ``hi`` (bytes)."""
        return b""

    def chunk(self, m: Mapping, table: PageTable, keep: np.ndarray | None) -> bytes:
        """The pages of ``table`` (of mapping ``m``) where ``keep`` is true (all where None)."""
        raise NotImplementedError

    def end_mapping(self) -> bytes:
        """The bytes that close the current mapping (a run held back for the next chunk)."""
        return b""
