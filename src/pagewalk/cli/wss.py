"""``pagewalk wss PID``: working-set size over time."""

from __future__ import annotations

import sys

from ..errors import InvalidArgument
from . import _common

__all__ = ["NAMES", "add_parser", "run"]

NAMES = ("wss",)  # the command names this module serves


METHOD_HELP = (
    "how pages touched are found, and how each disturbs the target: "
    "referenced (clear_refs 1 then smaps Referenced) clears the accessed bits of every page, and the referenced "
    "flags of the pages it shares with other processes, so reclaim sees them as not recently used; "
    "soft-dirty (clear_refs 4 then pagemap bit 55; sees writes only) write-protects every page, whose next "
    "write then faults once; "
    "idle (the page_idle bitmap; root) clears accessed bits like referenced; "
    "damon (the kernel's DAMON watching virtual addresses; root, and no kdamond already running) runs a kdamond "
    "that clears the accessed bits of the pages it samples, counts whole regions, and recreates DAMON's sysfs "
    "kdamond directories (settings left in stopped kdamonds are lost); "
    "auto (default) takes the first of idle, referenced, soft-dirty, damon this kernel and user have")


def add_parser(sub) -> None:
    from ..analysis.choices import METHODS

    p = sub.add_parser(
        "wss", help="working-set size over time (pages touched per interval)",
        description="Each sample resets what the method tracks, waits --interval seconds and counts the pages "
                    "this process touched meanwhile, in bytes and as a share of RSS, per mapping; each sample "
                    "is stamped with the end of its interval. The kernel marks some pages accessed for every "
                    "process that maps them (pages shared with other processes, file pages others read; "
                    "a running kdamond spreads any mapper's access this way): what the method saw on such "
                    "pages is reported apart, as unattributed, never counted in the working set. "
                    "The run reports its own cost (for damon, the kdamond's CPU time).")
    _common.pid_argument(p)
    p.add_argument("--interval", default="1", metavar="S", help="seconds per sample (default 1, at most a day)")
    p.add_argument("--count", type=int, default=5, metavar="N", help="samples (default 5)")
    p.add_argument("--method", default="auto", choices=("auto", *METHODS),
                   help=METHOD_HELP)
    p.add_argument("--json", action="store_true",
                   help="print one JSON document (at the end; Ctrl-C prints the samples taken so far)")
    _common.layout_arguments(p, "wss,mapping (of the last sample's table)")
    p.set_defaults(run=run)


class _Stopped(Exception):
    """SIGTERM or SIGHUP: stop sampling, as Ctrl-C does."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.status = 128 + signum


def run(args) -> int:
    import signal

    pid = _common.parse_pid(args.pid)
    interval = _common.parse_seconds(args.interval)
    from ..output import wss as render

    layout = _common.layout(args, render.HEADERS)
    if args.count < 1:
        raise InvalidArgument("--count must be at least 1")

    def show(sample) -> None:
        sys.stdout.write(render.sample_line(sample))
        sys.stdout.flush()

    def stop(signum, frame) -> None:  # unwind, so that a kdamond pagewalk started is stopped
        raise _Stopped(signum)

    # (restored on return: main() may be called by a program with handlers of its own)
    handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    handlers[signal.SIGINT] = signal.getsignal(signal.SIGINT)
    try:
        return _sample(args, pid, interval, show, layout)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _sample(args, pid: int, interval: float, show, layout) -> int:
    import signal

    from ..analysis.wss import DISTURBS, open_tracker, unattributed_reason
    from ..kernel.probes import pfn_visible
    from ..output import wss as render

    tracker = open_tracker(pid, args.method, interval)
    # Text prints each sample as it comes and keeps only the last; JSON keeps them
    # all for its one document, written at the end or when interrupted.
    samples, last, unattributed, status, changed = [], None, False, 0, 0
    try:
        try:
            for sample in tracker.samples(interval, args.count):
                if args.json:
                    samples.append(sample)
                else:
                    show(sample)
                last = sample
                unattributed = unattributed or bool(sample.unattributed_bytes)
                process = getattr(tracker, "process", None)
                changed += bool(process is not None and process.changed)
        except KeyboardInterrupt:
            status = 130
        except _Stopped as exc:
            status = exc.status
    finally:
        tracker.close()
    if status:  # the samples taken are written whole: a second Ctrl-C must not cut them short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if changed:
        _common.warn(f"warning: mappings changed while {changed} sample(s) were read: those mix the before and "
                     "the after")
    method, cost = tracker.method, tracker.cost
    why = unattributed_reason(pfn_visible()) if unattributed else None

    if args.json:
        sys.stdout.write(render.report_json(method, DISTURBS[method], samples, why, cost))
        sys.stdout.flush()
        return status
    sys.stdout.write(render.report_text(last, why, layout))
    sys.stdout.flush()
    _common.warn(f"method {method}{' (chosen by auto)' if args.method == 'auto' else ''}: {DISTURBS[method]}; "
                 f"cost {cost.seconds:.3f} s of work, {cost.pages_scanned} pages scanned")
    return status
