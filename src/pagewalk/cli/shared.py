"""``pagewalk shared PID PID...``: the physical pages processes share, by mapping pair."""

from __future__ import annotations

import sys

from ..output.humanize import human_bytes
from . import _common

NAMES = ("shared",)  # the command names this module serves


def add_parser(sub) -> None:
    p = sub.add_parser("shared", help="physical pages two or more processes share, by mapping (root)",
                       description="For each pair of the processes: the frames both map, counted by the pair of "
                                   "mappings they sit in (a forked server and its workers, say), with sizes.")
    p.add_argument("pids", metavar="PID", nargs="+", help="two or more processes")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..kernel.pagemap import PAGE_SIZE
    from ..analysis.sharing import shared_frames

    from ..names import printable, unicode_text

    report = shared_frames([_common.parse_pid(p) for p in args.pids])
    _common.processes_changed_warning(report.changed)
    if args.json:
        import json

        doc = {"pairs": [{**p._asdict(), "mapping_a": unicode_text(p.mapping_a), "mapping_b": unicode_text(p.mapping_b),
                          "bytes": p.pages * PAGE_SIZE} for p in report.pairs],
               "processes": [{"pid": pid, "shared_pages": n, "shared_bytes": n * PAGE_SIZE}
                             for pid, n in report.per_process.items()],
               "frames": report.frames, "bytes": report.frames * PAGE_SIZE,
               "changed": [{"pid": pid, "mappings": n} for pid, n in report.changed.items()]}
        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
        return 0
    from ..output.table import render_columns

    pairs = report.pairs
    columns = [[str(p.pid_a) for p in pairs], [str(p.pid_b) for p in pairs], [str(p.pages) for p in pairs],
               [human_bytes(p.pages * PAGE_SIZE) for p in pairs],
               [f"{printable(p.mapping_a)}  <->  {printable(p.mapping_b)}" for p in pairs]]
    out = render_columns(["PID_A", "PID_B", "PAGES", "SIZE", "MAPPING_A  <->  MAPPING_B"], columns, right={0, 1, 2, 3})
    out += "\n" + "".join(f"process {pid}: {n} pages ({human_bytes(n * PAGE_SIZE)}) shared with the others\n"
                          for pid, n in report.per_process.items())
    out += f"distinct shared frames: {report.frames} ({human_bytes(report.frames * PAGE_SIZE)})\n"
    sys.stdout.write(out)
    return 0
