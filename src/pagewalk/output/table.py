"""Aligned text tables: plain when piped, coloured by meaning on a terminal.

Colour follows the conventions: only when the stream is a terminal, never with
``NO_COLOR`` set (https://no-color.org) or ``TERM=dumb``.  It is a few ANSI codes
added around cells that are already padded, so the layout is the same either way
(and 10,000 rows cost milliseconds, where a rich Table takes seconds).
"""

from __future__ import annotations

import os
import sys

from collections import namedtuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Callable

__all__ = ["Layout", "color_wanted", "column_key", "render_table", "render_columns", "shorten", "wrap_lines"]

# SGR codes by what a column means; zeros are dimmed so that what is there stands out
STYLES = {
    "PRESENT": "34", "RSS": "34", "RESIDENT": "34", "APPEARED": "34",
    "FILE": "32", "HUGE": "35", "THP": "35", "ZERO": "33",
    "SWAPPED": "31", "SWAP": "31", "SWAP_PSS": "31", "SWAPPED_OUT": "31", "SWAPPED_IN": "31", "VANISHED": "31",
    "GUARD": "90", "UFFD_WP": "90", "MOVED": "36", "WRITTEN": "36",
    "PSS": "1", "USS": "1", "WSS": "1",
    "START": "2", "END": "2", "PERMS": "2", "VADDR": "2", "PFN": "2",
}
BOLD, DIM, RESET = "\033[1m", "\033[2m", "\033[0m"


