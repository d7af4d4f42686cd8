"""``pagewalk ram``: where the machine's RAM went, frame by frame."""

from __future__ import annotations

import sys

from . import _common

__all__ = ["NAMES", "add_parser", "run"]

NAMES = ("ram",)  # the command names this module serves


def add_parser(sub) -> None:
    p = sub.add_parser("ram", help="where the machine's RAM went: every frame in one use, beside meminfo",
                       description="Walks every frame of System RAM (/proc/kpageflags; root) and puts each in "
                                   "one use (free, anonymous, page cache, shared memory, slab, page tables, "
                                   "hugetlb, KSM, kernel ...), with the active, inactive, unevictable, "
                                   "referenced, dirty, writeback and mapped lists, and sets the uses beside "
                                   "/proc/meminfo's counts, read before and after the walk. Reads only.")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..analysis.ram import walk_ram
    from ..output import ram as out
    from ..output.progress import Progress

    progress = Progress("ram", _frames_hint(), "frames")
    try:
        report = walk_ram(progress.advance)
    finally:
        progress.close()
    for note in report.notes:
        _common.warn(f"note: {note}")
    sys.stdout.write(out.as_json(report) if args.json else out.as_text(report))
    return 0


def _frames_hint() -> int:
    """About how many frames the walk reads (MemTotal in pages), for the progress bar."""
    from ..kernel.pagemap import PAGE_SIZE
    from ..kernel.procfs import meminfo_fields

    return meminfo_fields().get("MemTotal", 0) // PAGE_SIZE
