"""``pagewalk snapshot PID -o FILE`` and ``pagewalk snapshot --load FILE``."""

from __future__ import annotations

import sys

from ..errors import InvalidArgument
from . import _common

__all__ = ["NAMES", "add_parser", "run"]

NAMES = ("snapshot",)  # the command names this module serves


def add_parser(sub) -> None:
    p = sub.add_parser("snapshot", help="record a process's pages to a file (mode 0600), or read one back",
                       description="Record the mappings and every populated page (all pagemap bits, PFN, and "
                                   "as root each frame's kpageflags and map count) with metadata, to a "
                                   "compressed NumPy .npz file readable with numpy alone, or (FILE.parquet or "
                                   "--format parquet, extra pagewalk[parquet]) a Parquet table of decoded pages "
                                   "for pandas, polars and DuckDB (see the README). "
                                   "The file is written atomically and created mode 0600: it holds physical "
                                   "addresses (a device or FIFO is written to in place; see the README's 'What "
                                   "pagewalk changes'). --load reads one back and summarises it.")
    p.add_argument("pid", metavar="PID", nargs="?", help="process to record")
    p.add_argument("-o", "--output", metavar="FILE", help="where to write the snapshot ('-': standard output)")
    _common.force_argument(p)
    p.add_argument("--format", choices=("npz", "parquet"), dest="file_format",
                   help="file format (default: parquet for a FILE ending in .parquet, else npz)")
    p.add_argument("--load", metavar="FILE", help="read this snapshot (either format) and summarise it")
    p.add_argument("--json", action="store_true", help="with --load: print one JSON document")
    _common.max_load_argument(p, "with --load: loading the snapshot")
    _common.layout_arguments(p, "start,present,mapping (with --load)", short=False)
    p.add_argument("--clear-soft-dirty", action="store_true",
                   help="after recording, clear the target's soft-dirty bits so that a later diff can say which "
                        "pages were written (needs CONFIG_MEM_SOFT_DIRTY; disturbs the target: each page's next "
                        "write faults once)")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.load:
        from ..analysis.snapshot import Snapshot

        if args.pid or args.output or args.force:
            raise InvalidArgument("--load reads a snapshot: give no PID, -o or --force with it")
        from ..output import snapshot as render

        layout = _common.layout(args, render.HEADERS)
        snap = Snapshot.load(args.load, budget=_common.load_budget(args))
        for note in snap.notes:
            _common.warn(f"note: {note}")
        summary = snap.summary()
        sys.stdout.write(render.summary_json(summary) if args.json else render.summary_text(summary, layout))
        return 0
    if not args.pid or not args.output:
        raise InvalidArgument("give a PID and -o FILE (or --load FILE)")
    if args.wide or args.columns is not None:
        raise InvalidArgument("--wide and --columns lay out what --load shows: give them with --load")
    if args.max_load is not None:
        raise InvalidArgument("--max-load limits what --load reads: give it with --load")
    from ..kernel.outfile import STDOUT, check_writable

    # before the work (and before --clear-soft-dirty)
    check_writable(args.output, "a snapshot", binary=True, force=args.force)
    from ..core.process import Process
    from ..kernel.probes import reuse_freed_memory
    from ..parallel import in_background

    reuse_freed_memory()  # the per-frame arrays of a large process: allocated once, not page-faulted twice
    with Process(_common.parse_pid(args.pid)) as proc:
        # The page table is read (no numpy needed) while numpy imports, and what is
        # left of it once numpy is in, from this thread too
        resident = proc.resident_read()
        reading = in_background(resident.scan_and_read) if resident is not None else None
        from ..analysis.snapshot import Snapshot

        if reading is not None:
            resident.read_pending()
            reading.result()
        snap = Snapshot.take(proc, clear_soft_dirty=args.clear_soft_dirty, resident=resident)
        _common.process_notes(proc)
    if not snap.meta["pfn_visible"]:
        _common.pfn_hidden_note()
    size = snap.save(args.output, args.file_format, args.force)
    present = int(snap.table().present.sum())
    where = "the snapshot to standard output" if args.output == STDOUT else args.output
    _common.warn(f"wrote {where}: {len(snap.mappings)} mappings, {snap.meta['pages']} populated pages "
                 f"({present} present), {size} bytes")
    return 0


