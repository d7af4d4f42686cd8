"""Choosing pages: ``--range`` and ``--where`` for every per-page command.

A where-expression is a comma-separated list of page-state names, each
optionally negated with ``~``; a page is kept when all of them hold:
``present``, ``swapped,~file``, ``~present``.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ..errors import InvalidArgument, Unsupported
from ..kernel.maps import Mapping
from ..kernel.pagemap import PAGE_SHIFT, PAGE_SIZE
from ..kernel.probes import soft_dirty_supported
from ..runs import run_arrays
from .reading import mostly_unpopulated

if TYPE_CHECKING:
    import numpy as np

    from .pagetable import PageTable
    from .process import Process

__all__ = ["parse_where", "check_where", "where_mask", "clip", "iter_pages"]

Clipped = namedtuple("Clipped", "mapping start end")
Clipped.__doc__ = """A mapping and the part of it inside a range: ``[start, end)``, bytes."""
PageChunk = namedtuple("PageChunk", "mapping start end table")
PageChunk.__doc__ = """A :class:`Clipped` mapping and one :class:`PageTable` of it (None for ``[vsyscall]``)."""

WHERE_NAMES = ("present", "swapped", "file", "exclusive", "soft_dirty", "uffd_wp", "guard", "zero", "huge",
               "untouched")
COLUMNS = {"untouched": "untouched_pages"}  # a where-name's PageTable column, where it differs


def parse_where(expr: str | None) -> list[tuple[str, bool]]:
    """``"present,~file"`` -> ``[("present", False), ("file", True)]`` (name, negated);
    None (no --where) keeps every page, an empty expression is refused."""
    if expr is None:
        return []
    terms = []
    for token in expr.split(","):
        token = token.strip()
        negated = token.startswith("~")
        name = (token[1:] if negated else token).replace("-", "_").lower()
        if name not in WHERE_NAMES:
            raise InvalidArgument(f"unknown page state {token!r} in --where (valid: {', '.join(WHERE_NAMES)})")
        terms.append((name, negated))
    return terms


def check_where(terms: list[tuple[str, bool]], *, zero_known: bool, huge_known: bool) -> None:
    """Refuse, before any output, a condition this kernel and reader cannot decide."""
    for name, _ in terms:
        if name == "zero" and not zero_known:
            raise Unsupported("--where zero: the zero page cannot be told apart here "
                              "(needs CAP_SYS_ADMIN or the PAGEMAP_SCAN ioctl of Linux 6.7+)")
        if name == "huge" and not huge_known:
            raise Unsupported("--where huge: huge mappings cannot be seen here (needs the PAGEMAP_SCAN ioctl "
                              "of Linux 6.7+)")
        if name == "soft_dirty":
            if not soft_dirty_supported():
                raise Unsupported("--where soft_dirty: this kernel has no soft-dirty bits (CONFIG_MEM_SOFT_DIRTY)")


def where_mask(table: PageTable, terms: list[tuple[str, bool]]) -> np.ndarray | None:
    """Boolean mask of the pages of ``table`` that satisfy every term (None: all)."""
    mask = None
    for name, negated in terms:
        try:
            column = table.flag(COLUMNS.get(name, name))
        except ValueError as exc:
            raise Unsupported(f"--where {name}: {exc}") from None
        column = ~column if negated else column
        mask = column if mask is None else mask & column
    return mask


def clip(mappings: Sequence[Mapping], start: int | None, end: int | None) -> list[Clipped]:
    """Each mapping with the part of it inside ``[start, end)`` (bytes; all of it
    without a range), in the mappings' order; mappings outside the range are left out."""
    out = []
    for m in mappings:
        lo = m.start if start is None else max(m.start, start)
        hi = m.end if end is None else min(m.end, end)
        if lo < hi:
            out.append(Clipped(m, lo, hi))
    return out


def iter_pages(process: Process, mappings: Sequence[Mapping], start: int | None = None,
               end: int | None = None, *, zero_huge: bool = True
               ) -> Iterator[PageChunk]:
    """For each mapping clipped to ``[start, end)`` (bytes), its page tables in
    bounded chunks, as :class:`PageChunk` s; ``[vsyscall]`` comes once with table
    None: it has no pagemap entries.  Raises :class:`~pagewalk.errors.ProcessGone`
    if the process exits.
    Where most of the process is not resident, a PAGEMAP_SCAN walk first finds what
    to read; in a dense one it would cost more than it saves.  Pages of shared
    memory in swap are marked (:meth:`PageTable.mark_shmem_swap`)."""
    sparse = mostly_unpopulated(process.pid)
    clipped = clip(mappings, start, end)
    # runs found only inside the range asked for (a whole mapping's could cost a call a page)
    within = None if start is None and end is None else (
        (start or 0) >> PAGE_SHIFT, ((end if end is not None else 1 << 64) + PAGE_SIZE - 1) >> PAGE_SHIFT)
    shmem = process.shmem_swap([m for m, _, _ in clipped], within=within)
    for k, (m, lo, hi) in enumerate(clipped):
        if m.is_vsyscall:
            yield PageChunk(m, lo, hi, None)
            continue
        runs = run_arrays(shmem[k].runs) if shmem.get(k) else None
        for table in process.iter_page_tables(lo, hi, zero_huge=zero_huge, sparse=sparse and not m.scan_skips):
            if k in shmem:
                table.mark_shmem_swap(runs)
            yield PageChunk(m, lo, hi, table)
