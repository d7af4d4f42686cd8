"""``pagewalk maps`` output: a table for people, JSON for programs.

Both are built column by column or with the C JSON encoder, so 10,000 mappings
print in milliseconds.
"""

from __future__ import annotations

import functools

from ..core.counting import CountsReport, PageCounts
from ..kernel.pagemap import PAGE_SIZE
from ..names import printable
from .humanize import human_bytes
from .table import Layout, render_columns

__all__ = ["HEADERS", "SORT_COLUMNS", "sort_report", "as_json", "as_text", "fitted_text"]

COUNT_FIELDS = ("pages", "present", "zero", "swapped", "file", "exclusive", "huge", "guard", "uffd_wp",
                "soft_dirty")
SORT_COLUMNS = ("start", "end", "path", *COUNT_FIELDS, "rss")
_UNKNOWN = PageCounts(*[None] * len(PageCounts._fields))  # the counts of [vsyscall]: none


def sort_report(report: CountsReport, field: str) -> None:
    """Sort mappings by ``field``: addresses and path ascending, counts descending."""
    if field in ("start", "end", "path"):
        report.mappings.sort(key=lambda mc: getattr(mc.mapping, field))
        return
    report.mappings.sort(key=lambda mc: -(getattr(mc.counts, field) or 0) if mc.counts else 1)


def as_json(report: CountsReport) -> str:
    """One JSON document; each mapping on a line of its own (readable, and encoded
    by json's C encoder, which ``indent`` would turn off)."""
    import json  # (here: json imports re, which the table does not need)

    keys = (*COUNT_FIELDS, "shmem_swapped", "rss")
    rows = []
    for mc in report.mappings:
        m = mc.mapping
        counts = mc.counts or _UNKNOWN
        row = {"start": m.start, "end": m.end, "perms": m.perms, "offset": m.offset, "dev": m.dev,
               "inode": m.inode, "path": m.text_path or None}
        row.update(zip(keys, (getattr(counts, k) for k in keys)))
        rows.append(json.dumps(row))
    head = {"pid": report.pid, "page_size": PAGE_SIZE, "pfn_visible": report.pfn_visible,
            "totals": report.totals.as_dict(),
            "changed_during_scan": [{"start": m.start, "end": m.end, "path": m.text_path or None}
                                    for m in report.changed]}
    return json.dumps(head)[:-1] + ',\n"mappings": [\n' + ",\n".join(rows) + "\n]}\n"


def as_text(report: CountsReport, layout: Layout = Layout()) -> str:
    """The ``maps`` table of ``report``: page counts per mapping, RSS in human units.
    ``layout.columns``: those of :data:`HEADERS`, in that order; else, where the whole
    table is wider than ``layout.width`` (a terminal's), the fitted one (:func:`fitted_text`)."""
    if layout.columns is None and layout.width is not None and _full_width(report) > layout.width:
        return fitted_text(report, layout.width)
    return _full_text(report, layout)


def _full_width(report: CountsReport) -> int:
    """The widest line of the whole table (the mapping column last: its widest name)."""
    fixed = 12 * 2 + 4 + 10 * 8 + 8 + 2 * 14  # addresses, perms, counts, RSS, gaps (an estimate from above)
    return fixed + max((len(mc.mapping.label()) for mc in report.mappings), default=0)


def fitted_text(report: CountsReport, width: int) -> str:
    """The table for a terminal ``width`` columns wide, as pmap -x fits 80: the start,
    permissions, size, RSS and exclusive memory in bytes, what else is there (swapped,
    zero page, huge, guard, uffd-wp, soft-dirty) folded into one column, and
    the mapping's name shortened from the middle to fit (its last part kept whole
    where it can be: ``libc.so.6`` and ``libtinfo.so.6`` stay apart).  ``--wide``, or
    piped output, gives every column."""
    headers = ["START", "PERMS", "SIZE", "RSS", "EXCL", "OTHER", "MAPPING"]
    maps = [mc.mapping for mc in report.mappings]
    counts = [mc.counts or _UNKNOWN for mc in report.mappings] + [report.totals]

    def pages(n: int | None) -> str:
        return _size(None if n is None else n * PAGE_SIZE)

    columns = [
        [f"{m.start:x}" for m in maps] + ["total"],
        [m.perms for m in maps] + [""],
        [_size(m.end - m.start) for m in maps] + [_size(sum(m.end - m.start for m in maps))],
        [_size(c.rss) for c in counts],
        [pages(c.exclusive) for c in counts],
        [",".join(f"{word} {pages(getattr(c, name))}" for name, word in OTHER_WORDS if getattr(c, name)) or "-"
         for c in counts],
        [printable(m.label()) for m in maps] + [f"{len(maps)} mappings"],
    ]
    return render_columns(headers, columns, right={2, 3, 4}, layout=Layout(width), names={6: None})


# what the OTHER column folds, in bytes: swapped, zero page, huge, guard, uffd-wp, soft-dirty
OTHER_WORDS = (("swapped", "swap"), ("zero", "zero"), ("huge", "huge"), ("guard", "guard"), ("uffd_wp", "uffd-wp"),
               ("soft_dirty", "soft-dirty"))


HEADERS = ("START", "END", "PERMS", "PAGES", "PRESENT", "ZERO", "SWAPPED", "FILE", "EXCL", "HUGE", "GUARD",
           "UFFD_WP", "SOFT_DIRTY", "RSS", "MAPPING")  # every column of the table, in order


def _full_text(report: CountsReport, layout: Layout) -> str:
    """Every column, or those ``layout`` names in that order (names cut to its width)."""
    headers = list(HEADERS)
    maps = [mc.mapping for mc in report.mappings]
    counts = [mc.counts or _UNKNOWN for mc in report.mappings] + [report.totals]
    columns = [
        [f"{m.start:x}" for m in maps] + ["total"],
        [f"{m.end:x}" for m in maps] + [""],
        [m.perms for m in maps] + [""],
    ]
    by_field = dict(zip(PageCounts._fields, zip(*counts)))
    for name in COUNT_FIELDS:
        columns.append(["-" if v is None else str(v) for v in by_field[name]])
    columns.append([_size(v) for v in by_field["rss"]])
    columns.append([printable(m.label()) for m in maps] + [f"{len(maps)} mappings"])
    return render_columns(headers, columns, right=set(range(3, 14)), layout=layout, names={14: None})


@functools.lru_cache(maxsize=1024)  # many mappings share a size
def _size(n: int | None) -> str:
    return human_bytes(n)
