"""``pagewalk v2p PID ADDR...``: virtual to physical, one address or thousands.

Imports neither numpy nor anything heavy: one address costs little more than
starting Python.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

from ..errors import InvalidArgument, NotMapped  # light: the CLI has loaded errors already
from . import _common

__all__ = ["NAMES", "add_parser", "run"]

NAMES = ("v2p", "translate")  # the command names this module serves


def add_parser(sub) -> None:
    for name in NAMES:
        p = sub.add_parser(name, help="virtual to physical address" + (" (same as v2p)" if name != "v2p" else ""),
                           description="The physical address, PFN, page state and mapping of each virtual "
                                       "address. ADDR is hex (0x optional); '-' reads addresses from stdin, "
                                       "one per line, answered as they are read.")
        _common.pid_argument(p)
        _common.no_scan_argument(p)
        p.add_argument("addrs", metavar="ADDR", nargs="+", help="hex virtual address, or - for stdin")
        p.add_argument("--json", action="store_true", help="print a JSON list")
        p.set_defaults(run=run)


BATCH = 1 << 14  # addresses read, translated and written at a time: memory holds one batch
_READ_BYTES = 1 << 20  # stdin is read about this much at a time
LINE_BYTES_MOST = 4096  # an address is a few dozen characters: a longer line is refused unread


def _texts(args) -> Iterator[list[bytes]]:
    """The addresses as written (bytes: stdin need not be UTF-8), in order, in lists
    of at most BATCH: the arguments, and for ``-`` each non-empty line of stdin."""
    batch: list[bytes] = []
    for a in args.addrs:
        if a != "-":
            batch.append(os.fsencode(a))
        else:
            for lines in _stdin_lines():
                batch += [t for t in [line.strip() for line in lines] if t]
                while len(batch) >= BATCH:
                    yield batch[:BATCH]
                    del batch[:BATCH]
        if len(batch) >= BATCH:
            yield batch[:BATCH]
            del batch[:BATCH]
    if batch:
        yield batch


def _stdin_lines() -> Iterator[list[bytes]]:
    """stdin's lines, a read at a time, in memory bounded by the read (a line longer
    than LINE_BYTES_MOST is refused before it is read whole)."""
    stream = getattr(sys.stdin, "buffer", sys.stdin)
    if stream is None:
        raise InvalidArgument("'-' reads addresses from stdin, but stdin is closed")
    tail = b""
    while data := stream.read(_READ_BYTES):
        if isinstance(data, str):  # a text stream standing in for stdin
            data = os.fsencode(data)
        lines = (tail + data).split(b"\n")
        tail = lines.pop()
        if len(tail) > LINE_BYTES_MOST:
            raise InvalidArgument(f"a line of stdin is longer than {LINE_BYTES_MOST} bytes: not an address")
        yield lines
    if tail:
        yield [tail]


def _parse(texts: list[bytes]) -> list[int]:
    """The addresses of ``texts`` (hex, ``0x`` optional), as :func:`_common.parse_addr`
    reads them; a list of ordinary ones is converted at C speed, checked as a whole."""
    joined = b"\n".join(texts)
    if joined.isascii() and not any(c in joined for c in (b"_", b"+", b"-")):  # all int() takes beyond parse_addr
        try:
            vaddrs = [int(t, 16) for t in texts]
        except ValueError:
            pass
        else:
            if max(vaddrs) < 1 << 64:
                return vaddrs
    return [_common.parse_addr(os.fsdecode(t)) for t in texts]


def _decimal_notes(proc, results, texts: list[bytes]) -> dict[int, str]:
    """For each answer "not mapped" whose address was written in decimal digits only
    (read as hex, as the contract says) and whose decimal reading is in a mapping:
    its index, and a note naming that reading.  Maps is read again only then."""
    candidates = [i for i, (r, t) in enumerate(zip(results, texts)) if r.mapping is None and t.isdigit()]
    if not candidates:
        return {}
    from ..core.translate import find_mapping

    mappings = proc.mappings()
    notes = {}
    for i in candidates:
        vaddr = int(texts[i].lstrip(b"0") or b"0", 10)  # (at most 20 digits once the zeros are gone)
        m = find_mapping(mappings, vaddr)
        if m is not None:
            notes[i] = f"as decimal, {vaddr} = {vaddr:#x} is in {m.label()}"
    return notes


def run(args) -> int:
    from ..core.process import Process
    from ..errors import ProcessGone
    from ..kernel.procfs import gone_during, proc_start_time
    from ..output import v2p as render

    pid = _common.parse_pid(args.pid)
    started = proc_start_time(pid)  # to tell an exec (same process, new memory) from an exit
    write = sys.stdout.write
    answered = 0
    unmapped: list[int] = []  # the first few, to name
    unmapped_count = 0
    with Process(pid, use_scan=_common.use_scan(args)) as proc:
        try:
            for texts in _texts(args):
                try:
                    addrs = _parse(texts)
                except InvalidArgument as exc:
                    if answered:
                        raise InvalidArgument(f"{exc} (after {answered} addresses; the output above is partial)"
                                              ) from None
                    raise
                results = proc.translate_many(addrs)
                notes = _decimal_notes(proc, results, texts)
                if not answered:
                    if not proc.pfn_visible:
                        _common.pfn_hidden_note()
                    if args.json:
                        write("[\n")
                else:
                    write(",\n" if args.json else "")
                write(render.json_objects(results, notes) if args.json else render.text(results, notes))
                answered += len(results)
                for r in results:
                    if r.mapping is None:
                        unmapped_count += 1
                        if len(unmapped) < 8:
                            unmapped.append(r.vaddr)
                del texts, addrs, results, notes
        except ProcessGone:
            if not answered:
                raise
            sys.stdout.flush()
            raise gone_during(pid, started, "v2p") from None
        if not answered:
            raise InvalidArgument("no addresses given (stdin was empty)")
        if args.json:
            write("\n]\n")
        _common.process_notes(proc)
    sys.stdout.flush()
    if unmapped_count:
        raise NotMapped(pid, unmapped, unmapped_count)
    return 0
