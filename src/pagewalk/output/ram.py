"""``ram``: where the machine's RAM went, as a table (uses down, RAMMap's lists across,
a total) with meminfo's counts beside, and as JSON."""

from __future__ import annotations

from ..core.frames import LISTS
from ..kernel.pagemap import PAGE_SIZE
from .humanize import human_bytes
from .table import render_table

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from ..analysis.ram import RamReport

__all__ = ["as_text", "as_json"]


def _size(frames: int | None) -> str:
    return human_bytes(None if frames is None else frames * PAGE_SIZE)


def as_text(report: RamReport) -> str:
    """The uses table, the reconciliation with meminfo, and the notes."""
    out = []
    if report.uses is not None:
        total = report.frames or 1
        rows = []
        for use, frames in report.uses.items():
            if not frames:
                continue
            lists = report.lists[use]
            rows.append([use, _size(frames), f"{100 * frames / total:.1f}%", *(_size(lists[name]) for name in LISTS)])
        rows.append(["total", _size(report.frames), "100.0%",
                     *(_size(sum(report.lists[u][name] for u in report.uses)) for name in LISTS)])
        out.append(render_table(["USE", "SIZE", "SHARE", *(name.upper() for name in LISTS)], rows,
                                right=set(range(1, 3 + len(LISTS)))))
        out.append("\n")
    rows = []
    for line in report.reconciled:
        target = {True: "yes", False: "no", None: "-"}[line.within_target]
        rows.append([line.name, _size(line.frames), human_bytes(line.before_bytes), human_bytes(line.after_bytes),
                     target, " + ".join(line.fields).replace("+ -", "- ")])
    out.append(render_table(["KERNEL'S COUNT", "FRAMES", "BEFORE", "AFTER", "AGREE", "MEMINFO"], rows,
                            right={1, 2, 3}))
    walked = f"{report.frames} frames ({_size(report.frames)}) walked in {report.seconds:.2f} s" if report.uses else \
        "no frame walked"
    out.append(f"\n{walked}; AGREE: within 2% or 8 MiB of the kernel's count read before and after\n")
    return "".join(out)


def as_json(report: RamReport) -> str:
    """One JSON document: sizes in bytes, frames as counts."""
    import json

    doc = {
        "frames": report.frames, "page_size": PAGE_SIZE, "seconds": round(report.seconds, 3),
        "free_marks": report.free_marks, "ranges": [[r.start_pfn, r.end_pfn] for r in report.ranges],
        "uses": None if report.uses is None else [
            {"use": use, "frames": frames, "bytes": frames * PAGE_SIZE, "lists": report.lists[use]}
            for use, frames in report.uses.items()],
        "reconciled": [{"name": r.name, "uses": list(r.uses), "frames": r.frames,
                        "bytes": r.size_bytes, "meminfo": list(r.fields),
                        "before_bytes": r.before_bytes, "after_bytes": r.after_bytes,
                        "within_target": r.within_target} for r in report.reconciled],
        "meminfo_before": report.meminfo_before, "meminfo_after": report.meminfo_after, "notes": report.notes,
    }
    return json.dumps(doc, indent=1) + "\n"
