"""``pagewalk file PATH...``: what the page cache holds of files (fincore, vmtouch)."""

from __future__ import annotations

import sys

from ..errors import InvalidArgument, PagewalkError
from . import _common

__all__ = ["NAMES", "add_parser", "run"]

NAMES = ("file",)  # the command names this module serves


def add_parser(sub) -> None:
    p = sub.add_parser("file", help="page-cache residency of files: cached ranges, flags, who maps them",
                       description="Which pages of each file are in the page cache (the partial last page "
                                   "included), as ranges; as root also their kernel flags (dirty, active, "
                                   "referenced ...) and map counts, read without marking any page accessed. A "
                                   "symbolic link named here is followed; a directory means every regular file "
                                   "under it (symbolic links and other file systems in it are not followed). "
                                   "Without root, residency alone (mincore).")
    p.add_argument("paths", metavar="PATH", nargs="+", help="files or directories")
    p.add_argument("--summary", action="store_true", help="one line a file (no ranges or flags), and the total")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--wide", action="store_true",
                   help="long lines whole (on a terminal they are wrapped to its width; piped output is never "
                        "wrapped)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..analysis.files import files_residency
    from ..kernel.pagecache import read_back_note
    from ..kernel.probes import frames_readable
    from ..output import files as out

    visible = frames_readable()
    if not visible:
        _common.warn("note: frames are hidden from this user: residency only (mincore), no flags or map counts")
    # each PATH answered on its own, as ls and fincore do: a bad one is an error line,
    # the others are still shown; the exit status is the first failure's
    reports, status = [], 0
    for path in args.paths:
        try:
            reports += files_residency([path], visible)
        except PagewalkError as exc:
            _common.fail(str(exc), 1)  # (the error line; the other paths go on)
            status = status or (2 if isinstance(exc, InvalidArgument) else 1)
    for report in reports:
        if report.read_back:
            _common.warn(read_back_note(report.path, report.read_back))
    if not reports and not status:
        _common.warn("note: no files: no regular file under " + ", ".join(args.paths))
    text = out.as_json(reports) if args.json else out.as_text(reports, args.summary, _common.terminal_width(args))
    sys.stdout.write(text)
    return status
