"""``pagewalk diff A B``: what changed between two snapshots, or a snapshot and a live process."""

from __future__ import annotations

import os
import sys

from ..errors import InvalidArgument
from . import _common

__all__ = ["NAMES", "add_parser", "run"]

NAMES = ("diff",)  # the command names this module serves


def add_parser(sub) -> None:
    p = sub.add_parser("diff", help="what changed between two snapshots (or a snapshot and a live PID)",
                       description="Per mapping and in total: pages that appeared, vanished, moved to another "
                                   "frame, were swapped out or in, were written (where the kernel has soft-dirty "
                                   "and A was taken with --clear-soft-dirty), changed huge-page state; mappings "
                                   "added and removed. An argument that names an existing file is a snapshot; "
                                   "otherwise digits name a live process. Two machine snapshots (ram -o "
                                   "FILE.npz) compare frames by use and by memory cgroup, and say which uses "
                                   "frames moved between.")
    p.add_argument("a", metavar="A", help="snapshot file (or PID)")
    p.add_argument("b", metavar="B", help="snapshot file or PID")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    _common.max_load_argument(p, "loading the snapshot files (both together)")
    _common.layout_arguments(p, "start,moved,mapping (two snapshots of processes)")
    p.set_defaults(run=run)


def _machine(args, budget) -> int:
    """Two machine snapshots: what grew, by use and by cgroup."""
    from ..analysis.ram_snapshot import diff, load
    from ..output import ram as render

    if args.columns is not None:
        raise InvalidArgument("-o picks columns of the table of two process snapshots; machine snapshots have "
                              "three tables (--wide shows every column)")
    doc = diff(load(args.a, budget=budget), load(args.b, budget=budget))
    for note in doc["notes"]:
        _common.warn(f"note: {note}")
    sys.stdout.write(render.diff_json(doc) if args.json else render.diff_text(doc, _common.terminal_width(args)))
    return 0


def _side(arg: str, budget):
    """A snapshot file, loaded within ``budget`` (both files share one), or a live
    process, recorded now; what a reader should know of it said."""
    from ..analysis.diff import live
    from ..analysis.snapshot import Snapshot

    if os.path.exists(arg):
        snap = Snapshot.load(arg, budget=budget)
    elif arg.isdigit():
        snap = live(_common.parse_pid(arg))
    else:
        raise InvalidArgument(f"{arg!r} is neither a snapshot file nor a process ID")
    for note in snap.notes:
        _common.warn(f"note: {note}")
    if snap.meta.get("live"):  # (a file's changes are said when it is written)
        _common.mappings_changed_warning(snap.meta["mappings_changed"])
    return snap


def run(args) -> int:
    from ..analysis.diff import diff, different_process
    from ..analysis.ram_snapshot import is_ram_snapshot

    budget = _common.load_budget(args)
    from ..output import diff as render

    layout = _common.layout(args, render.HEADERS)
    machine = [os.path.isfile(arg) and is_ram_snapshot(arg) for arg in (args.a, args.b)]
    if any(machine):
        if not all(machine):
            raise InvalidArgument("one side is a machine snapshot (ram -o FILE.npz), the other is not: diff "
                                  "compares two machine snapshots, or two of processes")
        return _machine(args, budget)
    a, b = _side(args.a, budget), _side(args.b, budget)
    other = different_process(a, b)
    if other:
        _common.warn(f"warning: {other}")
    doc = diff(a, b)
    sys.stdout.write(render.as_json(doc) if args.json else render.text(doc, layout))
    return 0
