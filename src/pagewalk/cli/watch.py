"""``pagewalk watch PID``: a live view of a process's memory per mapping."""

from __future__ import annotations

import sys

from ..errors import PagewalkError
from . import _common

__all__ = ["NAMES", "add_parser", "run"]

NAMES = ("watch",)  # the command names this module serves


def add_parser(sub) -> None:
    p = sub.add_parser("watch", help="live view of RSS, PSS and swap per mapping, with their changes (q quits)",
                       description="Redraws every --interval seconds: RSS, PSS and swap per mapping, sorted by RSS, "
                                   "with the change since the previous sample and the totals. Follows the "
                                   "terminal's size; q or Ctrl-C quits; when the process exits the view says so and "
                                   "stops updating until q.")
    _common.pid_argument(p)
    p.add_argument("--interval", default="1", metavar="S", help="seconds between samples (default 1, at most a day)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..analysis.usage import measure
    from ..errors import NoAddressSpace
    from ..kernel.procfs import command_name, is_zombie
    from ..output.live import Watch

    pid = _common.parse_pid(args.pid)
    interval = _common.parse_seconds(args.interval)
    if not (sys.stdout.isatty() and sys.stdin.isatty()):
        raise PagewalkError("watch draws on a terminal; for a record use 'pagewalk usage --by mapping --json' "
                            "or 'pagewalk wss --json'")
    zombie = False
    try:
        measure([pid], by="mapping")  # fails here, before the screen is taken, if it cannot be read
    except NoAddressSpace:
        # A zombie is a process still (ps lists it): shown as one, with no pages, until q.
        zombie = is_zombie(pid)
        if not zombie:
            raise  # a kernel thread: nothing to watch
    command = command_name(pid)
    Watch(pid, interval, lambda: measure([pid], by="mapping"), command, zombie=zombie).run()
    return 0
