"""Argument parsing and messages shared by the commands (no heavy imports)."""

from __future__ import annotations

import sys

from ..errors import InvalidArgument
from ..kernel.pagemap import PFN_LIMIT
from ..names import printable, quoted
from ..units import parse_size

__all__ = [
    "fail", "warn", "process_notes", "mappings_changed_warning", "processes_changed_warning",
    "pfn_hidden_note", "parse_pids", "parse_pid", "parse_addr", "parse_pfn", "parse_seconds", "parse_range",
    "pid_argument", "force_argument", "max_load_argument", "load_budget", "no_scan_argument", "use_scan",
]

ADDRESS_SPACE_END = 1 << 64  # the first address past any (virtual or physical)
MAX_SECONDS = 86400.0  # the longest interval a command waits: a day


def fail(message: str, status: int) -> int:
    """Print the contract's one-line error and return (or exit with) ``status``.
    A name or path in ``message`` is shown escaped (:func:`pagewalk.names.printable`)."""
    print(f"pagewalk: error: {printable(message)}", file=sys.stderr)
    if status == 2:
        raise SystemExit(2)
    return status


def warn(message: str) -> None:
    """One line on stderr, names in it escaped as :func:`fail` escapes them; on a
    terminal, wrapped to its width."""
    text = f"pagewalk: {printable(message)}"
    if len(text) > 80 and sys.stderr.isatty():
        import shutil

        from ..output.table import wrap_lines

        text = wrap_lines(text, shutil.get_terminal_size().columns)
    print(text, file=sys.stderr)


def process_notes(proc) -> None:
    """Say what the command could not know about ``proc`` (a pagewalk.Process) and why,
    and which of its mappings changed while they were read."""
    for note in proc.notes:
        warn(f"note: {note}")
    mappings_changed_warning([(m.start, m.end) for m in proc.changed])


def mappings_changed_warning(changed: list) -> None:
    """Warn of one process's mappings that changed while their pages were read:
    ``[(start, end), ...]``."""
    if changed:
        start, end = changed[0]
        warn(f"warning: {len(changed)} mapping(s) changed during the scan (e.g. {start:x}-{end:x}): "
             "their pages mix the before and the after")


def processes_changed_warning(changed: dict[int, int]) -> None:
    """Warn of the mappings that changed while their pages were read: {PID: how many}."""
    if changed:
        first = next(iter(changed))
        warn(f"warning: {sum(changed.values())} mapping(s) of {len(changed)} process(es) (e.g. PID {first}) "
             "changed during the scan: their numbers mix the before and the after")


def pfn_hidden_note() -> None:
    """Said once per command when the kernel hides PFNs from this reader."""
    warn("note: physical frame numbers are hidden from this user (needs CAP_SYS_ADMIN); "
         "PFNs, physical addresses and swap offsets show as unknown")


def parse_pids(texts) -> list[int]:
    """PIDs (:func:`parse_pid`) in the order given, each once: a PID named twice is one
    process, counted once."""
    return list(dict.fromkeys(parse_pid(t) for t in texts))


def parse_pid(text: str) -> int:
    """A PID in decimal; ``self`` is refused (it would name pagewalk itself)."""
    if text == "self":
        raise InvalidArgument("'self' would name pagewalk itself: give the PID of the process to inspect")
    # (length first: int() refuses thousands of digits with a ValueError of its own)
    if not (text.isascii() and text.isdigit()) or len(text) > 20 or not 0 < int(text) < 1 << 32:
        raise InvalidArgument(f"not a process ID: {quoted(text)}")
    return int(text)


def parse_addr(text: str) -> int:
    """A hexadecimal address, with or without ``0x``, as maps and the seed's dump print them."""
    t = text.strip().lower()
    digits = t[2:] if t.startswith("0x") else t
    if not digits or not all(c in "0123456789abcdef" for c in digits) or len(digits.lstrip("0")) > 16:
        raise InvalidArgument(f"not a hexadecimal address: {quoted(text)}")
    return int(digits, 16)


def parse_pfn(text: str) -> int:
    """A page frame number in hexadecimal (``0x`` optional), below pagemap's 2**55."""
    try:
        pfn = parse_addr(text)
    except InvalidArgument:
        raise InvalidArgument(f"not a hexadecimal page frame number: {quoted(text)}") from None
    if pfn >= PFN_LIMIT:
        raise InvalidArgument(f"PFN {pfn:#x} is out of range (page frame numbers are below {PFN_LIMIT:#x})")
    return pfn


