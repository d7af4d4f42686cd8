"""``pagewalk picture PID -o FILE.png|FILE.svg|FILE.html``: the address space drawn."""

from __future__ import annotations

from ..errors import InvalidArgument
from . import _common

__all__ = ["NAMES", "FORMATS", "add_parser", "run"]

NAMES = ("picture",)  # the command names this module serves
FORMATS = ("png", "svg", "html")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "picture", help="draw the address space as a residency map (PNG, SVG or an interactive HTML page)",
        description="Draws every mapping as a band of pages coloured by state (present, file-backed, huge, "
                    "zero page, swapped, guard, untouched; a pixel standing for many pages has the colour of "
                    "their mix), the unmapped gaps collapsed, and beside it where the process's frames lie in "
                    "physical memory. PNG and SVG need the extra pagewalk[pictures] (matplotlib); HTML is one "
                    "self-contained page (no network) that zooms down to single pages and shows a page's "
                    "address, PFN, flags and mapping on hover, with a sortable table of mappings. The file is "
                    "created mode 0600: it shows physical addresses.")
    _common.pid_argument(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="FILE.png, FILE.svg or FILE.html ('-': standard output, with --format)")
    _common.force_argument(p)
    p.add_argument("--format", choices=FORMATS, dest="file_format",
                   help="file format (default: from the name's ending)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..kernel.outfile import STDOUT, check_writable

    if args.output == STDOUT and not args.file_format:
        raise InvalidArgument("-o - writes the picture to standard output: give its --format (png, svg or html)")
    file_format = args.file_format or args.output.rsplit(".", 1)[-1].lower()
    if file_format not in FORMATS:
        raise InvalidArgument(f"cannot tell the format from {args.output!r}: name a .png, .svg or .html file, "
                              f"or give --format")
    pid = _common.parse_pid(args.pid)
    check_writable(args.output, f"a {file_format.upper()} picture", binary=file_format == "png", force=args.force)
    if file_format != "html":
        from ..output.picture import pyplot

        pyplot()  # a missing extra is said before any work
    from ..analysis.picture import AddressSpace
    from ..core.process import Process

    with Process(pid) as proc:
        space = AddressSpace.take(proc)
        _common.process_notes(proc)
    if not space.pfn_visible:
        _common.pfn_hidden_note()
    if file_format == "html":
        from ..output.picture_html import write

        write(space, args.output, args.force)
    else:
        from ..output.picture import draw

        draw(space, args.output, file_format, args.force)
    _common.warn(f"wrote {'the picture to standard output' if args.output == STDOUT else args.output}")
    return 0
