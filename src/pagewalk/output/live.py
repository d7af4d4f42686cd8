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
from .table import shorten

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
    report by mapping) and draws it, sorted by RSS (``s`` cycles to PSS, swap, name)
    with the change since the last sample; the header, column names, total and a hint
    stay on screen and the rows between scroll (arrows, PgUp, PgDn, Home, End);
    redraws on resize; quits on ``q`` or Ctrl-C; when the process is gone it
    says so and stops sampling until ``q``.  A zombie (``zombie``: one already at the
    start) is shown as one: state Z, no pages."""

    def __init__(self, pid: int, interval: float, sample, command: str, zombie: bool = False) -> None:
        self.pid, self.interval, self.sample, self.command = pid, interval, sample, command
        self.report = None
        self.before: dict[str, tuple] = {}
        self.gone_at: str | None = time.strftime("%H:%M:%S") if zombie else None
        self.zombie = zombie  # it exited and its parent has not reaped it (state Z)
        self.samples = 0
        self.sort, self.top, self.page = "RSS", 0, 1  # sort key, first row shown, rows a screen

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
        screen.keypad(True)
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
            if key in (ord("s"), ord("S")):  # as top's: the next sort key
                self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
            elif key in SCROLL_KEYS:
                step = SCROLL_KEYS[key]
                self.top = max(0, self.top + (step // 2 * self.page if abs(step) == 2 else step))
            elif key == curses.KEY_HOME:
                self.top = 0
            elif key == curses.KEY_END:
                self.top = 1 << 30  # (drawn clamped)
            elif key != curses.KEY_RESIZE:
                continue
            self._draw(screen)

    def _head(self, width: int) -> list[tuple[str, int]]:
        """The lines above the table: who, how often, the totals, the state; each
        wrapped at a word to the terminal's width, never cut."""
        r = self.report
        words = [f"pagewalk watch {self.pid} ({printable(self.command)})", f"every {self.interval:g}s",
                 f"sample {self.samples}"]
        if r is not None:
            t = r.totals
            words += [f"RSS {_size(t.rss)}", f"PSS {_size(t.pss)}", f"SWAP {_size(t.swap)}"]
        if self.zombie:
            words.append("state Z (zombie)")
        elif r is not None and r.changed:  # this sample's numbers mix the before and the after
            words.append(f"{sum(r.changed.values())} mapping(s) changed while read")
        lines = [(line, curses.A_BOLD) for line in _wrap(words, width)]
        said: list[str] = []
        if self.gone_at is not None and self.zombie and r is None:
            said = [f"process {self.pid} is a zombie (state Z):", "it has exited and its parent has not",
                    "reaped it; it has no pages"]
        elif self.gone_at is not None:
            zombie = ", a zombie now (state Z, no pages)" if self.zombie else ""
            said = [f"process {self.pid} exited at {self.gone_at}{zombie}:", "the numbers below are its last"]
        return lines + [(line, curses.A_REVERSE) for line in _wrap(said, width)] if said else lines

    def _draw(self, screen) -> None:
        # Ask the terminal itself: a resize is not always reported as KEY_RESIZE.
        size = os.get_terminal_size(sys.__stdout__.fileno())
        if (size.lines, size.columns) != screen.getmaxyx():
            curses.resizeterm(size.lines, size.columns)
            screen.clear()
        height, width = screen.getmaxyx()
        screen.erase()
        head = self._head(width)
        hint = f"q quits  s sorts (by {self.sort})  arrows, PgUp, PgDn scroll"
        cols = f"{'RSS':>9} {'+/-':>8} {'PSS':>9} {'+/-':>8} {'SWAP':>8} {'+/-':>8}  MAPPING"
        r = self.report
        rows = [] if r is None else sorted(r.rows, key=SORT_KEYS[self.sort])
        # The header, the column names, the total and the hint stay on screen; the rows scroll between
        self.page = max(1, height - len(head) - 3 - (r is not None))
        self.top = min(self.top, max(0, len(rows) - self.page))
        lines = list(head)
        lines.append((cols, curses.A_UNDERLINE))
        name_room = max(8, width - 1 - 60)
        for u in rows[self.top : self.top + self.page]:
            lines.append((self._row(u, name_room), 0))
        if r is not None:
            lines.append((self._row(r.totals, name_room), curses.A_BOLD))
        more = f"  rows {self.top + 1}-{min(len(rows), self.top + self.page)} of {len(rows)}" if rows else ""
        for y, (text, attr) in enumerate(lines[: height - 1]):
            screen.addnstr(y, 0, text, max(0, width - 1), attr)
        screen.addnstr(height - 1, 0, (hint + more)[: max(0, width - 1)], max(0, width - 1), curses.A_DIM)
        screen.refresh()

    def _row(self, u, name_room: int) -> str:
        b = self.before.get(u.name, (None, None, None))
        return (f"{_size(u.rss):>9} {_delta(u.rss, b[0]):>8} {_size(u.pss):>9} {_delta(u.pss, b[1]):>8} "
                f"{_size(u.swap):>8} {_delta(u.swap, b[2]):>8}  {shorten(printable(u.name), name_room)}")


SORTS = ("RSS", "PSS", "SWAP", "name")  # what s cycles through
SORT_KEYS = {"RSS": lambda u: (-u.rss, u.name), "PSS": lambda u: (-(u.pss or 0), u.name),
             "SWAP": lambda u: (-(u.swap or 0), u.name), "name": lambda u: u.name}
SCROLL_KEYS = {curses.KEY_DOWN: 1, curses.KEY_UP: -1, curses.KEY_NPAGE: 2, curses.KEY_PPAGE: -2}  # 2: a page


def _wrap(words: list[str], width: int) -> list[str]:
    """``words`` (phrases) joined with two spaces into lines of at most ``width - 1``."""
    lines = [""]
    for w in words:
        if lines[-1] and len(lines[-1]) + 2 + len(w) > width - 1:
            lines.append("")
        lines[-1] += ("  " if lines[-1] else "") + w
    return lines