def color_wanted() -> bool:
    """Whether to colour what goes to stdout."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


class Layout(namedtuple("Layout", "width columns", defaults=(None, None))):
    """How a table is laid out (the command line's ``--wide`` and ``-o COLUMNS``).

    ``width``: a terminal's columns to fit the table into (None: every column, whole:
    piped output and ``--wide``).  ``columns``: only these, in this order, named by
    :func:`column_key` (None: the table's own)."""

    __slots__ = ()


def column_key(header: str) -> str:
    """How ``-o`` names a column: its header in lower case, runs of other characters
    than letters and digits as one ``_`` (``START_A PERMS`` -> ``start_a_perms``)."""
    words = "".join(c if c.isalnum() else " " for c in header.lower()).split()
    return "_".join(words)


MIN_NAME = 16  # a name column is never cut below this (its ends still tell names apart)
COMFORTABLE_NAME = 28  # names are cut to this before a column is given up
MIN_WRAP = 30  # a wrapped last column narrower than this goes under the whole row instead
EMPTY = ("0", "0B", "-", "")  # cells that say nothing: a column of only these may go first


def render_table(headers: list[str], rows: list[list[str]], right: set[int] | None = None,
                 color: bool | None = None, **fitting) -> str:
    """Columns padded to their widest cell; ``right`` holds indices of right-aligned
    columns.  The last column is never padded (paths may be long).  ``color`` None:
    coloured when stdout is a terminal (see :func:`color_wanted`).  ``fitting``: as
    for :func:`render_columns`."""
    return render_columns(headers, [list(column) for column in zip(*rows)] if rows else [[] for _ in headers],
                          right, color, **fitting)


def render_columns(headers: list[str], columns: list[list[str]], right: set[int] | None = None,
                   color: bool | None = None, layout: Layout | None = None,
                   names: dict[int, Callable[[int], list[str]] | None] | None = None,
                   optional: tuple[str, ...] = (), wrap_last: bool = False,
                   comfortable: int = COMFORTABLE_NAME) -> str:
    """:func:`render_table` of a table given column by column (cheaper for many rows).

    ``layout`` picks columns (``-o``) and fits the table to a terminal's width, in
    this order while it is too wide: right-aligned columns with nothing in them go
    (zeros, ``-``), the ``names`` columns (file names, commands) are cut from the
    middle to ``comfortable`` characters, the ``optional`` headers go in their order,
    names are cut to :data:`MIN_NAME`; with ``wrap_last`` the last column's text is
    wrapped under itself.  ``names`` maps a column to how it is cut to a width
    (None: each cell by :func:`shorten`).  Hidden columns are named on a last line."""
    right = set(right or ())
    names = dict(names or {})
    hidden: list[str] = []
    if layout is not None and layout.columns is not None:
        keys = [column_key(h) for h in headers]
        missing = [c for c in layout.columns if c not in keys]
        if missing:
            from ..errors import InvalidArgument

            raise InvalidArgument(f"no column {', '.join(missing)} here (choose from {', '.join(keys)})")
        picked = [keys.index(c) for c in layout.columns]
        headers, columns = [headers[i] for i in picked], [columns[i] for i in picked]
        right = {new for new, old in enumerate(picked) if old in right}
        names = {new: names[old] for new, old in enumerate(picked) if old in names}
        optional = ()  # asked for by name: kept
    if layout is not None and layout.width is not None and headers:
        headers, columns, right, names, hidden = _fit(headers, columns, right, names, optional, layout.width,
                                                      layout.columns is None, comfortable)
        if wrap_last:
            columns = _wrap_last(headers, columns, layout.width)
    text = _render(headers, columns, right, color)
    if hidden:
        text += wrap_lines(f"(hidden to fit {layout.width} columns: {', '.join(hidden)}; --wide shows them)",
                           layout.width) + "\n"
    return text


def _widths(headers: list[str], columns: list[list[str]]) -> list[int]:
    return [max(len(header), max(map(len, column), default=0)) for header, column in zip(headers, columns)]


def _fit(headers, columns, right, names, optional, width, dropping_empty, comfortable):
    """The columns that fit ``width`` (see :func:`render_columns`), and those hidden."""
    headers, columns = list(headers), list(columns)
    cutters = {headers[i]: (cut, columns[i]) for i, cut in names.items()}  # by header: columns go
    hidden: list[str] = []

    def overflow(name_room: int | None) -> int:
        """How much wider than ``width`` the table is, names cut to ``name_room``."""
        widths = _widths(headers, columns)
        if name_room is not None:
            widths = [min(w, max(name_room, len(h))) if h in cutters else w for h, w in zip(headers, widths)]
        return sum(widths) + 2 * (len(headers) - 1) - width

    def drop(i: int) -> None:
        nonlocal right
        hidden.append(headers[i])
        del headers[i], columns[i]
        right = {j - (j > i) for j in right if j != i}

    if dropping_empty:  # columns of zeros say nothing
        for i in reversed(range(len(headers))):
            if overflow(None) > 0 and i in right and all(c.strip() in EMPTY for c in columns[i][:-1] or [""]):
                drop(i)
    for header in optional:  # while names cut to a comfortable width are not enough
        if overflow(comfortable) > 0 and header in headers:
            drop(headers.index(header))
    # names cut as little as the table needs, the widest first, none below MIN_NAME
    for header in sorted(cutters, key=lambda h: -max(map(len, cutters[h][1]), default=0)):
        over = overflow(None)
        i = headers.index(header)
        now = _widths([header], [columns[i]])[0]
        room = max(MIN_NAME, len(header), now - over)
        if over > 0 and room < now:
            cut, cells = cutters[header]
            columns[i] = cut(room) if cut else [shorten(c, room) for c in cells]
    names = {headers.index(h): cut for h, (cut, _) in cutters.items()}
    return headers, columns, right, names, hidden


def _wrap_last(headers: list[str], columns: list[list[str]], width: int) -> list[list[str]]:
    """The last column's cells wrapped to ``width``: continuation lines start under the
    column, or 4 spaces in where that leaves it under :data:`MIN_WRAP` characters; each
    wrapped cell holds its line breaks."""
    import textwrap

    start = sum(w + 2 for w in _widths(headers[:-1], columns[:-1]))
    indent = start if width - start >= MIN_WRAP else 4

    def wrapped(cell: str) -> str:
        # (the first line begins after the other columns: wrapped as if indented so far, then unindented)
        lines = textwrap.wrap(" " * start + cell, width, subsequent_indent=" " * indent, break_on_hyphens=False)
        return "\n".join(lines)[start:] if lines else cell

    return [*columns[:-1], [wrapped(c) for c in columns[-1]]]


def _render(headers: list[str], columns: list[list[str]], right: set[int], color: bool | None) -> str:
    widths = _widths(headers, columns)
    # One format string for every row: one call a row, not one a cell.
    # (the last column unpadded, unless it is right-aligned: its cells may be long names)
    last = len(widths) - 1
    cells = [f"{{:{'>' if i in right else '<'}{w}}}" if i < last or i in right else "{}" for i, w in enumerate(widths)]
    if color if color is not None else color_wanted():
        return _coloured(headers, columns, cells)
    line = "  ".join(cells)
    return "".join(line.format(*row).rstrip() + "\n" for row in [headers, *zip(*columns)])


def _coloured(headers: list[str], columns: list[list[str]], cells: list[str]) -> str:
    styles = [STYLES.get(h.upper()) for h in headers]
    out = ["  ".join(BOLD + c.format(h) + RESET for c, h in zip(cells, headers)).rstrip() + "\n"]
    for row in zip(*columns):
        total = row[0].strip().lower() == "total"
        parts = []
        for cell, value, style in zip(cells, row, styles):
            text = cell.format(value)
            if value.strip() in ("0", "0B", "-"):
                parts.append(DIM + text + RESET)
            elif total:
                parts.append(BOLD + text + RESET)
            elif style:
                parts.append(f"\033[{style}m{text}{RESET}")
            else:
                parts.append(text)
        out.append("  ".join(parts).rstrip() + "\n")
    return "".join(out)


def shorten(name: str, room: int) -> str:
    """``name`` in at most ``room`` characters, cut from the middle with ``...``, the
    part after the last ``/`` kept whole where it fits."""
    if len(name) <= room:
        return name
    tail = name[name.rfind("/") + 1:]
    if len(tail) + 3 <= room:  # the directories give way
        return name[: room - len(tail) - 3] + "..." + tail
    keep = room - 3  # the last part too, from its middle: its start and its end both tell files apart
    return "..." + tail[: keep - keep // 2 - 1] + "~" + tail[len(tail) - keep // 2:] if keep > 2 else name[:room]


def wrap_lines(text: str, width: int | None) -> str:
    """``text`` with each line longer than ``width`` wrapped at spaces, the rest of it
    indented two more than the line; a name longer than a whole line is broken
    (never cut: the terminal would break it too).  None: ``text`` as it is."""
    if width is None or all(len(line) <= width for line in text.split("\n")):
        return text
    import textwrap

    def wrapped(line: str) -> str:
        indent = line[:len(line) - len(line.lstrip(" "))]
        return textwrap.fill(line, width, subsequent_indent=indent + "  ", break_on_hyphens=False) \
            if len(line) > width else line

    return "\n".join(map(wrapped, text.split("\n")))
