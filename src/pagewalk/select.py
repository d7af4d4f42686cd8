"""Choosing pages: ``--range`` and ``--where`` for every per-page command.

A where-expression is a comma-separated list of page-state names, each
optionally negated with ``~``; a page is kept when all of them hold:
``present``, ``swapped,~file``, ``~present``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from .errors import InvalidArgument
from .maps import Mapping

if TYPE_CHECKING:
    import numpy as np

    from .pagetable import PageTable
    from .process import Process

WHERE_NAMES = ("present", "swapped", "file", "exclusive", "soft_dirty", "uffd_wp", "guard", "zero", "huge")


def parse_where(expr: str | None) -> list[tuple[str, bool]]:
    """``"present,~file"`` -> ``[("present", False), ("file", True)]`` (name, negated)."""
    if not expr:
        return []
    terms = []
    for token in expr.split(","):
        token = token.strip()
        negated = token.startswith("~")
        name = token.lstrip("~").replace("-", "_")
        if name not in WHERE_NAMES:
            raise InvalidArgument(f"unknown page state {token!r} in --where (valid: {', '.join(WHERE_NAMES)})")
        terms.append((name, negated))
    return terms


def where_mask(table: PageTable, terms: list[tuple[str, bool]]) -> np.ndarray | None:
    """Boolean mask of the pages of ``table`` that satisfy every term (None: all)."""
    mask = None
    for name, negated in terms:
        try:
            column = table.flag(name)
        except ValueError as exc:
            raise InvalidArgument(f"--where {name}: {exc}") from None
        column = ~column if negated else column
        mask = column if mask is None else mask & column
    return mask


def clip(mappings: Sequence[Mapping], start: int | None, end: int | None) -> list[tuple[Mapping, int, int]]:
    """Each mapping with the part of it inside ``[start, end)`` (all of it without a range)."""
    out = []
    for m in mappings:
        lo = m.start if start is None else max(m.start, start)
        hi = m.end if end is None else min(m.end, end)
        if lo < hi:
            out.append((m, lo, hi))
    return out


def iter_pages(process: Process, mappings: Sequence[Mapping], start: int | None = None,
               end: int | None = None, *, zero_huge: bool = True) -> Iterator[tuple[Mapping, PageTable | None]]:
    """For each mapping (clipped to the range), its page tables in bounded chunks;
    ``[vsyscall]`` yields ``(mapping, None)`` once: it has no pagemap entries."""
    for m, lo, hi in clip(mappings, start, end):
        if m.is_vsyscall:
            yield m, None
            continue
        for table in process.iter_page_tables(lo, hi, zero_huge=zero_huge):
            yield m, table
