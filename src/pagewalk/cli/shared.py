"""``pagewalk shared PID PID...``: the physical pages processes share, by mapping pair."""

from __future__ import annotations

import sys

from . import _common

__all__ = ["NAMES", "add_parser", "run"]

NAMES = ("shared",)  # the command names this module serves


def add_parser(sub) -> None:
    p = sub.add_parser("shared", help="physical pages two or more processes share, by mapping (root)",
                       description="For each pair of the processes: the frames both map, counted by the pair of "
                                   "mappings they sit in (a forked server and its workers, say), with sizes.")
    p.add_argument("pids", metavar="PID", nargs="+", help="two or more processes")
    _common.layout_arguments(p, "pid_a,size,mapping_a_mapping_b")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..analysis.sharing import shared_frames
    from ..output import sharing as render

    layout = _common.layout(args, render.SHARED_HEADERS)
    report = shared_frames([_common.parse_pid(p) for p in args.pids])
    _common.processes_changed_warning(report.changed)
    sys.stdout.write(render.shared_json(report) if args.json else render.shared_text(report, layout))
    return 0
