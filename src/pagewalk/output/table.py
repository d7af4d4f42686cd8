"""Plain aligned text tables (the human output of ``maps`` and ``doctor``)."""

from __future__ import annotations


def render_table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    """Columns padded to their widest cell; ``right`` holds indices of right-aligned
    columns.  The last column is never padded (paths may be long)."""
    right = right or set()
    table = [headers, *rows]
    widths = [max(map(len, column)) for column in zip(*table)]
    # One format string for every row: one call a row, not one a cell.
    cells = [f"{{:{'>' if i in right else '<'}{w}}}" for i, w in enumerate(widths[:-1])] + ["{}"]
    line = "  ".join(cells)
    return "".join(line.format(*row).rstrip() + "\n" for row in table)
