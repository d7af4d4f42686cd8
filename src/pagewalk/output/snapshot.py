"""``snapshot --load``'s summary, for people or as JSON."""

from __future__ import annotations

import json

from ..names import printable
from .table import Layout, render_columns, wrap_lines

__all__ = ["HEADERS", "summary_text", "summary_json"]

HEADERS = ("START", "END", "PERMS", "PAGES", "PRESENT", "ZERO", "SWAPPED", "MAPPING")


def summary_json(summary: dict) -> str:
    """``snapshot --load --json``: :meth:`pagewalk.analysis.snapshot.Snapshot.summary`, indented."""
    return json.dumps(summary, indent=1) + "\n"


def summary_text(summary: dict, layout: Layout = Layout()) -> str:
    """``snapshot --load``: the snapshot's header line and a row per mapping (page
    counts; ``-`` where unknown), fitted to ``layout``.  Every text of the file is
    escaped: it is anyone's."""
    meta = summary["meta"]
    # (a snapshot file's text is anyone's: escaped like every name)
    head = (f"snapshot of PID {meta['pid']} ({printable(meta['comm'])}) at {printable(meta['time'])}, "
            f"kernel {printable(meta['kernel'])}, "
            f"page size {meta['page_size']}, PFNs {'visible' if meta['pfn_visible'] else 'hidden'}, "
            f"frame flags {'recorded' if meta['frames'] else 'not recorded'}")
    rows = summary["mappings"]
    def count(r: dict, key: str) -> str:
        return "-" if r[key] is None else str(r[key])

    cols = [[f"{r['start']:x}" for r in rows], [f"{r['end']:x}" for r in rows], [r["perms"] for r in rows],
            *([count(r, key) for r in rows] for key in ("pages", "present", "zero", "swapped")),
            [printable(r["path"] or "[anon]") for r in rows]]
    return wrap_lines(head, layout.width) + "\n" + render_columns(
        list(HEADERS), cols, right={3, 4, 5, 6}, layout=layout, names={7: None}, optional=("END",))
