"""Physical memory as a picture (``pagewalk ram -o FILE.png|svg|html``): every frame of
RAM in PFN order, row after row, coloured by its use (:mod:`pagewalk.core.frames`).

A pixel stands for one frame or a few (as many as the grid needs to hold them all:
:func:`frames_per_pixel`) and takes the colour of the use most of its frames have.
The RAM ranges and NUMA nodes are marked where they start.  PNG and SVG are drawn
with matplotlib (extra ``pagewalk[pictures]``); HTML is one self-contained page that
zooms down to single frames and shows each frame's use, flags, map count and cgroup.
Files are created mode 0600: they show physical addresses.
"""

from __future__ import annotations

import datetime
import os

import numpy as np

from ..core import flags
from ..core.frames import USES
from ..kernel.outfile import write_private
from ..kernel.pagemap import PAGE_SIZE
from ..names import printable
from ..runs import merge_equal
from .humanize import human_bytes
from .picture_html import b64, embed

__all__ = ["COLORS", "frames_per_pixel", "raster", "marks", "draw", "document", "write_html"]

# A colour per use of USES (Okabe-Ito where it counts: anonymous, page cache, shared
# memory, free and kernel told apart also with the common colour-vision deficiencies)
COLORS = {"hwpoison": "#000000", "offline": "#555555", "free": "#f2f2f2", "hugetlb": "#cc79a7", "slab": "#d55e00",
          "page tables": "#e69f00", "zero page": "#f0e442", "KSM": "#56b4e9", "anonymous": "#0072b2",
          "swap cache": "#7fb8d9", "shared memory": "#9467bd", "page cache": "#009e73", "kernel reserved": "#8c564b",
          "no flags": "#c8c8c8", "kernel other": "#a0522d"}
PALETTE = np.array([[int(COLORS[u][i : i + 2], 16) for i in (1, 3, 5)] for u in USES], dtype=np.uint8)
WIDTH_PX, MAX_ROWS_PX = 1024, 1024  # the grid of PNG and SVG
HTML_WIDTH_PX, HTML_MAX_ROWS_PX = 1024, 768  # the overview of the HTML page


