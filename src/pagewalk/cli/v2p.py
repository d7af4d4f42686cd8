"""``pagewalk v2p PID ADDR...``: virtual to physical, one address or thousands.

Imports neither numpy nor anything heavy: one address costs little more than
starting Python.
"""

from __future__ import annotations

import sys

from ..errors import InvalidArgument, NotMapped  # light: the CLI has loaded errors already
from . import _common

NAMES = ("v2p", "translate")  # the command names this module serves


def add_parser(sub) -> None:
    for name in NAMES:
        p = sub.add_parser(name, help="virtual to physical address" + (" (same as v2p)" if name != "v2p" else ""),
                           description="The physical address, PFN, page state and mapping of each virtual "
                                       "address. ADDR is hex (0x optional); '-' reads addresses from stdin, "
                                       "one per line.")
        _common.pid_argument(p)
        _common.no_scan_argument(p)
        p.add_argument("addrs", metavar="ADDR", nargs="+", help="hex virtual address, or - for stdin")
        p.add_argument("--json", action="store_true", help="print a JSON list")
        p.set_defaults(run=run)


def fast_args(argv: list[str]):
    """The parsed arguments of ``v2p PID ADDR... [--json]`` without argparse, or None
    for anything else (help, other options, other commands: argparse handles those)."""
    if len(argv) < 3 or argv[0] not in ("v2p", "translate"):
        return None
    rest = [a for a in argv[1:] if a != "--json"]
    if len(rest) < 2 or any(a.startswith("-") and a != "-" for a in rest):
        return None
    from types import SimpleNamespace

    return SimpleNamespace(pid=rest[0], addrs=rest[1:], json="--json" in argv, run=run)


def _read_addresses(args) -> tuple[list[int], list[str]]:
    """The addresses, and each as it was written."""
    texts: list[str] = []
    for a in args.addrs:
        if a == "-":
            texts.extend(line.strip() for line in sys.stdin if line.strip())
        else:
            texts.append(a)
    return [_common.parse_addr(t) for t in texts], texts


def _decimal_notes(proc, results, texts: list[str]) -> dict[int, str]:
    """For each answer "not mapped" whose address was written in decimal digits only
    (read as hex, as the contract says) and whose decimal reading is in a mapping:
    its index, and a note naming that reading.  Maps is read again only then."""
    candidates = [i for i, (r, t) in enumerate(zip(results, texts))
                  if r.mapping is None and t.isascii() and t.isdigit()]
    if not candidates:
        return {}
    from ..translate import find_mapping

    mappings = proc.mappings()
    notes = {}
    for i in candidates:
        vaddr = int(texts[i], 10)
        m = find_mapping(mappings, vaddr)
        if m is not None:
            notes[i] = f"as decimal, {vaddr} = {vaddr:#x} is in {m.label()}"
    return notes


def run(args) -> int:
    from ..process import Process

    pid = _common.parse_pid(args.pid)
    addrs, texts = _read_addresses(args)
    if not addrs:
        raise InvalidArgument("no addresses given (stdin was empty)")
    with Process(pid, use_scan=_common.use_scan(args)) as proc:
        results = proc.translate_many(addrs)
        pfn_visible = proc.pfn_visible
        notes = _decimal_notes(proc, results, texts)
        _common.process_notes(proc)
    if not pfn_visible:
        _common.pfn_hidden_note()
    if args.json:
        import json

        answers = [r.as_dict() for r in results]
        for i, note in notes.items():
            answers[i]["note"] = note
        sys.stdout.write(json.dumps(answers, indent=1) + "\n")
    else:
        from ..names import printable

        lines = []
        for i, r in enumerate(results):
            if r.paddr is not None:
                phys = f"0x{r.paddr:x} pfn 0x{r.pfn:x}"
            elif r.present:
                phys = "- pfn -"
            else:
                phys = "-"
            where = printable(r.mapping.label()) if r.mapping else "-"
            state = f"{r.state} ({printable(notes[i])})" if i in notes else r.state
            lines.append(f"0x{r.vaddr:x} -> {phys}  {state}  {where}")
        sys.stdout.write("\n".join(lines) + ("\n" if lines else ""))
    sys.stdout.flush()
    unmapped = [r.vaddr for r in results if r.mapping is None]
    if unmapped:
        raise NotMapped(pid, unmapped)
    return 0
