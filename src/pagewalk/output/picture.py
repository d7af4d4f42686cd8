"""PNG and SVG residency maps, drawn with matplotlib (extra ``pagewalk[pictures]``).

Left, the virtual address space: one band a mapping (or a run of small mappings),
labelled with its addresses, permissions, name and size, the unmapped gaps between
bands shown as thin separators with their size.  Right, physical memory: the RAM
ranges end to end, NUMA nodes marked, the process's frames coloured.  The rasters
are computed with numpy (:mod:`pagewalk.analysis.picture`); matplotlib lays out the text,
axes and legend and writes the file.
"""

from __future__ import annotations

import numpy as np

from ..analysis.picture import COLORS, LABELS, STATES, AddressSpace, Band, physical_raster, ram_ranges
from ..core.states import PRESENT_CLASSES
from ..extras import require
from ..kernel.outfile import write_private
from ..kernel.pagemap import PAGE_SIZE
from ..names import printable
from .humanize import human_bytes

__all__ = ["pyplot", "band_label", "draw"]

WIDTH_IN, HEIGHT_IN, DPI = 16, 10, 100  # 1600 x 1000 pixels
BAND_PX = 1100  # raster width of the virtual panel
PHYS_PX = 240  # raster width of the physical panel
GAP_PX = 5  # height of the separator marking an unmapped gap
MIN_BAND_PX = 12  # a band stays tall enough for its label


def pyplot():
    """matplotlib's pyplot, set up for files (the Agg backend, SVG text kept as text).
    Raises :class:`pagewalk.errors.MissingExtra` without matplotlib (extra ``pictures``)."""
    matplotlib = require("matplotlib", "pictures", "matplotlib")
    matplotlib.use("Agg")  # files only: no display needed
    matplotlib.rcParams["svg.fonttype"] = "none"  # SVG text stays text: searchable, and smaller
    return require("matplotlib.pyplot", "pictures", "matplotlib")


def band_label(space: AddressSpace, band: Band) -> str:
    """The label of ``band``: its mappings' addresses, permissions and names, and its size."""
    first, last = space.mappings[band.lo], space.mappings[band.hi - 1]
    size = human_bytes(band.pages * PAGE_SIZE)
    if band.hi - band.lo == 1:
        return f"{first.start:x}-{first.end:x} {first.perms} {_text(_short(first.label()))} {size}"
    names = sorted({_text(_short(m.label(), 16)) for m in space.mappings[band.lo : band.hi]})
    shown = ",".join(names[:2]) + (",..." if len(names) > 2 else "")
    return f"{first.start:x}-{last.end:x} {band.hi - band.lo} maps {shown} {size}"


def _short(text: str, limit: int = 24) -> str:
    """A mapping's name short enough for a label: a file's base name, then cut."""
    if text.startswith("/"):
        text = text.rsplit("/", 1)[-1]
    return text if len(text) <= limit else text[: limit - 1] + "~"


def _text(name: str) -> str:
    """A name as matplotlib shows it, literally: escaped, and ``$`` escaped so that
    it does not start mathtext (and SVG gets no control characters XML forbids)."""
    return printable(name).replace("$", r"\$")


def _heights(bands: list[Band], available: int) -> list[int]:
    """Band heights in pixels: at least MIN_BAND_PX, the rest shared by the square
    root of their sizes, so a 64 GiB reservation and a one-page mapping both show."""
    weight = np.sqrt(np.array([b.pages for b in bands], dtype=np.float64))
    spare = max(available - MIN_BAND_PX * len(bands), 0)
    return [MIN_BAND_PX + int(spare * w / weight.sum()) for w in weight]


