"""``pagewalk dump PID``: every page of every mapping, in text, seed, csv or jsonl."""

from __future__ import annotations

import sys

from ..output.progress import Progress
from . import _common

__all__ = ["NAMES", "add_parser", "run"]

BATCH_BELOW = 4096  # tables smaller than this are batched with their neighbours
BATCH_PAGES = 1 << 16  # pages a batch gathers before it is formatted

NAMES = ("dump",)  # the command names this module serves


def add_parser(sub) -> None:
    p = sub.add_parser("dump", help="one entry per virtual page (text folds runs; seed, csv, jsonl)",
                       description="Every page of every mapping with its frame and state. 'text' folds runs "
                                   "of pages with the same state and consecutive frames into one line; 'seed' "
                                   "is byte for byte the output of the classic pagemap_dump.c; 'csv' and "
                                   "'jsonl' have one row per page.")
    _common.pid_argument(p)
    _common.no_scan_argument(p)
    p.add_argument("--format", choices=("text", "seed", "csv", "jsonl"), default="text",
                   help="output format (default: text)")
    p.add_argument("--range", metavar="R", help="only pages in START-END or START+LENGTH (hex addresses)")
    p.add_argument("--where", metavar="EXPR",
                   help="only pages in these states, e.g. present, swapped, ~present, file,exclusive")
    p.set_defaults(run=run)


def _format(name: str, *, filtered: bool):
    """The format called ``name`` (text, seed, csv, jsonl); ``filtered`` says pages are
    being chosen by --where, so the text format names only mappings with pages shown."""
    from ..output.dump_pages import CsvFormat, JsonlFormat, SeedFormat
    from ..output.dump_runs import TextFormat

    if name == "seed":
        return SeedFormat(escape=sys.stdout.isatty())
    if name == "csv":
        return CsvFormat()
    if name == "jsonl":
        return JsonlFormat()
    return TextFormat(filtered=filtered)


def run(args) -> int:
    from ..core.process import Process
    from ..core.where import check_where, clip, iter_pages, parse_where, where_mask
    from ..errors import ProcessGone
    from ..kernel.pagemap import PAGE_SIZE
    from ..kernel.probes import reuse_freed_memory
    from ..kernel.procfs import gone_during, proc_start_time

    pid = _common.parse_pid(args.pid)
    reuse_freed_memory()
    start, end = _common.parse_range(args.range) if args.range is not None else (None, None)
    terms = parse_where(args.where)
    out = sys.stdout.buffer
    started = proc_start_time(pid)  # to tell an exec (same process, new memory) from an exit
    with Process(pid, use_scan=_common.use_scan(args)) as proc:
        mappings = proc.mappings()
        scan = proc.scan_in_use
        check_where(terms, zero_known=scan or proc.pfn_visible, huge_known=scan)
        fmt = _format(args.format, filtered=bool(terms))
        if not proc.pfn_visible:
            _common.pfn_hidden_note()
        out.write(fmt.header())
        current = None
        pending: list = []
        pending_pages = 0
        matched = 0  # pages shown

        def flush() -> None:
            nonlocal pending_pages
            if pending:
                out.write(fmt.batch(pending))
                pending.clear()
                pending_pages = 0

        progress = Progress("dump", sum((hi - lo) // PAGE_SIZE for _, lo, hi in clip(mappings, start, end)),
                                    streams=True)
        try:
            # The seed format prints neither zero nor huge: skip what finds them.
            needs_zero_huge = args.format != "seed" or bool(terms)
            for m, lo, hi, table in iter_pages(proc, mappings, start, end, zero_huge=needs_zero_huge):
                if m is not current:
                    if current is not None:
                        out.write(fmt.end_mapping())
                    current = m
                    out.write(fmt.mapping(m, lo, hi))
                if table is None:
                    continue
                keep = where_mask(table, terms)
                matched += len(table) if keep is None else int(keep.sum())
                if fmt.batches and len(table) < BATCH_BELOW:
                    pending.append((m, table, keep))  # many small mappings: formatted together
                    pending_pages += len(table)
                    if pending_pages >= BATCH_PAGES:
                        flush()
                else:
                    flush()
                    out.write(fmt.chunk(m, table, keep))
                progress.advance(len(table))
            flush()
            if current is not None:
                out.write(fmt.end_mapping())
        except ProcessGone:
            flush()
            out.flush()
            raise gone_during(pid, started, "the dump") from None
        finally:
            progress.close()
        out.flush()
        try:
            proc.check_mappings(mappings)  # the rows above came from these mappings
        except ProcessGone:
            pass  # exited after the last read: the output is whole, there is nothing to compare
        _common.process_notes(proc)
    out.flush()
    if not matched:  # an empty answer says so (on stderr: the output stays a valid document)
        _common.warn("note: no pages match" + ("" if clip(mappings, start, end) else
                                                ": no mapping lies in the range"))
    return 0
