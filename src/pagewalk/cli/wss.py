"""``pagewalk wss PID``: working-set size over time."""

from __future__ import annotations

import sys

from ..errors import InvalidArgument
from . import _common

NAMES = ("wss",)  # the command names this module serves


def add_parser(sub) -> None:
    p = sub.add_parser(
        "wss", help="working-set size over time (pages touched per interval)",
        description="Each sample resets what the method tracks, waits --interval seconds and counts the pages "
                    "touched meanwhile, in bytes and as a share of RSS, per mapping. Methods, and how each "
                    "disturbs the target: referenced (clear_refs 1 + smaps Referenced) clears the accessed "
                    "bits of every page, so reclaim sees them as not recently used; soft-dirty (clear_refs 4 + "
                    "pagemap bit 55; sees writes only) write-protects every page, whose next write faults once; "
                    "idle (page_idle bitmap; root) clears accessed bits like referenced; damon (the kernel's "
                    "DAMON with virtual-address monitoring; root, and no kdamond already running) runs a "
                    "kdamond that clears the accessed bits of the pages it samples, counts whole regions "
                    "(approximate at their edges), and recreates DAMON's sysfs kdamond directories, so "
                    "settings left in stopped kdamonds are lost. auto picks the best this kernel and user "
                    "have and says which. The run reports its own cost (for damon, the kdamond's CPU time).")
    _common.pid_argument(p)
    p.add_argument("--interval", type=float, default=1.0, metavar="S", help="seconds per sample (default 1)")
    p.add_argument("--count", type=int, default=5, metavar="N", help="samples (default 5)")
    p.add_argument("--method", default="auto", choices=("auto", "referenced", "soft-dirty", "idle", "damon"))
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..wss import DISTURBS, track

    pid = _common.parse_pid(args.pid)
    if not args.interval > 0 or args.count < 1:
        raise InvalidArgument("--interval must be above 0 and --count at least 1")
    human = _common.human_bytes

    def show(sample) -> None:
        if args.json:
            return
        share = f"{100 * sample.wss_bytes / sample.rss_bytes:.0f}%" if sample.rss_bytes else "-"
        sys.stdout.write(f"t={sample.time:.1f}s  wss {human(sample.wss_bytes)}  ({share} of RSS "
                         f"{human(sample.rss_bytes)})\n")
        sys.stdout.flush()

    import signal

    def stop(signum, frame) -> None:  # unwind, so that a kdamond pagewalk started is stopped
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    method, samples, cost = track(pid, args.method, args.interval, args.count, show)
    if args.json:
        import json

        from ..names import unicode_text

        doc = {"method": method, "disturbs": DISTURBS[method],
               "samples": [{"time": s.time, "wss_bytes": s.wss_bytes, "rss_bytes": s.rss_bytes,
                            "mappings": [{"mapping": unicode_text(label), "start": start, "wss_bytes": b}
                                         for label, start, b in s.mappings]} for s in samples],
               "cost": {"seconds": round(cost.seconds, 4), "pages_scanned": cost.pages_scanned}}
        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
        return 0
    last = sorted(samples[-1].mappings, key=lambda m: -m[2])[:10]
    if last:
        from ..names import printable
        from ..output.table import render_columns

        sys.stdout.write("\nlast sample, by mapping:\n" + render_columns(
            ["START", "WSS", "MAPPING"], [[f"{s:x}" for _, s, _ in last], [human(b) for _, _, b in last],
                                         [printable(label) for label, _, _ in last]], right={1}))
    _common.warn(f"method {method}{' (chosen by auto)' if args.method == 'auto' else ''}: {DISTURBS[method]}; "
                 f"cost {cost.seconds:.3f} s of work, {cost.pages_scanned} pages scanned")
    return 0
