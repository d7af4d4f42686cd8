"""``pagewalk types``: the kernel's page-types (tools/mm/page-types.c), option for option."""

from __future__ import annotations

import os
import sys

from ..errors import InvalidArgument
from ..output.progress import Progress
from . import _common

__all__ = ["NAMES", "add_parser", "run"]

NAMES = ("types",)  # the command names this module serves


def add_parser(sub) -> None:
    p = sub.add_parser(
        "types", help="count pages by kernel flags, like the kernel's page-types (root)",
        description="page-types in Python: every physical frame of the machine, a process's pages (-p) or "
                    "a file's page cache (-f), counted by their /proc/kpageflags flags. Numbers are read as C's "
                    "strtoll does (0x hex, 0 octal). Rows are sorted by page count.")
    add = p.add_argument
    add("-r", "--raw", action="store_true", help="raw mode: kernel-hacker bits, compound bits of every page, "
                                                  "and page-types' synthetic bits (anon_exclusive, file, swap ...)")
    add("-p", "--pid", metavar="PID", help="walk this process's address space")
    add("-f", "--file", metavar="PATH", help="walk the page cache of a file, or of every file under a directory")
    add("-a", "--addr", metavar="RANGE", action="append", default=[],
        help="N, N+M, N,M (M exclusive), N, or ,M: PFNs; virtual pages with -p; file pages with -f")
    add("-b", "--bits", metavar="EXPR", action="append", default=[],
        help="flag filter: a,b (any), a,b=a or a,~b (masked), =a,b (exact); names may be prefixes")
    add("-c", "--cgroup", metavar="PATH|@INODE", help="only pages charged to this memory cgroup")
    add("-C", "--list-cgroup", action="store_true", help="add the cgroup inode to lists")
    add("-M", "--list-mapcnt", action="store_true", help="add the map count to lists")
    add("-d", "--describe", metavar="EXPR", action="append", help="print what a flag expression means, and exit")
    add("-i", "--mark-idle", action="store_true",
        help="mark the matching frames idle (idle page tracking; changes what reclaim and wss see)")
    add("-l", "--list", dest="list_mode", action="store_const", const=1, default=0,
        help="list matching pages as ranges")
    add("-L", "--list-each", dest="list_mode", action="store_const", const=2, help="list matching pages one by one")
    add("-N", "--no-summary", action="store_true", help="no summary table")
    add("-F", "--kpageflags", metavar="FILE", help="read flags from a saved copy of /proc/kpageflags")
    add("--json", action="store_true", help="print the summary as one JSON document")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..core import flags as fl

    if args.describe:
        for expr in args.describe:
            sys.stdout.write(fl.describe(expr) + "\n")
        return 0
    if args.pid is not None and args.file is not None:
        raise InvalidArgument("-p and -f cannot be combined: walk a process or a file")
    if args.json and args.list_mode:
        raise InvalidArgument("--json prints the summary; lists (-l, -L) are text only")

    from ..analysis.pagetypes import Frames, Options, TypesCounter, cgroup_inode, parse_addr_range
    from ..kernel.pagemap import PAGE_SIZE
    from ..output import types as render

    options = Options(raw=args.raw, filters=[fl.parse_bits(e) for e in args.bits],
                      cgroup=cgroup_inode(args.cgroup) if args.cgroup else None, list_mode=args.list_mode,
                      list_cgroup=args.list_cgroup, list_mapcnt=args.list_mapcnt,
                      ranges=[parse_addr_range(r) for r in args.addr])
    pid = _parse_pid(args.pid) if args.pid is not None else None
    out = sys.stdout.buffer
    frames = Frames(options, args.kpageflags)
    idle = None
    if args.mark_idle:
        from ..kernel.idle import IdleMarker

        idle = IdleMarker()
    lister = None
    if options.list_mode:
        from ..output.types_list import Lister

        lister = Lister(options, out, "voffset" if pid else "foffset" if args.file is not None else None)
    counter = TypesCounter(options, lister, idle)
    try:
        if lister:
            out.write(lister.header().encode())
        if pid is None and args.file is None or lister or idle or options.ranges or args.kpageflags:
            for batch in _walk(args, pid, options, frames):
                counter.add(batch)
        else:  # the summary of a process or a file, the everyday case: no numpy
            _count(args, pid, frames, counter)
        if lister:
            lister.flush()
    finally:
        frames.close()
        if idle:
            idle.close()
    if args.json:
        out.write(render.summary_json(counter).encode())
        return 0
    if args.no_summary:
        return 0
    text = "\n\n" if lister else ""
    if args.file is not None:
        text += render.file_header(args.file, os.stat(args.file), PAGE_SIZE) + "\n"
    text += render.summary(counter, PAGE_SIZE)
    out.write(text.encode())
    return 0


def _walk(args, pid, options, frames):
    from ..analysis.pagetypes import walk_file, walk_machine, walk_process
    from ..kernel.probes import reuse_freed_memory

    reuse_freed_memory()  # the walks' numpy temporaries: kept on the heap for reuse

    if pid is not None:
        with _process(pid) as proc:
            yield from walk_process(proc, frames, options.ranges)
            _common.process_notes(proc)
    elif args.file is not None:
        from ..kernel.pagecache import regular_files
        from ..kernel.pagemap import PagemapFile

        with PagemapFile(os.getpid()) as own:
            for path, _ in regular_files(args.file):
                notes: list[str] = []
                yield from walk_file(path, frames, options.ranges, own, notes)
                for note in notes:
                    _common.warn(note)
    else:
        end = frames.flags.end_pfn()
        for first, _ in options.ranges:
            if first >= end:
                raise InvalidArgument(f"PFN {first:#x} is beyond the end of memory (the last PFN is {end - 1:#x})")
        # -l and -L print while walking: a bar would land in their lines on a terminal
        progress = Progress("types", end, "frames", streams=bool(options.list_mode))
        try:
            for batch in walk_machine(frames, options.ranges):
                progress.advance(len(batch.offset))
                yield batch
        finally:
            progress.close()


def _count(args, pid, frames, counter) -> None:
    """Count a process's or the files' pages without numpy (a summary, no lists)."""
    from ..analysis.pagetypes import count_file, count_process

    if pid is not None:
        with _process(pid) as proc:
            count_process(proc, frames, counter)
            _common.process_notes(proc)
        return
    from ..kernel.pagecache import regular_files
    from ..kernel.pagemap import PagemapFile

    with PagemapFile(os.getpid()) as own:
        for path, _ in regular_files(args.file):
            notes: list[str] = []
            count_file(path, frames, counter, own, notes)
            for note in notes:
                _common.warn(note)


def _process(pid: int):
    """The process ``pid``, whose frames a ``types -p`` walk must see (root)."""
    from ..core.process import Process
    from ..errors import AccessDenied

    proc = Process(pid)
    if not proc.pfn_visible:
        proc.close()
        raise AccessDenied(f"/proc/{pid}/pagemap", msg="types -p needs the frames of the pages: run as root (CAP_SYS_ADMIN)")
    return proc


def _parse_pid(text: str) -> int:
    """``-p``: a PID in page-types' number syntax (``0x`` hex, ``0`` octal), positive
    and below 2**32 (strtoll would make ``-1`` 2**64 - 1, a PID no process has)."""
    from ..core import flags as fl

    pid = fl.parse_number(text, "process ID")
    if not 0 < pid < 1 << 32 or text.lstrip(" \t\n\r\f\v").startswith("-"):
        raise InvalidArgument(f"not a process ID: {text!r}")
    return pid


