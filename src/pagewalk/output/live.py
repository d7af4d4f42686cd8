"""The live terminal view of ``pagewalk watch`` (curses, from the standard library)."""

from __future__ import annotations

import curses
import os
import sys
import time

from ..errors import NoAddressSpace, NoSuchProcess
from ..kernel.procfs import is_zombie
from ..names import printable
from .humanize import human_bytes

__all__ = ["Watch"]


def _size(n: int | None) -> str:
    return human_bytes(n)


def _delta(now: int | None, before: int | None) -> str:
    if now is None or before is None or now == before:
        return ""
    sign = "+" if now > before else "-"
    return sign + _size(abs(now - before))


class Watch:
    """Samples one process every ``interval`` seconds (``sample()`` returns a usage
    report by mapping) and draws it, sorted by RSS with the change since the last
    sample; redraws on resize; quits on ``q`` or Ctrl-C; when the process is gone it
    says so and stops sampling until ``q``.  A zombie (``zombie``: one already at the
    start) is shown as one: state Z, no pages."""

    def __init__(self, pid: int, interval: float, sample, command: str, zombie: bool = False) -> None:
        self.pid, self.interval, self.sample, self.command = pid, interval, sample, command
        self.report = None
        self.before: dict[str, tuple] = {}
        self.gone_at: str | None = time.strftime("%H:%M:%S") if zombie else None
        self.zombie = zombie  # it exited and its parent has not reaped it (state Z)
        self.samples = 0

    def run(self) -> None:
        """Take over the terminal (curses) and sample and draw until ``q`` or Ctrl-C.
        Raises what ``sample()`` raises, except the process's exit, which is shown,
        and what curses raises where it cannot set up the terminal."""
        try:
            curses.wrapper(self._loop)
        except KeyboardInterrupt:
            pass

    def _take(self) -> None:
        if self.report is not None:
            self.before = {u.name: (u.rss, u.pss, u.swap) for u in self.report.rows}
            self.before["total"] = (self.report.totals.rss, self.report.totals.pss, self.report.totals.swap)
        try:
            self.report = self.sample()
            self.samples += 1
        except NoAddressSpace:  # it exited since the last sample, and is a zombie now

            self.gone_at = time.strftime("%H:%M:%S")
            self.zombie = is_zombie(self.pid)
            if not self.zombie:
                raise
        except NoSuchProcess:  # (after its subclass NoAddressSpace)
            self.gone_at = time.strftime("%H:%M:%S")

    def _loop(self, screen) -> None:
        curses.curs_set(0)
        screen.timeout(100)  # poll keys ten times a second
        due = 0.0
        while True:
            if time.monotonic() >= due:
                if self.gone_at is None:
                    self._take()
                due = time.monotonic() + self.interval
                self._draw(screen)  # also after the process is gone: the terminal may have been resized
            key = screen.getch()
            if key in (ord("q"), ord("Q")):
                return
            if key == curses.KEY_RESIZE:
                self._draw(screen)

    def _draw(self, screen) -> None:
        # Ask the terminal itself: a resize is not always reported as KEY_RESIZE.
        size = os.get_terminal_size(sys.__stdout__.fileno())
        if (size.lines, size.columns) != screen.getmaxyx():
            curses.resizeterm(size.lines, size.columns)
            screen.clear()
        height, width = screen.getmaxyx()
        screen.erase()
        lines = []
        r = self.report
        head = f"pagewalk watch {self.pid} ({printable(self.command)})  every {self.interval:g}s  sample {self.samples}"
        if r is not None:
            t = r.totals
            head += f"  RSS {_size(t.rss)}  PSS {_size(t.pss)}  SWAP {_size(t.swap)}"
        if self.zombie:
            head += "  state Z (zombie)"
        elif r is not None and r.changed:  # this sample's numbers mix the before and the after
            head += f"  {sum(r.changed.values())} mapping(s) changed while read"
        lines.append((head + "  (q quits)", curses.A_BOLD))
        if self.gone_at is not None and self.zombie and r is None:
            lines.append((f"process {self.pid} is a zombie (state Z): it has exited and its parent has not reaped "
                          "it; it has no pages. Press q to quit", curses.A_REVERSE))
        elif self.gone_at is not None:
            zombie = " (a zombie now, state Z: no pages)" if self.zombie else ""
            lines.append((f"process {self.pid} exited at {self.gone_at}{zombie}: the numbers below are its last; "
                          "press q to quit", curses.A_REVERSE))
        lines.append(("", 0))
        cols = f"{'RSS':>9} {'+/-':>8} {'PSS':>9} {'+/-':>8} {'SWAP':>8} {'+/-':>8}  MAPPING"
        lines.append((cols, curses.A_UNDERLINE))
        if r is not None:
            rows = sorted(r.rows, key=lambda u: (-u.rss, u.name))
            for u in [*rows, r.totals]:
                b = self.before.get(u.name, (None, None, None))
                lines.append((f"{_size(u.rss):>9} {_delta(u.rss, b[0]):>8} {_size(u.pss):>9} "
                              f"{_delta(u.pss, b[1]):>8} {_size(u.swap):>8} {_delta(u.swap, b[2]):>8}  "
                              f"{printable(u.name)}", curses.A_BOLD if u.name == "total" else 0))
        for y, (text, attr) in enumerate(lines[: height - 1]):
            screen.addnstr(y, 0, text, max(0, width - 1), attr)
        screen.refresh()
