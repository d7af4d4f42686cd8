"""The benchmark's results: rows, their ratios and targets, the table in the terminal
and in bench/RESULTS.md, and why a missed target was missed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cases import Bench

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"


@dataclass
class Row:
    workload: str
    measurement: str
    pagewalk_s: float | None
    anchor_s: float | None = None
    target: str = "-"
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.pagewalk_s is None or not self.anchor_s:
            return None
        return self.pagewalk_s / self.anchor_s


def ratio_row(workload: str, measurement: str, pagewalk_s: float, anchor_s: float,
              limit: float | None = None, strict: bool = False, target: str | None = None) -> Row:
    """A row whose target is on the ratio: ratio < limit (strict) or ratio <= limit."""
    row = Row(workload, measurement, pagewalk_s, anchor_s)
    if limit is not None:
        ratio = row.ratio
        assert ratio is not None
        row.met = ratio < limit if strict else ratio <= limit
        row.target = target or f"{'<' if strict else '<='} {limit:g}"
    return row


def fmt_num(x: float | None) -> str:
    """Three significant digits, no exponent for the values seen here; '-' for none."""
    if x is None:
        return "-"
    return f"{x:.3g}" if x >= 1e-4 else f"{x:.6f}"


COLUMNS = ("workload", "measurement", "pagewalk median (s)", "anchor median (s)", "ratio", "target", "met")


def row_cells(row: Row) -> list[str]:
    met = "-" if row.met is None else ("yes" if row.met else "no")
    return [row.workload, row.measurement, fmt_num(row.pagewalk_s), fmt_num(row.anchor_s),
            fmt_num(row.ratio), row.target, met]


def text_table(rows: list[Row]) -> str:
    cells = [list(COLUMNS)] + [row_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    numeric = {2, 3, 4}
    lines = []
    for n, c in enumerate(cells):
        parts = [v.rjust(w) if i in numeric and n else v.ljust(w) for i, (v, w) in enumerate(zip(c, widths))]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


# Why a target can be missed, and what would close it: printed under the table for
# every measurement that missed its target in the run.
WHY_MISSED = {
    "counts() in-process vs scan_ioctl": (
        "scan_ioctl counts present pages from the ioctl's list of runs, a few calls for a dense "
        "process. `maps` also needs `exclusive` per mapping, and PAGEMAP_SCAN has no category for it, "
        "so pagewalk reads the pagemap entry of every present page (raw_read's in-process time, in the "
        "row below, is that floor; the counting itself is C, 0.2 ms for 54,000 entries); with 10,000 "
        "mappings, parsing maps and building 10,000 rows in Python adds about 4 us a mapping. Closing it "
        "needs an exclusive category in the kernel, or `counts()` without `exclusive` (scan only), or "
        "maps parsed in C."),
    "maps vs raw_read + import numpy": (
        "only with 10,000 mappings: maps imports no numpy, but its per-mapping Python work (parsing "
        "10,000 lines at about 1.4 us each, a row each, printing 10,000 rows) costs more than raw_read's "
        "whole run. Closing it needs maps parsed and the table rendered in C."),
    "snapshot vs 2 x maps + import numpy": (
        "the yardstick moved, the snapshot did not: until issue 15 `maps` imported numpy, so the anchor "
        "(twice maps plus writing the file) held two numpy imports, and a snapshot took 0.9 of it; `maps` "
        "now imports none and this anchor holds one. A snapshot writes numpy's npz and needs it; besides "
        "the pagemap entries that maps reads (read while numpy imports), it reads the kpageflags of every "
        "present frame (70 to 200 ns each in the kernel; a million frames here, spread over a thread per "
        "CPU; map counts only where pagemap's exclusive bit does not settle them), and compresses the "
        "columns. Closing it: recording frame flags only on request, or reading them in C in PFN order as "
        "types -p does."),
    "usage --all vs smem": (
        "smem reads /proc/PID/smaps, where the kernel sums each mapping's pages itself; usage follows "
        "procrank's method, as the issue asks: it reads the 8-byte pagemap entry of every resident page (over "
        "3 million for this family) and the map count of every shared frame, and starts numpy. The two floor "
        "rows show that the target is below what the kernel itself needs on this machine: merely reading "
        "every pagemap entry from a thread per CPU while numpy imports, and even reading the kernel's own "
        "sums from smaps_rollup for every process, each take more than half of smem's time. What would close "
        "it: more CPUs (the reads spread over threads), or a kernel interface that returns PFNs or map counts "
        "without a per-page walk."),
    # issue 15 (everyday speed): what is left is Python's start and its imports
    "types -p (200 MB process) vs page-types -p": (
        "page-types is a C program that starts in 1 ms; pagewalk starts Python (8 ms) and imports its "
        "modules (the floor row: Python importing what maps imports takes about 1.9 times Python's "
        "start) before it reads a page. The reads themselves take about 6 ms: 54,000 frames' flags read "
        "in PFN order from C (4 ms; page-types reads them one pread a page in about 10 ms) and the "
        "pagemap entries. Closing it: fewer modules on the path (merging modules across the layers), "
        "or a start-up the interpreter does not give (a frozen executable, a resident server)."),
    "types -p (sleep, 2 MB) vs python -c pass": "Python importing pagewalk's modules: the reads are microseconds.",
    "usage PID (200 MB process)": "Python's start and imports; the kernel's sums (smaps_rollup) are one read.",
    "usage --all (this machine's processes)": (
        "smaps_rollup of each process, or the page walk where some process has swap; see the family's rows."),
    "maps PID (200 MB process)": (
        "the floor row (Python importing maps' modules, no work) is about 1.9 times Python's start; the "
        "reads and the C counting add about 2 ms, and pip's generated `pagewalk` script imports `re` "
        "(about 2 ms) before pagewalk runs (`python -m pagewalk` does not). Closing it: fewer modules "
        "on the path, or a start-up the interpreter does not give."),
    "maps vs raw_read + python -c pass": (
        "the per-mapping Python work (parsing 10,000 maps lines, a row each, printing 10,000 rows) on "
        "top of the reads; the counting is C. Closing it: maps parsed and the table rendered in C."),
    "file (libc, 2 MB) vs python -c pass": (
        "as for maps PID: Python importing pagewalk's modules; mincore, the loads and the frames' flags "
        "take about a millisecond."),
    "v2p (1 address) vs python -c pass": (
        "Python importing the modules of one translation (about 8 ms over its start); the reads are "
        "microseconds. Closing it: fewer modules on the path."),
}


def why_missed(rows: list[Row]) -> list[str]:
    missed = {key for row in rows if row.met is False for key in WHY_MISSED if row.measurement.startswith(key)}
    return [f"- {key}: {WHY_MISSED[key]}" for key in WHY_MISSED if key in missed]


def write_results(header: list[tuple[str, str]], bench: Bench, command: str) -> None:
    lines = ["# pagewalk benchmark results", "",
             f"Written by `{command}`. ratio = pagewalk median / anchor median (below 1: pagewalk faster);",
             "see bench/README.md for what each row means. Compare ratios, not absolute times.", ""]
    lines += [f"- {k}: {v}" for k, v in header]
    lines += [f"- runs per measurement: {bench.runs} ({bench.slow_runs} for the seed pair on the reservation)",
              "", markdown_table(bench.rows), ""]
    if why_missed(bench.rows):
        lines += ["Targets missed, why, and what would close them:", "", *why_missed(bench.rows), ""]
    if bench.notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in bench.notes] + [""]
    RESULTS_MD.write_text("\n".join(lines))


def print_results(header: list[tuple[str, str]], bench: Bench) -> None:
    """The header, the table, the missed targets and the notes, on stdout."""
    for k, v in header:
        print(f"{k}: {v}")
    print(f"runs per measurement: {bench.runs} ({bench.slow_runs} for the seed pair on the reservation)")
    print()
    print(text_table(bench.rows))
    for line in why_missed(bench.rows):
        print("missed " + line[2:])
    if bench.notes:
        print()
        for n in bench.notes:
            print(f"note: {n}")
