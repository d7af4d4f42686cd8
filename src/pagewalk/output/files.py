"""``pagewalk file`` output: page-cache residency per file, text or JSON."""

from __future__ import annotations

import json

from ..analysis.files import FileResidency
from ..core import flags as fl
from ..kernel.pagemap import PAGE_SIZE
from ..names import printable, unicode_text
from .humanize import human_bytes
from .table import wrap_lines

__all__ = ["as_json", "as_text"]


def _span(first: int, count: int) -> str:
    return f"{first}" if count == 1 else f"{first}-{first + count - 1}"


def as_json(reports: list[FileResidency]) -> str:
    """The ``files --json`` document of ``reports`` (sizes in bytes)."""
    docs = []
    for r in reports:
        doc = {"path": unicode_text(r.path), "size": r.size_bytes, "pages": r.pages, "cached": r.cached,
               "ranges": [[a, n] for a, n in r.ranges], "mapped": r.mapped}
        if r.runs is not None:
            doc["runs"] = [{"first": a, "count": n, "flags": f, "names": fl.names(f), "mapcount": c}
                           for a, n, f, c in r.runs]
        docs.append(doc)
    return json.dumps(docs, indent=1) + "\n"


def _pages(n: int) -> str:
    return f"{n} page" if n == 1 else f"{n} pages"


def as_text(reports: list[FileResidency], summary: bool = False, width: int | None = None) -> str:
    """A line per file, then (unless ``summary``) its cached pages: runs with their
    flags and map count where frames are visible, else plain ranges; a total where
    there is more than one file (as vmtouch gives one).  Lines longer than a
    terminal's ``width`` are wrapped."""
    lines = []
    for r in reports:
        lines.append(f"{printable(r.path)}: {_residency(r.pages, r.size_bytes, r.cached, r.mapped)}")
        if summary:
            continue
        if r.runs is not None:
            span_width = max((len(_span(a, n)) for a, n, _, _ in r.runs), default=0)
            for a, n, f, c in r.runs:
                lines.append(f"  {'page ' if n == 1 else 'pages'} {_span(a, n):<{span_width}}  {n:>7} cached  "
                             f"map count {c:<3} {','.join(fl.names(f)) or '-'}")
        elif r.ranges:
            lines.append("  cached pages: " + ", ".join(_span(a, n) for a, n in r.ranges))
    if len(reports) > 1:
        mapped = [r.mapped for r in reports]
        lines.append(f"total: {len(reports)} files, " + _residency(
            sum(r.pages for r in reports), sum(r.size_bytes for r in reports), sum(r.cached for r in reports),
            None if None in mapped else sum(mapped)))
    return wrap_lines("\n".join(lines), width) + "\n" if lines else ""


def _residency(pages: int, size_bytes: int, cached: int, mapped: int | None) -> str:
    """``N pages (SIZE), N cached (SIZE) (SHARE%), N mapped by a process``."""
    share = f" ({100 * cached / pages:.0f}%)" if pages else ""
    mapped_text = f", {mapped} mapped by a process" if mapped is not None else ""
    return (f"{_pages(pages)} ({human_bytes(size_bytes)}), {cached} cached ({human_bytes(cached * PAGE_SIZE)})"
            f"{share}{mapped_text}")
