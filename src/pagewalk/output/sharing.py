"""``shared`` and ``who``: frames shared by processes, and who maps a frame, as tables
and JSON."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from ..analysis.sharing import SharedReport
    from ..analysis.who import Hit
from ..kernel.pagemap import PAGE_SIZE
from ..names import printable, unicode_text
from .humanize import human_bytes
from .table import COMFORTABLE_NAME, Layout, render_columns, shorten

__all__ = ["SHARED_HEADERS", "WHO_HEADERS", "shared_json", "shared_text", "who_json", "who_text"]

SHARED_HEADERS = ("PID_A", "PID_B", "PAGES", "SIZE", "START_A", "PERMS_A", "START_B", "PERMS_B",
                  "MAPPING_A  <->  MAPPING_B")
WHO_HEADERS = ("PFN", "PID", "COMMAND", "VADDR", "MAPPING")


def shared_json(report: SharedReport) -> str:
    """``shared --json``: the mapping pairs, each process's shared pages, the distinct
    frames (sizes in pages and bytes), and the mappings that changed while read."""
    doc = {"pairs": [{**p._asdict(), "mapping_a": unicode_text(p.mapping_a), "mapping_b": unicode_text(p.mapping_b),
                      "bytes": p.pages * PAGE_SIZE} for p in report.pairs],
           "processes": [{"pid": pid, "shared_pages": n, "shared_bytes": n * PAGE_SIZE}
                         for pid, n in report.per_process.items()],
           "frames": report.frames, "bytes": report.frames * PAGE_SIZE,
           "changed": [{"pid": pid, "mappings": n} for pid, n in report.changed.items()]}
    import json  # (here: json imports re, which the tables do not need)

    return json.dumps(doc, indent=1) + "\n"


def shared_text(report: SharedReport, layout: Layout = Layout()) -> str:
    """``shared``: a table of mapping pairs (on a narrow terminal the start addresses
    and pages give way first, the PIDs where there are two processes, then each name
    is cut from the middle), then each process's shared pages and the distinct frames."""
    pairs = report.pairs
    two = ("PID_A", "PID_B") if len(report.per_process) == 2 else ()  # (then named below the table too)
    names = [(printable(p.mapping_a), printable(p.mapping_b)) for p in pairs]

    def mapping_pairs(room: int) -> list[str]:
        half = max(1, (room - 7) // 2)
        return [f"{shorten(a, half)}  <->  {shorten(b, half)}" for a, b in names]

    columns = [[str(p.pid_a) for p in pairs], [str(p.pid_b) for p in pairs], [str(p.pages) for p in pairs],
               [human_bytes(p.pages * PAGE_SIZE) for p in pairs],
               [f"{p.start_a:x}" for p in pairs], [p.perms_a for p in pairs],
               [f"{p.start_b:x}" for p in pairs], [p.perms_b for p in pairs], mapping_pairs(1 << 30)]
    out = render_columns(list(SHARED_HEADERS), columns, right={0, 1, 2, 3}, layout=layout,
                         names={8: mapping_pairs}, optional=("START_A", "START_B", "PAGES", *two),
                         comfortable=2 * COMFORTABLE_NAME + 7)
    out += "\n" + "".join(f"process {pid}: {n} pages ({human_bytes(n * PAGE_SIZE)}) shared with the others\n"
                          for pid, n in report.per_process.items())
    out += f"distinct shared frames: {report.frames} ({human_bytes(report.frames * PAGE_SIZE)})\n"
    return out


def who_json(hits: list[Hit]) -> str:
    """``who --json``: every (frame, process, address, mapping) found."""
    import json

    return json.dumps([{**h._asdict(), "command": unicode_text(h.command), "mapping": unicode_text(h.mapping)}
                       for h in hits], indent=1) + "\n"


def who_text(hits: list[Hit], layout: Layout = Layout()) -> str:
    """``who``: a row per (frame, process, address), names escaped (on a terminal, cut
    from the middle to fit)."""
    rows = [[f"{h.pfn:x}" for h in hits], [str(h.pid) for h in hits], [printable(h.command) for h in hits],
            [f"{h.vaddr:x}" for h in hits], [printable(h.mapping) for h in hits]]
    return render_columns(list(WHO_HEADERS), rows, right={1}, layout=layout, names={2: None, 4: None})
