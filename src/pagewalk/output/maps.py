"""``pagewalk maps`` output: a table for people, JSON for programs."""

from __future__ import annotations

import json

from ..pagemap import PAGE_SIZE
from ..pagetable import CountsReport
from .table import render_table

COUNT_FIELDS = ("pages", "present", "zero", "swapped", "file", "exclusive", "huge", "guard", "uffd_wp",
                "soft_dirty")
SORT_FIELDS = ("start", "end", "path", *COUNT_FIELDS, "rss")


def sort_report(report: CountsReport, field: str) -> None:
    """Sort mappings by ``field``: addresses and path ascending, counts descending."""
    if field in ("start", "end", "path"):
        report.mappings.sort(key=lambda mc: getattr(mc.mapping, field))
        return
    report.mappings.sort(key=lambda mc: -(getattr(mc.counts, field) or 0) if mc.counts else 1)


def as_json(report: CountsReport) -> str:
    mappings = []
    for mc in report.mappings:
        m = mc.mapping
        row: dict[str, object] = {"start": m.start, "end": m.end, "perms": m.perms, "offset": m.offset,
                                  "dev": m.dev, "inode": m.inode, "path": m.text_path or None}
        counts = mc.counts.as_dict() if mc.counts else {}
        for name in (*COUNT_FIELDS, "rss"):
            row[name] = counts.get(name)
        mappings.append(row)
    totals = {name: value for name, value in report.totals.as_dict().items()}
    doc = {"pid": report.pid, "page_size": PAGE_SIZE, "pfn_visible": report.pfn_visible,
           "mappings": mappings, "totals": totals,
           "changed_during_scan": [{"start": m.start, "end": m.end, "path": m.text_path or None}
                                   for m in report.changed]}
    return json.dumps(doc, indent=1) + "\n"


def as_text(report: CountsReport) -> str:
    headers = ["START", "END", "PERMS", "PAGES", "PRESENT", "ZERO", "SWAPPED", "FILE", "EXCL", "HUGE", "GUARD",
               "UFFD_WP", "SOFT_DIRTY", "RSS", "MAPPING"]

    def cells(counts) -> list[str]:
        if counts is None:
            return ["-"] * (len(COUNT_FIELDS) + 1)
        values = [getattr(counts, f) for f in COUNT_FIELDS]
        return ["-" if v is None else str(v) for v in values] + [_size(counts.rss)]

    rows = []
    for mc in report.mappings:
        m = mc.mapping
        rows.append([f"{m.start:x}", f"{m.end:x}", m.perms, *cells(mc.counts), m.label()])
    rows.append(["total", "", "", *cells(report.totals), f"{len(report.mappings)} mappings"])
    return render_table(headers, rows, right=set(range(3, 14)))


def _size(n: int) -> str:
    from ..cli._common import human_bytes

    return human_bytes(n)