def parse_seconds(text: str, what: str = "--interval") -> float:
    """A duration in seconds (decimal, fractions allowed): above 0, at most a day;
    inf, nan and values too large for a timer are refused here, not deep in a sleep."""
    try:
        seconds = float(text)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{what}: not a number of seconds: {quoted(text)}") from None
    if not 0 < seconds <= MAX_SECONDS:  # (false for nan too)
        raise InvalidArgument(f"{what} must be above 0 and at most {MAX_SECONDS:.0f} seconds (a day): {quoted(text)}")
    return seconds


def parse_range(text: str) -> tuple[int, int]:
    """``START-END`` (end exclusive, like maps) or ``START+LENGTH``."""
    if "+" in text:
        a, _, b = text.partition("+")
        start = parse_addr(a)
        end = start + parse_size(b)
    elif "-" in text:
        a, _, b = text.partition("-")
        start, end = parse_addr(a), parse_addr(b)
    else:
        raise InvalidArgument(f"not a range (START-END or START+LENGTH): {quoted(text)}")
    if end <= start:
        raise InvalidArgument(f"empty range: {quoted(text)}")
    if end > ADDRESS_SPACE_END:
        raise InvalidArgument(f"range {quoted(text)} ends past the end of the address space (0x{ADDRESS_SPACE_END:x})")
    return start, end


def pid_argument(parser, help: str = "process ID") -> None:  # noqa: A002
    """The positional ``PID`` argument (a string: :func:`parse_pid` reads it)."""
    parser.add_argument("pid", metavar="PID", type=str, help=help)


def force_argument(parser) -> None:
    """``--force`` for a command's ``-o`` (pagewalk.kernel.outfile's rules)."""
    parser.add_argument("--force", action="store_true",
                        help="with -o: replace a file of another user or with other hard links, write to "
                             "another user's FIFO, device or symbolic link to one, or follow another user's "
                             "symbolic link to a directory in the path (refused otherwise)")


def max_load_argument(parser, what: str) -> None:
    """``--max-load SIZE``: the memory loading snapshots may take (pagewalk.analysis.snapshot_check.LoadBudget)."""
    parser.add_argument("--max-load", metavar="SIZE",
                        help=f"the memory {what} may take (K, M, G suffixes); the default is 2G or half the "
                             "memory available, whichever is less (also PAGEWALK_LOAD_LIMIT=SIZE)")


def load_budget(args):
    """The one budget (pagewalk.analysis.snapshot_check.LoadBudget) of every snapshot a command loads."""
    from ..analysis.snapshot_check import LoadBudget

    if args.max_load is None:
        return LoadBudget()
    try:
        return LoadBudget(parse_size(args.max_load), "--max-load")
    except InvalidArgument as exc:
        raise InvalidArgument(f"--max-load: {exc}") from None


def no_scan_argument(parser) -> None:
    """``--no-scan``: read every pagemap entry instead of using PAGEMAP_SCAN (:func:`use_scan`)."""
    parser.add_argument("--no-scan", action="store_true",
                        help="read every pagemap entry instead of using the PAGEMAP_SCAN ioctl (same answers; "
                             "also PAGEWALK_NO_SCAN=1)")


def use_scan(args) -> bool | None:
    """The Process(use_scan=...) that the command line asks for (None: the default)."""
    return False if getattr(args, "no_scan", False) else None




def layout_arguments(parser, example: str, short: bool = True) -> None:
    """``--wide`` and ``-o COLUMNS``: how the command's table is laid out (:func:`layout`);
    ``example``: columns to name in the help; ``short`` False: ``--columns`` alone (where
    ``-o`` names an output file)."""
    parser.add_argument("--wide", action="store_true",
                        help="every column, however wide (on a terminal the table is fitted to its width; piped "
                             "output always has every column)")
    parser.add_argument(*(("-o",) if short else ()), "--columns", metavar="COLUMNS",
                        help=f"these columns, in this order (comma-separated headers, any case: e.g. {example})")


def terminal_width(args) -> int | None:
    """The terminal's columns where stdout is one and ``--wide`` was not given (a table
    is then fitted to them); None: every column (piped output, or --wide)."""
    if args.wide or not sys.stdout.isatty():
        return None
    import shutil

    return shutil.get_terminal_size().columns


def layout(args, headers=None):
    """The :class:`~pagewalk.output.table.Layout` that ``--wide`` and ``-o`` ask for;
    ``-o``'s names checked against ``headers`` where they are known before the work."""
    from ..output.table import Layout, column_key

    chosen = None
    if args.columns is not None:
        chosen = tuple(column_key(c) for c in args.columns.split(","))
        keys = [column_key(h) for h in headers or ()]
        unknown = [c or "(none)" for c in chosen if not c or (headers and c not in keys)]
        if unknown or not chosen:
            raise InvalidArgument(f"-o: no column {', '.join(unknown)}" + (f" (choose from {', '.join(keys)})"
                                                                          if keys else ""))
    return Layout(terminal_width(args), chosen)
