"""``pagewalk ram``: where the machine's RAM went, frame by frame."""

from __future__ import annotations

import os
import sys

from ..errors import InvalidArgument
from . import _common

__all__ = ["NAMES", "OWNERS", "FORMATS", "add_parser", "run"]

NAMES = ("ram",)  # the command names this module serves
OWNERS = ("use", "cgroup", "process", "file")
FORMATS = ("png", "svg", "html", "npz")
TOP_MAX = 1 << 20  # rows kept in memory at most


def add_parser(sub) -> None:
    p = sub.add_parser("ram", help="where the machine's RAM went: every frame in one use, beside meminfo",
                       description="Walks every frame of System RAM (/proc/kpageflags; root) and puts each in "
                                   "one use (free, anonymous, page cache, shared memory, slab, page tables, "
                                   "hugetlb, KSM, kernel ...), with the active, inactive, unevictable, "
                                   "referenced, dirty, writeback and mapped lists, and sets the uses beside "
                                   "/proc/meminfo's counts, read before and after the walk. --by names the "
                                   "owners: memory cgroups (/proc/kpagecgroup, beside each cgroup's "
                                   "memory.stat), processes (RSS, PSS, USS as usage gives them) or the files "
                                   "that hold the page cache (cachestat, or mincore; nothing read in, nothing "
                                   "marked accessed). Reads only.")
    p.add_argument("--by", choices=OWNERS, default="use",
                   help="owners: cgroup, process, or file (the files under PATHs, or on every mounted local "
                        "file system); default: uses only")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="with --files: the files or trees to walk (default: every mounted local file system)")
    p.add_argument("--files", action="store_true", help="the files that hold the page cache (--by file)")
    p.add_argument("--top", type=int, default=20, metavar="N",
                   help="processes or files shown (default 20, the largest)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="FILE.png, FILE.svg or FILE.html: physical memory as a grid of frames coloured by use; "
                        "FILE.npz: a machine snapshot for 'pagewalk diff' (mode 0600: it holds physical "
                        "addresses)")
    _common.force_argument(p)
    _common.layout_arguments(p, "use,size,active,inactive (of the uses table)", short=False)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..analysis.ram import walk_ram
    from ..output import ram as out
    from ..output.progress import Progress

    if args.files and args.by not in ("use", "file"):
        raise InvalidArgument(f"--files shows the files, --by {args.by} another owner: give one")
    by = "file" if args.files else args.by
    if args.paths and by != "file":
        raise InvalidArgument("PATHs name the trees for --files (or --by file)")
    if not 1 <= args.top <= TOP_MAX:
        raise InvalidArgument(f"--top takes a number of rows from 1 to {TOP_MAX}")
    layout = _common.layout(args, out.USES_HEADERS)
    file_format = None
    if args.output is not None:
        from ..kernel.outfile import check_writable

        file_format = args.output.rsplit(".", 1)[-1].lower()
        if file_format not in FORMATS:
            raise InvalidArgument(f"cannot tell the format from {args.output!r}: name a .png, .svg, .html or "
                                  ".npz file")
        check_writable(args.output, "the picture" if file_format != "npz" else "the snapshot",
                       binary=file_format in ("png", "npz"), force=args.force)
        if file_format in ("png", "svg"):
            from ..output.picture import pyplot

            pyplot()  # a missing extra is said before any work
    from ..kernel.probes import reuse_freed_memory

    reuse_freed_memory()  # this process's memory, counted too, stays put between the walk and the kernel's counts
    progress = Progress("ram", _frames_hint(), "frames")
    try:
        # a picture or snapshot records each frame's cgroup where the kernel has them
        report = walk_ram(progress.advance, by_cgroup=by == "cgroup" or (
            file_format is not None and os.path.exists("/proc/kpagecgroup")), keep_frames=file_format is not None,
            keep_flags=file_format == "html")
    finally:
        progress.close()
    processes = files = None
    if by == "process":
        processes = _processes(args.top)
    elif by == "file":
        files = _files(args.paths, args.top, report)
    for note in report.notes + (files.notes if files else []):
        _common.warn(f"note: {note}")
    if file_format is not None:
        _write(report, args.output, file_format, args.force)
    doc = out.Owners(by, processes, files, args.top)
    sys.stdout.write(out.as_json(report, doc) if args.json else out.as_text(report, doc, layout))
    return 0


def _frames_hint() -> int:
    """How many frames the walk reads (System RAM; MemTotal where iomem hides it), for the progress bar."""
    from ..kernel.pagemap import PAGE_SIZE
    from ..kernel.physmem import system_ram
    from ..kernel.procfs import meminfo_fields

    return sum(r.end_pfn - r.start_pfn for r in system_ram()) or meminfo_fields().get("MemTotal", 0) // PAGE_SIZE


def _processes(top: int):
    """Every process's RSS, PSS, USS and swap (:mod:`pagewalk.analysis.usage`), largest PSS first."""
    from ..analysis.usage import measure, measure_rollups
    from ..kernel.procfs import all_pids

    pids = all_pids()
    summed = measure_rollups(pids, explicit=False)
    return summed[0] if summed is not None else measure(pids, explicit=False)


def _files(roots: list[str] | None, top: int, report):
    from ..analysis.ram_files import local_roots, walk_files
    from ..kernel.probes import frames_readable

    return walk_files(roots or local_roots(), top, frames=report.uses is not None and frames_readable())


def _write(report, path: str, file_format: str, force: bool) -> None:
    if report.kept is None:
        raise InvalidArgument("the frames are root's only (/proc/kpageflags): there is no picture or snapshot "
                              "of them to write")
    if file_format == "npz":
        from ..analysis.ram_snapshot import save

        save(report, path, force)
    elif file_format == "html":
        from ..output.ram_picture import write_html

        write_html(report, path, force)
    else:
        from ..output.ram_picture import draw

        draw(report, path, file_format, force)
    _common.warn(f"wrote {path}")
