"""``pagewalk maps PID``: the mappings with per-mapping page counts and a total."""

from __future__ import annotations

import sys

from ..errors import InvalidArgument
from . import _common

__all__ = ["NAMES", "add_parser", "run"]

NAMES = ("maps",)  # the command names this module serves


def add_parser(sub) -> None:
    p = sub.add_parser("maps", help="mappings with pages present, zero, swapped, file, huge ... and RSS",
                       description="One row per mapping of /proc/PID/maps with page counts from pagemap "
                                   "(present, zero page, swapped, file/shared, exclusive, huge, guard, "
                                   "uffd-wp, soft-dirty) and RSS as smaps counts it; a total row.")
    _common.pid_argument(p)
    _common.no_scan_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    _common.layout_arguments(p, "start,perms,rss,mapping")
    p.add_argument("--sort", metavar="FIELD",
                   help="sort by start, end, path, a count, or rss (counts descending): a column's name, any case")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..core.process import Process
    from ..output import maps as out

    pid = _common.parse_pid(args.pid)
    if args.sort is not None:  # the header's words too, any case (EXCL, MAPPING, RSS)
        args.sort = {"excl": "exclusive", "mapping": "path"}.get(args.sort.lower(), args.sort.lower())
    if args.sort is not None and args.sort not in out.SORT_COLUMNS:
        raise InvalidArgument(f"cannot sort by {args.sort!r} (choose from {', '.join(out.SORT_COLUMNS)})")
    layout = _common.layout(args, out.HEADERS)
    with Process(pid, use_scan=_common.use_scan(args)) as proc:
        report = proc.counts()
    if not report.pfn_visible:
        _common.pfn_hidden_note()
    for note in report.notes:
        _common.warn(f"note: {note}")
    _common.mappings_changed_warning([(m.start, m.end) for m in report.changed])
    if args.sort is not None:
        out.sort_report(report, args.sort)
    sys.stdout.write(out.as_json(report) if args.json else out.as_text(report, layout))
    return 0