def draw(space: AddressSpace, path: str, file_format: str, force: bool = False) -> None:
    """Write the picture of ``space`` to ``path`` as ``png`` or ``svg`` (mode 0600, as
    :func:`~pagewalk.kernel.outfile.write_private` writes; ``force`` as there).  Raises what
    :class:`pagewalk.errors.MissingExtra` without matplotlib (extra ``pictures``)."""
    plt = pyplot()
    from matplotlib.patches import Patch  # (after pyplot(): a missing extra is said as one)

    bands = space.bands()
    gaps = len(bands) - 1
    height = max(DPI * HEIGHT_IN - 160, MIN_BAND_PX * len(bands) + GAP_PX * gaps)
    heights = _heights(bands, height - GAP_PX * gaps)
    rows, ticks, labels, gap_marks = [], [], [], []
    y = 0
    for i, (band, h) in enumerate(zip(bands, heights)):
        rows.append(space.raster(band.first, band.pages, BAND_PX, h))
        ticks.append(y + h / 2)
        labels.append(band_label(space, band))
        y += h
        if i < gaps:
            sep = np.full((GAP_PX, BAND_PX, 3), 255, dtype=np.uint8)
            sep[GAP_PX // 2, ::6] = 90  # a dotted line: the addresses between are not mapped
            rows.append(sep)
            gap = space.gap_bytes(band, bands[i + 1])
            if gap > 0:
                gap_marks.append((y + GAP_PX / 2, human_bytes(gap)))
            y += GAP_PX
    virtual = np.concatenate(rows) if rows else np.zeros((1, BAND_PX, 3), dtype=np.uint8)

    fig = plt.figure(figsize=(WIDTH_IN, HEIGHT_IN * max(1.0, virtual.shape[0] / (DPI * HEIGHT_IN - 160))), dpi=DPI)
    grid = fig.add_gridspec(1, 2, width_ratios=[5, 1], left=0.33, right=0.93, top=0.92, bottom=0.1, wspace=0.45)
    ax = fig.add_subplot(grid[0])
    ax.imshow(virtual, aspect="auto", interpolation="nearest", extent=(0, BAND_PX, virtual.shape[0], 0))
    ax.set_yticks(ticks, labels, fontsize=7, fontfamily="monospace")
    ax.set_xticks([])
    for y_mid, text in gap_marks:
        ax.text(BAND_PX + 8, y_mid, f"gap {text}", fontsize=6, va="center", color="#555555")
    ax.set_title("virtual address space (mappings in address order, gaps collapsed)", fontsize=9)

    phys = fig.add_subplot(grid[1])
    ram = ram_ranges() if space.pfn_visible else []
    if ram:
        total = sum(r.end_pfn - r.start_pfn for r in ram)
        rows_px = virtual.shape[0]
        image = physical_raster(space, ram, PHYS_PX, rows_px)
        phys.imshow(image, aspect="auto", interpolation="nearest", extent=(0, PHYS_PX, rows_px, 0))
        at, marks, names = 0, [], []
        for r in ram:
            y0 = at * rows_px / total
            if not marks or y0 - marks[-1] >= 12:  # ranges too small to label stay unlabelled
                marks.append(y0)
                names.append(f"{r.start_pfn * PAGE_SIZE:#x}" + ("" if r.node is None else f" node {r.node}"))
            phys.axhline(y0, color="#000000", linewidth=0.6)
            at += r.end_pfn - r.start_pfn
        phys.set_yticks(marks, names, fontsize=7, fontfamily="monospace")
        phys.set_title(f"physical memory ({human_bytes(total * PAGE_SIZE)} RAM)\nframes of this process coloured",
                       fontsize=9)
    else:
        phys.text(0.5, 0.5, "physical frames hidden:\nrun as root to see them" if not space.pfn_visible
                  else "no RAM ranges in /proc/iomem", ha="center", va="center", fontsize=9, transform=phys.transAxes)
        phys.set_yticks([])
    phys.set_xticks([])

    totals = space.totals()
    fig.suptitle(f"PID {space.pid} ({_text(space.command)}): {len(space.mappings)} mappings, "
                 f"{human_bytes(space.total_pages * PAGE_SIZE)} mapped, "
                 f"{human_bytes(sum(totals[s] for s in PRESENT_CLASSES) * PAGE_SIZE)} present, "
                 f"{human_bytes((totals['swapped'] + totals['shmem_swapped']) * PAGE_SIZE)} swapped", fontsize=12)
    handles = [Patch(facecolor=c, edgecolor="#999999", label=f"{label} {human_bytes(totals[s] * PAGE_SIZE)}")
               for s, label, c in zip(STATES, LABELS, COLORS)]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=9, frameon=False,
               title="page states (a pixel standing for many pages has the colour of their mix)", title_fontsize=8)
    # 0600: the physical panel shows where the frames are
    write_private(path, lambda f: fig.savefig(f, format=file_format, dpi=DPI), force)
    plt.close(fig)
