"""``pagewalk usage`` output: a table for people, JSON for programs (bytes)."""

from __future__ import annotations


from ..analysis.usage import Report
from ..names import printable, unicode_text
from .humanize import human_bytes
from .table import Layout, render_columns

__all__ = ["PROCESS_HEADERS", "group_headers", "as_json", "as_text"]

PROCESS_HEADERS = ("PID", "USER", "RSS", "PSS", "USS", "SWAP", "SWAP_PSS", "COMMAND")


def group_headers(by: str) -> tuple[str, ...]:
    """The columns of ``usage --by BY``."""
    return ("PROCS", "RSS", "PSS", "USS", "SWAP", "SWAP_PSS", by.upper())


def as_json(report: Report) -> str:
    """The ``usage --json`` document of ``report`` (amounts in bytes, null where unknown)."""
    import json  # (here: json imports re, which the table does not need)

    def amounts(u) -> dict:
        return {"rss": u.rss, "pss": u.pss, "uss": u.uss, "swap": u.swap, "swap_pss": u.swap_pss, "huge": u.huge}

    doc: dict = {"by": report.by, "source": report.source, "pfn_visible": report.pfn_visible}
    if report.by == "process":
        doc["processes"] = [{"pid": u.pid, "command": unicode_text(u.command), "user": unicode_text(u.user),
                              **amounts(u)} for u in report.rows]
    else:
        doc["groups"] = [{"name": unicode_text(u.name), "processes": u.processes, **amounts(u)} for u in report.rows]
    doc["totals"] = {"processes": report.totals.processes, **amounts(report.totals)}
    doc["skipped"] = [{"pid": pid, "why": why} for pid, why in sorted(report.skipped.items())]
    # mappings that changed while their pages were read, after the walks again
    doc["changed"] = [{"pid": pid, "mappings": n} for pid, n in sorted(report.changed.items())]
    return json.dumps(doc, indent=1) + "\n"


def as_text(report: Report, layout: Layout = Layout()) -> str:
    """One row per process (or group), sizes human-readable, the name last (it may be
    long: on a terminal, cut from the middle; swap columns of zeros go first)."""
    rows = [*report.rows, report.totals]
    sizes = [[human_bytes(getattr(u, f)) for u in rows] for f in ("rss", "pss", "uss", "swap", "swap_pss")]
    if report.by == "process":
        pids = [str(u.pid) for u in report.rows] + ["total"]
        users = [printable(u.user) for u in report.rows] + [""]
        commands = [printable(u.command) for u in report.rows] + [f"{report.totals.processes} process{'' if report.totals.processes == 1 else 'es'}"]
        return render_columns(list(PROCESS_HEADERS), [pids, users, *sizes, commands], right={0, 2, 3, 4, 5, 6},
                              layout=layout, names={1: None, 7: None}, optional=("SWAP_PSS", "USER"))
    names = [printable(u.name) for u in report.rows] + ["total"]
    procs = [str(u.processes) for u in rows]
    return render_columns(list(group_headers(report.by)), [procs, *sizes, names], right={0, 1, 2, 3, 4, 5},
                          layout=layout, names={6: None}, optional=("SWAP_PSS",))
