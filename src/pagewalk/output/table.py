"""Aligned text tables: plain when piped, coloured by meaning on a terminal.

Colour follows the conventions: only when the stream is a terminal, never with
``NO_COLOR`` set (https://no-color.org) or ``TERM=dumb``.  It is a few ANSI codes
added around cells that are already padded, so the layout is the same either way
(and 10,000 rows cost milliseconds, where a rich Table takes seconds).
"""

from __future__ import annotations

import os
import sys

__all__ = ["color_wanted", "render_table", "render_columns"]

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


def render_table(headers: list[str], rows: list[list[str]], right: set[int] | None = None,
                 color: bool | None = None) -> str:
    """Columns padded to their widest cell; ``right`` holds indices of right-aligned
    columns.  The last column is never padded (paths may be long).  ``color`` None:
    coloured when stdout is a terminal (see :func:`color_wanted`)."""
    return render_columns(headers, [list(column) for column in zip(*rows)] if rows else [[] for _ in headers],
                          right, color)


def render_columns(headers: list[str], columns: list[list[str]], right: set[int] | None = None,
                   color: bool | None = None) -> str:
    """:func:`render_table` of a table given column by column (cheaper for many rows)."""
    right = right or set()
    widths = [max(len(header), max(map(len, column), default=0)) for header, column in zip(headers, columns)]
    # One format string for every row: one call a row, not one a cell.
    cells = [f"{{:{'>' if i in right else '<'}{w}}}" for i, w in enumerate(widths[:-1])] + ["{}"]
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
