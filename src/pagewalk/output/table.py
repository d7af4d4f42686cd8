"""Plain aligned text tables (the human output of ``maps`` and ``doctor``)."""

from __future__ import annotations


def render_table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    """Columns padded to their widest cell; ``right`` holds indices of right-aligned
    columns.  The last column is never padded (paths may be long)."""
    return render_columns(headers, [list(column) for column in zip(*rows)] if rows else [[] for _ in headers],
                          right)


def render_columns(headers: list[str], columns: list[list[str]], right: set[int] | None = None) -> str:
    """:func:`render_table` of a table given column by column (cheaper for many rows)."""
    right = right or set()
    widths = [max(len(header), max(map(len, column), default=0)) for header, column in zip(headers, columns)]
    # One format string for every row: one call a row, not one a cell.
    cells = [f"{{:{'>' if i in right else '<'}{w}}}" for i, w in enumerate(widths[:-1])] + ["{}"]
    line = "  ".join(cells)
    return "".join(line.format(*row).rstrip() + "\n" for row in [headers, *zip(*columns)])
