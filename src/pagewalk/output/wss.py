"""``wss``: a line a sample as it comes, then the last sample by mapping; or one JSON
document of every sample."""

from __future__ import annotations

import json

from ..analysis.wss import Cost, Sample
from ..names import printable, unicode_text
from .humanize import human_bytes
from .table import Layout, render_columns, wrap_lines

__all__ = ["HEADERS", "sample_line", "report_text", "report_json"]

HEADERS = ("START", "WSS", "UNATTRIBUTED", "MAPPING")  # the last sample, by mapping


def sample_line(sample: Sample) -> str:
    """``t=SECONDS  wss SIZE  (PERCENT of RSS SIZE)  unattributed SIZE``."""
    share = f"{100 * sample.wss_bytes / sample.rss_bytes:.0f}%" if sample.rss_bytes else "-"
    other = "" if sample.unattributed_bytes is None else f"  unattributed {human_bytes(sample.unattributed_bytes)}"
    return (f"t={sample.time:.1f}s  wss {human_bytes(sample.wss_bytes)}  ({share} of RSS "
            f"{human_bytes(sample.rss_bytes)}){other}\n")


def report_text(last: Sample | None, unattributed_reason: str | None, layout: Layout = Layout()) -> str:
    """What follows the sample lines: why some pages are unattributed, and the last
    sample's ten largest mappings (fitted to ``layout``)."""
    out = wrap_lines(f"unattributed (not in wss): {unattributed_reason}", layout.width) + "\n" \
        if unattributed_reason else ""
    top = sorted(last.mappings, key=lambda m: (-m[2], -(m[3] or 0)))[:10] if last is not None else []
    if top:
        out += "\nlast sample, by mapping:\n" + render_columns(
            list(HEADERS),
            [[f"{s:x}" for _, s, _, _ in top], [human_bytes(b) for _, _, b, _ in top],
             [human_bytes(o) for _, _, _, o in top], [printable(label) for label, _, _, _ in top]], right={1, 2},
            layout=layout, names={3: None})
    return out


def report_json(method: str, disturbs: str, samples: list[Sample], unattributed_reason: str | None,
                cost: Cost) -> str:
    """``wss --json``: the method and what it disturbs, every sample with its mappings
    (sizes in bytes, times in seconds from the start), and the cost."""
    doc = {"method": method, "disturbs": disturbs,
           "samples": [{"time": s.time, "wss_bytes": s.wss_bytes, "unattributed_bytes": s.unattributed_bytes,
                        "rss_bytes": s.rss_bytes,
                        "mappings": [{"mapping": unicode_text(label), "start": start, "wss_bytes": own,
                                      "unattributed_bytes": other}
                                     for label, start, own, other in s.mappings]} for s in samples],
           "unattributed_reason": unattributed_reason,
           "cost": {"seconds": round(cost.seconds, 4), "pages_scanned": cost.pages_scanned}}
    return json.dumps(doc, indent=1) + "\n"
