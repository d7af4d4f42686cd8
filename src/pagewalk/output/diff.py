"""``diff``: what changed from one snapshot (or live process) to another, as text or JSON."""

from __future__ import annotations

import json

from ..analysis.diff import FIELDS
from ..names import printable
from .table import Layout, render_columns, wrap_lines

__all__ = ["HEADERS", "text", "as_json"]

HEADERS = ("START", "END", *(f.upper() for f in FIELDS), "MAPPING")  # the table of mappings that changed


def as_json(doc: dict) -> str:
    """``diff --json``: the document of :func:`pagewalk.analysis.diff.diff`, indented."""
    return json.dumps(doc, indent=1) + "\n"


def text(doc: dict, layout: Layout = Layout()) -> str:
    """The ``diff`` document (:func:`pagewalk.analysis.diff.diff`) for people: the totals
    of :data:`~pagewalk.analysis.diff.FIELDS`, mappings added and removed, and a row per mapping that changed
    (``-`` where a count is unknown); on a terminal, fitted to ``layout.width``."""
    show = lambda v: "-" if v is None else str(v)  # noqa: E731
    out = [f"from PID {doc['a']['pid']} at {printable(doc['a']['time'])} to PID {doc['b']['pid']} "
           f"at {printable(doc['b']['time'])}",
           "totals: " + ", ".join(f"{f.replace('_', ' ')} {show(doc['totals'][f])}" for f in FIELDS)]
    for what in ("added", "removed"):
        for m in doc[f"mappings_{what}"]:
            out.append(f"mapping {what}: {m['start']:x}-{m['end']:x} {m['perms']} {printable(m['path'] or '[anon]')} "
                       f"({m['present']} page{'' if m['present'] == 1 else 's'} present)")
    rows = doc["mappings"]
    out_text = wrap_lines("\n".join(out), layout.width) + "\n"
    if rows:
        cols = [[f"{r['start']:x}" for r in rows], [f"{r['end']:x}" for r in rows]]
        cols += [[show(r[f]) for r in rows] for f in FIELDS]
        cols.append([printable(r["path"] or "[anon]") for r in rows])
        out_text += "\n" + render_columns(list(HEADERS), cols, right=set(range(2, 2 + len(FIELDS))), layout=layout,
                                           names={len(HEADERS) - 1: None}, optional=("END",))
    return out_text
