"""``pagewalk who ADDR...``: which processes, at which virtual addresses, map a frame."""

from __future__ import annotations

import sys

from ..errors import InvalidArgument
from ..output.progress import Progress
from . import _common

__all__ = ["NAMES", "add_parser", "run"]

NAMES = ("who",)  # the command names this module serves


def add_parser(sub) -> None:
    p = sub.add_parser("who", help="which processes and virtual addresses map a physical address or PFN (root)",
                       description="Reverse lookup: every process and virtual address that maps the frame of "
                                   "each physical address (hex), or of each --pfn (hex). Reads only the resident "
                                   "pages of each process, and stops once the frames' map counts are accounted for.")
    p.add_argument("addrs", metavar="ADDR", nargs="*", help="physical address, hex (0x optional)")
    p.add_argument("--pfn", metavar="PFN", action="append", default=[], help="a page frame number, hex")
    _common.layout_arguments(p, "pid,vaddr,mapping")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..analysis.who import who_maps
    from ..kernel.pagemap import PAGE_SHIFT
    from ..kernel.procfs import all_pids

    pfns = [_common.parse_addr(a) >> PAGE_SHIFT for a in args.addrs] + [_common.parse_pfn(p) for p in args.pfn]
    if not pfns:
        raise InvalidArgument("give a physical address or --pfn PFN")
    from ..output import sharing as render

    layout = _common.layout(args, render.WHO_HEADERS)
    pids = all_pids()
    progress = Progress("who", len(pids), "processes")
    try:
        hits, mapcounts, zero_frames = who_maps(pfns, pids, progress.advance)
    finally:
        progress.close()
    sys.stdout.write(render.who_json(hits) if args.json else render.who_text(hits, layout))
    if args.json:
        return 0
    for pfn, n in sorted(mapcounts.items()):
        found = sum(1 for h in hits if h.pfn == pfn)
        if pfn in zero_frames:
            _common.warn(f"note: frame {pfn:x} is a zero page, which the kernel keeps no map count for: "
                         f"{found} mapping(s) found in the processes that could be read")
        elif found < n:
            _common.warn(f"note: frame {pfn:x} has map count {n}, {found} mapping(s) seen: the rest are in "
                         "processes that could not be read or changed meanwhile")
        elif n == 0 and not found:
            _common.warn(f"note: frame {pfn:x} is mapped by no process (map count 0)")
    return 0