def frames_per_pixel(frames: int, width: int, max_rows: int) -> int:
    """The fewest frames a pixel that lets ``frames`` fit ``width`` x ``max_rows`` pixels."""
    return max(1, -(-frames // (width * max_rows)))


def raster(kept, frames: int, width: int, max_rows: int) -> tuple[np.ndarray, int]:
    """``(use index per pixel (rows x width, uint8; 255 past the last frame), frames a
    pixel)`` of the ``frames`` walked, kept as runs (:class:`~pagewalk.analysis.ram.KeptFrames`):
    each pixel the use most of its frames have, counted from the runs (no array of a
    value a frame: a terabyte is 268 million frames)."""
    per = frames_per_pixel(frames, width, max_rows)
    pixels = -(-frames // per)
    bounds = np.minimum(np.arange(pixels + 1, dtype=np.int64) * per, frames)
    first, lengths = kept.first, kept.lengths(frames)
    run = np.searchsorted(first, bounds, side="right") - 1  # the run each pixel bound falls in
    best = np.zeros(pixels, dtype=np.int64)
    dominant = np.full(pixels, 255, dtype=np.uint8)
    for k in range(len(USES)):
        mine = kept.uses == k
        if not mine.any():
            continue
        before = np.concatenate(([0], np.cumsum(np.where(mine, lengths, 0))))  # frames of use k before each run
        upto = before[run] + np.where(mine[run], bounds - first[run], 0)  # frames of use k before each bound
        count = np.diff(upto)
        better = count > best
        best[better], dominant[better] = count[better], k
    rows = -(-pixels // width)
    grid = np.full(rows * width, 255, dtype=np.uint8)
    grid[:pixels] = dominant
    return grid.reshape(rows, width), per


def _rgb(grid: np.ndarray) -> np.ndarray:
    rgb = np.full(grid.shape + (3,), 255, dtype=np.uint8)
    known = grid != 255
    rgb[known] = PALETTE[grid[known]]
    return rgb


def marks(report) -> list[tuple[int, str]]:
    """``(frame position, label)`` where each RAM range, and each NUMA node, starts."""
    from ..analysis.picture import ram_ranges

    nodes = {}
    for r in ram_ranges():
        nodes.setdefault(r.start_pfn, r.node)
    out, at, last_node = [], 0, None
    for r in report.ranges:
        node = nodes.get(r.start_pfn, last_node)
        label = f"{r.start_pfn * PAGE_SIZE:#x}" + ("" if node is None or node == last_node else f" node {node}")
        out.append((at, label))
        at += r.end_pfn - r.start_pfn
        last_node = node
    return out


def draw(report, path: str, file_format: str, force: bool = False) -> None:
    """Write the picture of the walk ``report`` (with its ``kept`` frames) to ``path``
    as ``png`` or ``svg``."""
    from .picture import pyplot

    plt = pyplot()
    from matplotlib.patches import Patch

    grid, per = raster(report.kept, report.frames, WIDTH_PX, MAX_ROWS_PX)
    rows = grid.shape[0]
    dpi = 100
    fig = plt.figure(figsize=(14, 4 + 10 * rows / MAX_ROWS_PX), dpi=dpi)
    ax = fig.add_axes((0.2, 0.2, 0.72, 0.72))
    ax.imshow(_rgb(grid), aspect="auto", interpolation="nearest", extent=(0, WIDTH_PX, rows, 0))
    ticks, labels = [], []
    for at, label in marks(report):
        y = at / per / WIDTH_PX
        ax.axhline(y, color="#000000", linewidth=0.6)
        if not ticks or y - ticks[-1] >= rows / 60:  # ranges too small to label stay unlabelled
            ticks.append(y)
            labels.append(label)
    ax.set_yticks(ticks, labels, fontsize=7, fontfamily="monospace")
    ax.set_xticks([])
    ax.set_title(f"physical memory: {human_bytes(report.frames * PAGE_SIZE)} in {report.frames} frames, "
                 f"{per} frame{'s' if per > 1 else ''} a pixel, row after row in address order", fontsize=10)
    handles = [Patch(facecolor=COLORS[u], edgecolor="#999999", label=f"{u} {human_bytes(n * PAGE_SIZE)}")
               for u, n in report.uses.items() if n]
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=9, frameon=False,
               title="uses (a pixel has the colour most of its frames have)", title_fontsize=8)
    write_private(path, lambda f: fig.savefig(f, format=file_format, dpi=dpi), force)
    plt.close(fig)


def document(report) -> str:
    """The HTML page of the walk ``report`` (kept with flags and map counts), as text."""
    kept = report.kept
    grid, per = raster(kept, report.frames, HTML_WIDTH_PX, HTML_MAX_ROWS_PX)
    lengths = kept.lengths(report.frames)
    cgroups = kept.cgroups if kept.cgroups is not None else np.zeros(len(lengths), dtype=np.uint64)
    codes, cgroup_index = np.unique(cgroups, return_inverse=True)  # (over runs, not frames)
    names = {c.inode: c.path for c in report.cgroups or []}
    flag_values, flag_index = np.unique(kept.flags, return_inverse=True)
    counts = np.minimum(kept.mapcounts, np.uint64(0xFFFFFFFF)).astype(np.uint32)
    heads, (use, fidx, count, cidx), _ = merge_equal([kept.uses, flag_index.astype(np.uint32), counts,
                                                      cgroup_index.astype(np.uint32)], lengths)
    first = kept.first[heads]
    data = {
        "kernel": os.uname().release, "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "page_size": PAGE_SIZE, "frames": int(report.frames), "uses": list(USES),
        "colors": [COLORS[u] for u in USES], "totals": report.uses,
        "ranges": [[r.start_pfn, r.end_pfn] for r in report.ranges],
        "marks": [[at, label] for at, label in marks(report)],
        "grid": {"width": HTML_WIDTH_PX, "rows": int(grid.shape[0]), "per": per, "use": b64(grid.reshape(-1), np.uint8)},
        "runs": {"first": b64(first, np.float64), "use": b64(use, np.uint8), "flags": b64(fidx, np.uint32),
                 "count": b64(count, np.uint32), "cgroup": b64(cidx, np.uint32)},
        "flag_values": [[int(v) & 0xFFFFFFFF, int(v) >> 32] for v in flag_values.tolist()],
        "kflag_bits": [[f.bit, f.name] for f in flags.FLAGS],
        "cgroups": [None if int(c) == 0 else printable(names.get(int(c)) or f"? (inode {int(c)})")
                    for c in codes.tolist()],
    }
    return embed("ram_picture.html", data)


def write_html(report, path: str, force: bool = False) -> None:
    """Write the HTML page of ``report`` to ``path`` (mode 0600)."""
    text = document(report).encode("utf-8")
    write_private(path, lambda f: f.write(text), force)
