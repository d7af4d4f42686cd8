"""``pagewalk usage``: RSS, PSS, USS and swap per process, like procrank and smem."""

from __future__ import annotations

import sys

from ..errors import InvalidArgument, PagewalkError
from ..output.progress import Progress
from . import _common

__all__ = ["NAMES", "add_parser", "run"]

NAMES = ("usage",)  # the command names this module serves


def add_parser(sub) -> None:
    from ..analysis.choices import GROUPINGS, SORT_FIELDS

    p = sub.add_parser("usage", help="RSS, PSS, USS and swap per process (procrank, smem)",
                       description="Memory per process: RSS (resident), PSS (shared pages divided among their "
                                   "mappers), USS (pages mapped only once) and swap. One row a process comes from "
                                   "the kernel's sums (smaps_rollup) where no process has swap; groups, and "
                                   "processes with swap, from pagemap and /proc/kpagecount (procrank's way: a "
                                   "shared-memory page in swap counts once in a total). No PID and --all both mean "
                                   "every process. Without root, USS comes from the exclusive bit and PSS from "
                                   "smaps_rollup where readable.")
    p.add_argument("pids", metavar="PID", nargs="*", help="processes to measure (default: all)")
    p.add_argument("--all", action="store_true", help="every process")
    p.add_argument("--sort", default="pss", choices=SORT_FIELDS, type=str.lower,
                   help="largest first (default pss; the column names, any case)")
    p.add_argument("--by", default="process", choices=GROUPINGS,
                   help="group the rows (default: one per process)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    _common.layout_arguments(p, "pid,pss,command")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..analysis.usage import gather, measure_one, measure_rollups
    from ..kernel.procfs import all_pids
    from ..output import usage as out

    if args.all and args.pids:
        raise InvalidArgument("give PIDs or --all, not both")
    pids = _common.parse_pids(args.pids)
    layout = _common.layout(args, out.PROCESS_HEADERS if args.by == "process" else out.group_headers(args.by))
    explicit = bool(pids)
    pids = pids or all_pids()
    if explicit and len(pids) == 1 and args.by == "process":
        # one process: the kernel's own sums say all a row needs, with no page read (and no numpy)
        report = measure_one(pids[0])
        sys.stdout.write(out.as_json(report) if args.json else out.as_text(report, layout))
        return 0
    progress = Progress("usage", len(pids) if not explicit else 0, "processes")
    # One named PID fails as in every command; several are taken as ps takes
    # them: those that cannot be read are named in a note
    strict = explicit and len(pids) == 1
    try:
        # by process, the kernel's sums serve where no process has swap; else every page is read
        summed = measure_rollups(pids, sort=args.sort, explicit=strict, progress=progress.advance) \
            if args.by == "process" else None
        if summed is None:
            progress.restart()
            gathered = gather(pids, explicit=strict, progress=progress.advance)
            report = gathered.report(args.by, args.sort)
            read, why = {p.pid for p in gathered.collected}, {**gathered.passed_over, **gathered.skipped}
        else:
            report, passed_over = summed
            read, why = {u.pid for u in report.rows}, {**passed_over, **report.skipped}
    finally:
        progress.close()
    if explicit:
        left_out = {pid: why[pid] for pid in pids if pid not in read}
        if not read:
            raise PagewalkError("; ".join(left_out.values()))
        if left_out:
            _common.warn(f"note: {len(left_out)} of the {len(pids)} processes named could not be read, left out: "
                         + "; ".join(left_out.values()))
    if not report.pfn_visible and report.source == "pagemap":
        _common.warn("note: frames are hidden from this user: PSS and USS come from smaps_rollup where it "
                     "is readable; elsewhere PSS is '-' (null) and USS counts pages with pagemap's exclusive "
                     "bit, a lower bound; run as root for exact numbers everywhere")
    for note in report.notes:
        _common.warn(f"note: {note}")
    _common.processes_changed_warning(report.changed)
    if report.skipped and not explicit:
        first = next(iter(report.skipped.items()))
        _common.warn(f"note: {len(report.skipped)} process(es) left out, e.g. {first[0]}: {first[1]}")
    sys.stdout.write(out.as_json(report) if args.json else out.as_text(report, layout))
    return 0
