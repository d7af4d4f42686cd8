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
from .table import render_columns

__all__ = ["SORT_COLUMNS", "sort_report", "as_json", "as_text"]

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


def as_text(report: CountsReport) -> str:
    """The ``maps`` table of ``report``: page counts per mapping, RSS in human units."""
    headers = ["START", "END", "PERMS", "PAGES", "PRESENT", "ZERO", "SWAPPED", "FILE", "EXCL", "HUGE", "GUARD",
               "UFFD_WP", "SOFT_DIRTY", "RSS", "MAPPING"]
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
    return render_columns(headers, columns, right=set(range(3, 14)))


@functools.lru_cache(maxsize=1024)  # many mappings share a size
def _size(n: int | None) -> str:
    return human_bytes(n)
