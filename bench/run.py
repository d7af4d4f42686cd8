#!/usr/bin/env python3
"""pagewalk benchmark: pagewalk's time beside reference C programs, as ratios.

Run from the repository root with the interpreter pagewalk is installed in::

    .venv/bin/python bench/run.py                 # all workloads, 5 runs each
    .venv/bin/python bench/run.py --quick         # 4 GiB and reservation only, fewer runs
    .venv/bin/python bench/run.py --workloads 1g,res --runs 3
    .venv/bin/python bench/run.py --write-results # also write bench/RESULTS.md

What it does
------------
The reference ("anchor") programs in ../shared/anchors/ are compiled with
``gcc -O2`` into a temporary directory.  For each workload, ``workload`` is
started as the target process (it touches its memory, prints ``ready`` and
sleeps) and these are measured against it:

1. ``pagewalk dump PID --format seed`` vs ``seed_dump PID`` (the seed program:
   one pread and one printf per page).  Both outputs are also read once and
   their line counts (and contents) compared.
2. ``pagewalk maps PID`` vs ``raw_read PID`` (big pread()s, counting only), and
   vs ``raw_read`` + ``python -c "import numpy"``: the floor a numpy-based
   Python command can reach.
3. ``pagewalk dump PID`` (text format), reservation workload only: absolute time.
4. ``pagewalk v2p PID ADDR`` (one address) vs ``python -c pass``: how much more
   than starting Python one translation costs.  Once, on the first workload.
5. ``pagewalk.Process(pid).counts()`` timed inside this Python process vs the
   ``inproc_us`` that ``scan_ioctl`` (PAGEMAP_SCAN; best of per-mapping and
   ``-w``) and ``raw_read`` print: the library's speed without process start-up.

Every time is the median over ``--runs`` runs; within a run the programs
alternate (A B A B ...) so that drift on a noisy machine hits both sides.
Commands 1-4 are whole-process wall times (``time.perf_counter`` around
``subprocess.run``, stdout to /dev/null).

How to read the ratios
----------------------
ratio = pagewalk median / anchor median.  Below 1 pagewalk is faster than the
anchor; 0.1 means ten times faster; 2 means twice as slow.  Only compare
ratios measured in the same run: absolute times on these shared VMs drift, the
ratio much less.  "target" is the goal from the issue tracker and "met" says
whether this run reached it ("-" where there is no target).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# ../shared beside the project, as on every developer machine and CI run
ANCHOR_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "anchors"
ANCHORS = ("seed_dump", "raw_read", "scan_ioctl", "workload")
RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"

# short name -> (label, workload arguments)
WORKLOADS: dict[str, tuple[str, list[str]]] = {
    "1g": ("1 GiB touched", ["1024"]),
    "4g": ("4 GiB touched", ["4096"]),
    "thp": ("1 GiB THP", ["-T", "1024"]),
    "res": ("256 MiB + 64 GiB reservation", ["-s", "256"]),
    "k10000": ("256 MiB + 10,000 mappings", ["-k", "10000", "256"]),
}
# Workloads measured by their own method rather than the anchor workload program.
SPECIAL_WORKLOADS = {
    "machine": "whole machine (every physical frame)",
    "fork200": "200 forked processes sharing 64 MiB",
    "shmem": "1 GiB shared anonymous, half in swap",
}
QUICK_WORKLOADS = ["4g", "res"]
# MiB of available memory a workload needs (with some room for pagewalk itself)
NEEDS_MIB = {"4g": 4096 + 1024}


class BenchError(Exception):
    """A command failed or printed something unexpected."""


# -- results ------------------------------------------------------------------------


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


# -- the machine --------------------------------------------------------------------


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return "unknown"


def mem_available_mib() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return 0


def git_revision() -> str:
    """The commit pagewalk is at, '+dirty' when src/ has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def machine_header(pagewalk: str) -> list[tuple[str, str]]:
    return [
        ("date", datetime.datetime.now().astimezone().isoformat(timespec="seconds")),
        ("kernel (uname -r)", os.uname().release),
        ("CPU", cpu_model()),
        ("nproc", str(len(os.sched_getaffinity(0)))),
        ("python", f"{sys.executable} ({sys.version.split()[0]})"),
        ("pagewalk", f"{pagewalk} (git {git_revision()})"),
    ]


# -- programs -----------------------------------------------------------------------


def find_pagewalk() -> str:
    """The ``pagewalk`` next to this interpreter (its venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "pagewalk"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("pagewalk")
    if found is None:
        raise BenchError(f"no pagewalk executable next to {sys.executable} or on PATH")
    return found


def same_python(a: Path, b: Path) -> bool:
    """Same interpreter in the same environment (venv bin/python and bin/python3 are)."""
    try:
        return a.parent.resolve() == b.parent.resolve() and os.path.samefile(a, b)
    except OSError:
        return False


def compile_pagewalk() -> None:
    """Write pagewalk's bytecode first, as a regular install does: an editable install
    under PYTHONDONTWRITEBYTECODE=1 (set on these machines) would otherwise compile
    every module at every start and the start-up rows would measure the compiler."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    code = "import compileall, os, pagewalk; compileall.compile_dir(os.path.dirname(pagewalk.__file__), quiet=1)"
    subprocess.run([sys.executable, "-c", code], env=env, check=False)


def build_anchors(tmpdir: Path) -> dict[str, str]:
    """Compile the anchor programs into ``tmpdir``; name -> executable path."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise BenchError("gcc not found: it is needed to build the anchor programs")
    built = {}
    for name in ANCHORS:
        exe = tmpdir / name
        r = subprocess.run([gcc, "-O2", "-o", str(exe), str(ANCHOR_DIR / f"{name}.c")],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"building {name}.c failed:\n{r.stderr}")
        built[name] = str(exe)
    return built


def _die_with_parent() -> None:
    """In the workload child: get SIGKILL if this benchmark dies without cleaning up."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@contextmanager
def running(argv: list[str], what: str, *, group: bool = False) -> Iterator[list[int]]:
    """Start ``argv``, read the ``PID n`` lines it prints until ``ready``, yield those
    PIDs, and always kill it on the way out (normal exit, error or Ctrl-C): by PID, or
    with ``group`` its whole process group (a forked family)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=group,
                            preexec_fn=None if group else _die_with_parent)
    try:
        pids = []
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("PID "):
                pids.append(int(line.split()[1]))
            elif line.startswith("ready"):
                break
        else:
            raise BenchError(f"{what} exited with status {proc.wait()} before it was ready")
        yield pids
    finally:
        try:
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@contextmanager
def running_workload(workload_exe: str, args: list[str]) -> Iterator[int]:
    """The anchor workload with ``args``, ready; its PID."""
    what = f"workload {' '.join(args)}"
    with running([workload_exe, *args], what) as pids:
        if len(pids) != 1:
            raise BenchError(f"{what} printed PIDs {pids}, expected its own")
        yield pids[0]


FAMILY = """
import mmap, os, signal, sys
n, mib = int(sys.argv[1]), int(sys.argv[2])
buf = mmap.mmap(-1, mib << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(0, mib << 20, 4096):
    buf[i] = 1
for k in range(n - 1):
    if os.fork() == 0:
        for i in range(16):  # 16 pages of its own: copy-on-write breaks
            buf[((k * 16 + i) * 4096) % (mib << 20)] = 2
        os.write(1, b"PID %d\\n" % os.getpid())  # one write: the children's lines must not interleave
        signal.pause()
        os._exit(0)
os.write(1, b"PID %d\\nready\\n" % os.getpid())
signal.pause()
"""


# Two floors for `usage --all`, each doing less than usage does and nothing else.
# ROLLUP_FLOOR: the kernel's own PSS sums, /proc/PID/smaps_rollup of every process.
ROLLUP_FLOOR = """
import os
for pid in os.listdir("/proc"):
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            f.read()
    except OSError:
        pass
"""
# PAGEMAP_FLOOR: every mapped pagemap entry of every process (procrank's reads, kpagecount
# left out), from a thread per CPU, while the main thread imports numpy.
PAGEMAP_FLOOR = """
import os, threading
pids = [pid for pid in os.listdir("/proc") if pid.isdigit()]
def read(mine):
    for pid in mine:
        try:
            with open(f"/proc/{pid}/maps", "rb") as f:
                lines = f.read().splitlines()
            fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
        except OSError:
            continue
        for line in lines:
            start, end = (int(x, 16) for x in line.split(b" ", 1)[0].split(b"-"))
            if start < 1 << 47:
                try:
                    os.preadv(fd, [bytearray((end - start) >> 9)], (start >> 12) * 8)
                except OSError:
                    break
        os.close(fd)
n = len(os.sched_getaffinity(0))
threads = [threading.Thread(target=read, args=(pids[i::n],)) for i in range(n)]
for t in threads:
    t.start()
import numpy
for t in threads:
    t.join()
"""


# 1 GiB of shared anonymous memory, every page written, half of it paged out to swap:
# the first half ("half") or every other page ("alternate", the worst case for finding
# the runs). Paging out needs a swap device, made by the benchmark.
SHMEM_WORKLOAD = """
import mmap, os, signal, sys
layout, size, page = sys.argv[1], 1 << 30, mmap.PAGESIZE
buf = mmap.mmap(-1, size, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
for i in range(0, size, page):
    buf[i] = 1
if layout == "half":
    buf.madvise(21, 0, size // 2)  # MADV_PAGEOUT
else:
    for off in range(0, size, 2 * page):
        buf.madvise(21, off, page)
os.write(1, b"PID %d\\nready\\n" % os.getpid())
signal.pause()
"""


@contextmanager
def swap_file(mib: int) -> Iterator[str | None]:
    """A swap file of ``mib`` MiB, enabled (None if that fails); always disabled and
    removed afterwards."""
    directory = tempfile.mkdtemp(prefix="pagewalk-bench-swap-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None)
    path = os.path.join(directory, "swapfile")
    enabled = False
    try:
        made = subprocess.run(["fallocate", "-l", f"{mib}M", path], capture_output=True)
        if made.returncode:
            made = subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}", "status=none"],
                                  capture_output=True)
        if made.returncode == 0:
            os.chmod(path, 0o600)
            enabled = (subprocess.run(["mkswap", path], capture_output=True).returncode == 0
                       and subprocess.run(["swapon", path], capture_output=True).returncode == 0)
        yield path if enabled else None
    finally:
        if enabled:
            subprocess.run(["swapoff", path], capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


def smaps_rollup_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/smaps_rollup has no {field}")


def running_family(processes: int, mib: int):
    """A parent and ``processes - 1`` forked children sharing ``mib`` MiB of private
    memory (each child with 16 pages of its own); all killed, as a process group."""
    return running([sys.executable, "-c", FAMILY, str(processes), str(mib)], "the family", group=True)


def run_timed(argv: list[str]) -> float:
    """Whole-process wall time of one run, stdout to /dev/null."""
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited with status {r.returncode}: "
                         f"{r.stderr.decode(errors='replace').strip()}")
    return elapsed


def alternate(measures: list[Callable[[], float]], runs: int) -> list[float]:
    """Call the measures in turn (A B C A B C ...) ``runs`` times; their medians."""
    samples: list[list[float]] = [[] for _ in measures]
    for _ in range(runs):
        for i, measure in enumerate(measures):
            samples[i].append(measure())
    return [statistics.median(s) for s in samples]


def timed_commands(commands: list[list[str]], runs: int) -> list[float]:
    return alternate([lambda argv=argv: run_timed(argv) for argv in commands], runs)


def output_digest(argv: list[str]) -> tuple[int, str]:
    """Line count and SHA-256 of a command's stdout, streamed (it may be a GB)."""
    digest = hashlib.sha256()
    lines = 0
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        while chunk := proc.stdout.read(1 << 20):
            lines += chunk.count(b"\n")
            digest.update(chunk)
    finally:
        proc.stdout.close()
        err = proc.stderr.read()
        proc.stderr.close()
        status = proc.wait()
    if status != 0:
        raise BenchError(f"{' '.join(argv)} exited with status {status}: {err.decode(errors='replace').strip()}")
    return lines, digest.hexdigest()


def inproc_report(argv: list[str]) -> dict[str, str]:
    """Run an anchor that prints ``key=value ... inproc_us=N``; its fields."""
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited with status {r.returncode}: {r.stderr.strip()}")
    fields = dict(f.split("=", 1) for f in r.stdout.split() if "=" in f)
    if "inproc_us" not in fields:
        raise BenchError(f"{' '.join(argv)} printed no inproc_us: {r.stdout.strip()!r}")
    return fields


def largest_mapping_start(pid: int) -> int:
    best_start, best_size = 0, -1
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            lo, _, hi = line.split()[0].partition("-")
            start, end = int(lo, 16), int(hi, 16)
            if end - start > best_size:
                best_start, best_size = start, end - start
    return best_start


# -- the benchmark ------------------------------------------------------------------


class Bench:
    def __init__(self, pagewalk: str, anchors: dict[str, str], runs: int, slow_runs: int) -> None:
        self.pagewalk = pagewalk
        self.anchors = anchors
        self.runs = runs
        self.slow_runs = slow_runs  # for the seed pair on the reservation (seed_dump ~12 s a run)
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.v2p_done = False

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def note(self, msg: str) -> None:
        self.log(msg)
        self.notes.append(msg)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        cells = row_cells(row)
        self.log(f"  {row.measurement}: pagewalk {cells[2]} s, anchor {cells[3]} s, ratio {cells[4]}"
                 f" (target {cells[5]}, met {cells[6]})")

    def workload(self, short: str) -> None:
        if short == "machine":
            return self.machine(SPECIAL_WORKLOADS[short])
        if short == "fork200":
            return self.fork_family(SPECIAL_WORKLOADS[short], 200, 64)
        if short == "shmem":
            return self.shmem_swap(SPECIAL_WORKLOADS[short])
        label, args = WORKLOADS[short]
        need = NEEDS_MIB.get(short, 0)
        if need and mem_available_mib() < need:
            self.note(f"{label}: skipped, needs about {need} MiB available, have {mem_available_mib()} MiB")
            return
        self.log(f"{label}: starting workload {' '.join(args)}")
        with running_workload(self.anchors["workload"], args) as pid:
            self.check_seed(label, pid)
            self.seed_pair(label, short, pid)
            self.maps_pair(label, pid)
            if short == "res":
                self.dump_text(label, pid)
            self.in_process(label, pid)
            if short == "4g":
                self.types_process(label, pid)
                self.snapshot(label, pid)
            if not self.v2p_done:
                self.v2p(label, pid)
                self.v2p_done = True

    def check_seed(self, label: str, pid: int) -> None:
        """Seed-format output must match seed_dump's (line count; contents too).
        Also warms the page cache for the timed runs that follow."""
        self.log("  checking pagewalk --format seed against seed_dump")
        pw_lines, pw_hash = output_digest([self.pagewalk, "dump", str(pid), "--format", "seed"])
        c_lines, c_hash = output_digest([self.anchors["seed_dump"], str(pid)])
        if pw_lines != c_lines:
            self.note(f"WARNING {label}: pagewalk dump --format seed printed {pw_lines} lines, "
                      f"seed_dump {c_lines}")
        elif pw_hash != c_hash:
            self.note(f"WARNING {label}: pagewalk dump --format seed and seed_dump printed the same number "
                      f"of lines ({c_lines}) but different bytes")
        else:
            self.log(f"  seed output identical ({c_lines} lines)")

    def seed_pair(self, label: str, short: str, pid: int) -> None:
        runs = self.slow_runs if short == "res" else self.runs
        self.log(f"  dump --format seed vs seed_dump, {runs} runs")
        pw, seed = timed_commands([[self.pagewalk, "dump", str(pid), "--format", "seed"],
                                   [self.anchors["seed_dump"], str(pid)]], runs)
        name = "dump --format seed vs seed_dump"
        if short == "4g":
            self.add(ratio_row(label, name, pw, seed, 0.25))
        elif short == "res":
            self.add(ratio_row(label, name, pw, seed, 0.05))
        else:
            self.add(ratio_row(label, name, pw, seed))

    def maps_pair(self, label: str, pid: int) -> None:
        self.log(f"  maps vs raw_read vs python -c 'import numpy', {self.runs} runs")
        pw, raw, numpy = timed_commands([[self.pagewalk, "maps", str(pid)],
                                         [self.anchors["raw_read"], str(pid)],
                                         [sys.executable, "-c", "import numpy"]], self.runs)
        self.add(ratio_row(label, "maps vs raw_read", pw, raw))
        self.add(ratio_row(label, "maps vs raw_read + import numpy", pw, raw + numpy, 1))

    def dump_text(self, label: str, pid: int) -> None:
        self.log(f"  dump (text), {self.runs} runs")
        (pw,) = timed_commands([[self.pagewalk, "dump", str(pid)]], self.runs)
        self.add(Row(label, "dump (text format), absolute", pw, None, "< 1 s", pw < 1.0))

    def v2p(self, label: str, pid: int) -> None:
        addr = f"{largest_mapping_start(pid):x}"
        self.log(f"  v2p {addr} vs python -c pass, {self.runs} runs")
        pw, py = timed_commands([[self.pagewalk, "v2p", str(pid), addr],
                                 [sys.executable, "-c", "pass"]], self.runs)
        self.add(ratio_row(label, "v2p (1 address) vs python -c pass", pw, py, 2))

    def types_process(self, label: str, pid: int) -> None:
        """types -p against page-types where the machine has it, else against a floor:
        raw_read (every pagemap entry) plus Python with numpy started."""
        page_types = shutil.which("page-types")
        if page_types:
            self.log(f"  types -p vs page-types -p, {self.runs} runs")
            pw, pt = timed_commands([[self.pagewalk, "types", "-p", str(pid)], [page_types, "-p", str(pid)]],
                                    self.runs)
            self.add(ratio_row(label, "types -p vs page-types -p", pw, pt, 0.5))
            return
        self.log(f"  types -p vs raw_read + import numpy (page-types is not on PATH), {self.runs} runs")
        pw, raw, numpy = timed_commands([[self.pagewalk, "types", "-p", str(pid)], [self.anchors["raw_read"], str(pid)],
                                         [sys.executable, "-c", "import numpy"]], self.runs)
        self.add(ratio_row(label, "types -p vs raw_read + import numpy (floor; no page-types here)", pw,
                           raw + numpy))
        self.note("page-types is not on PATH here (not packaged by Debian), so types -p is compared with a floor "
                  "that does less work: reading every pagemap entry in C, plus starting Python with numpy; "
                  "types -p also reads the kpageflags of every present frame (about 70 ns each in the kernel)")

    def snapshot(self, label: str, pid: int) -> None:
        """snapshot against twice maps plus writing the file's bytes; and its size."""
        with tempfile.TemporaryDirectory(prefix="pagewalk-bench-snap-") as tmp:
            out, copy = os.path.join(tmp, "snap.npz"), os.path.join(tmp, "copy")
            self.log(f"  snapshot vs 2 x maps + writing the file, {self.runs} runs")
            snap, maps, write = timed_commands([
                [self.pagewalk, "snapshot", str(pid), "-o", out], [self.pagewalk, "maps", str(pid)],
                ["dd", f"if={out}", f"of={copy}", "bs=1M", "conv=fsync", "status=none"]], self.runs)
            self.add(ratio_row(label, "snapshot vs 2 x maps + writing its file", snap, 2 * maps + write, 1))
            doc = json.loads(subprocess.run([self.pagewalk, "snapshot", "--load", out, "--json"],
                                            capture_output=True, text=True, check=True).stdout)
            present = sum(m["present"] or 0 for m in doc["mappings"])  # [vsyscall]: null
            per_page = os.path.getsize(out) / max(present, 1)
            self.add(Row(label, "snapshot file bytes per present page (not seconds)", per_page, None, "<= 2",
                         per_page <= 2))

    def machine(self, label: str) -> None:
        """types over every frame against dd of /proc/kpageflags plus Python's start-up."""
        self.log(f"{label}: types vs dd bs=1M of /proc/kpageflags + python -c pass, {self.runs} runs")
        pw, dd, py = timed_commands([[self.pagewalk, "types"],
                                     ["dd", "if=/proc/kpageflags", "of=/dev/null", "bs=1M", "status=none"],
                                     [sys.executable, "-c", "pass"]], self.runs)
        self.add(ratio_row(label, "types (whole machine) vs dd bs=1M + python -c pass", pw, dd + py, 1))

    def fork_family(self, label: str, processes: int, mib: int) -> None:
        """usage --all against smem, with the family's PSS totals compared."""
        smem = shutil.which("smem")
        if not smem:
            self.note(f"{label}: skipped: smem is not installed (Debian package smem)")
            return
        self.log(f"{label}: starting the family")
        with running_family(processes, mib) as pids:
            self.log(f"  usage --all vs smem, {self.runs} runs")
            pw, sm, rollup, pagemap = timed_commands(
                [[self.pagewalk, "usage", "--all"], [smem], [sys.executable, "-c", ROLLUP_FLOOR],
                 [sys.executable, "-c", PAGEMAP_FLOOR]], self.runs)
            self.add(ratio_row(label, "usage --all vs smem", pw, sm, 0.5))
            self.add(ratio_row(label, "floor: smaps_rollup of every process vs smem", rollup, sm))
            self.add(ratio_row(label, "floor: every pagemap entry, a thread per CPU, vs smem", pagemap, sm))
            ours = json.loads(subprocess.run([self.pagewalk, "usage", "--json", *map(str, pids)],
                                             capture_output=True, text=True, check=True).stdout)["totals"]["pss"]
            listing = subprocess.run([smem, "-c", "pid pss", "-H"], capture_output=True, text=True, check=True)
            theirs = sum(int(pss) * 1024 for pid, pss in (line.split() for line in listing.stdout.splitlines())
                         if int(pid) in set(pids))
            # smem sums smaps' per-mapping Pss, each truncated to a kB (about 1% low for this family);
            # smaps_rollup sums the same pages in fixed point, truncating once a process.
            rollup = sum(smaps_rollup_kb(pid, "Pss") * 1024 for pid in pids)
            for name, total in (("smem", theirs), ("smaps_rollup", rollup)):
                ratio = ours / max(total, 1)
                self.add(Row(label, f"family PSS total in MiB, not seconds: usage vs {name}", ours / 2**20,
                             total / 2**20, "0.99 to 1.01", 0.99 <= ratio <= 1.01))

    def shmem_swap(self, label: str) -> None:
        """The cost of finding swapped shared memory (pagemap shows it as none): the
        cachestat lookup in-process, count only and with exact runs, for half of the
        memory paged out in one run and paged out every other page (the worst case);
        and `pagewalk maps PID` of the whole process."""
        need = 1024 + 512
        if mem_available_mib() < need:
            self.note(f"{label}: skipped, needs about {need} MiB available, have {mem_available_mib()} MiB")
            return
        try:
            from pagewalk.kernel import shmem
            from pagewalk.kernel.maps import read_maps
        except ImportError as exc:
            self.note(f"{label}: skipped: cannot import pagewalk here ({exc})")
            return
        with swap_file(640) as swap:
            if swap is None:
                self.note(f"{label}: skipped: cannot enable a swap file (mkswap/swapon failed; needs root)")
                return
            for layout, what in (("half", "first half"), ("alternate", "every other page")):
                self.log(f"{label}: paging out the {what}")
                with running([sys.executable, "-c", SHMEM_WORKLOAD, layout], f"the shmem workload ({layout})") as pids:
                    pid = pids[0]
                    maps = read_maps(pid)
                    (index,) = (i for i, m in enumerate(maps) if m.end - m.start == 1 << 30)
                    swapped_kb = smaps_rollup_kb(pid, "Swap")
                    self.log(f"  {swapped_kb // 1024} MiB in swap (smaps_rollup); lookup and maps, {self.runs} runs")

                    record = shmem.swapped_runs(pid, maps)[index]
                    found_kb = None if record is None else record.pages * os.sysconf("SC_PAGE_SIZE") // 1024
                    if found_kb != swapped_kb:
                        self.note(f"WARNING {label}, {layout}: the lookup found {found_kb} kB in swap, "
                                  f"smaps_rollup {swapped_kb} kB")

                    def lookup(exact: bool) -> Callable[[], float]:
                        def measure() -> float:
                            t0 = time.perf_counter()
                            shmem.swapped_runs(pid, maps, exact=exact)
                            return time.perf_counter() - t0
                        return measure

                    count, exact, maps_s = alternate([lookup(False), lookup(True),
                                                      lambda: run_timed([self.pagewalk, "maps", str(pid)])], self.runs)
                    self.add(Row(label, f"{what} in swap: lookup, count only (in-process)", count))
                    self.add(Row(label, f"{what} in swap: lookup, exact runs (in-process)", exact))
                    self.add(Row(label, f"{what} in swap: maps (whole process), absolute", maps_s, None, "< 1 s",
                                 maps_s < 1.0))

    def in_process(self, label: str, pid: int) -> None:
        try:
            import pagewalk
        except ImportError as exc:
            self.note(f"{label}: in-process counts() skipped: cannot import pagewalk here ({exc})")
            return
        self.log(f"  in-process counts() vs scan_ioctl / raw_read inproc_us, {self.runs} runs")
        reports: list = []

        def counts() -> float:
            t0 = time.perf_counter()
            report = pagewalk.Process(pid).counts()
            elapsed = time.perf_counter() - t0
            reports.append(report)
            return elapsed

        anchor_fields: dict[str, dict[str, str]] = {}

        def anchor(name: str, argv: list[str]) -> Callable[[], float]:
            def measure() -> float:
                fields = inproc_report(argv)
                anchor_fields[name] = fields
                return int(fields["inproc_us"]) / 1e6
            return measure

        counts()  # warm-up: imports numpy and the decoding modules
        pw, scan_map, scan_whole, raw = alternate([
            counts,
            anchor("scan_ioctl", [self.anchors["scan_ioctl"], str(pid)]),
            anchor("scan_ioctl -w", [self.anchors["scan_ioctl"], str(pid), "-w"]),
            anchor("raw_read", [self.anchors["raw_read"], str(pid)]),
        ], self.runs)
        which, best = ("-w", scan_whole) if scan_whole < scan_map else ("per mapping", scan_map)
        self.add(ratio_row(label, f"counts() in-process vs scan_ioctl ({which})", pw, best, 1.5))
        self.add(ratio_row(label, "counts() in-process vs raw_read inproc_us", pw, raw))

        # Cheap correctness check: the present-page totals must agree.
        present = {name: int(f["present"]) for name, f in anchor_fields.items()}
        pw_present = reports[-1].totals.present
        if len(set(present.values()) | {pw_present}) != 1:
            self.note(f"WARNING {label}: present pages differ: counts() {pw_present}, "
                      + ", ".join(f"{n} {v}" for n, v in present.items()))


# -- main ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Time pagewalk beside the reference C programs; print ratios.")
    p.add_argument("--quick", action="store_true",
                   help=f"only the {' and '.join(QUICK_WORKLOADS)} workloads, fewer runs (3, 2 for seed_dump "
                        "on the reservation)")
    p.add_argument("--runs", type=int, default=None,
                   help="runs per measurement (default 5; 3 for the seed pair on the reservation workload)")
    p.add_argument("--workloads", metavar="LIST",
                   help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all)")
    p.add_argument("--write-results", action="store_true", help=f"also write the table to {RESULTS_MD}")
    args = p.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        p.error("--runs must be at least 1")
    if args.workloads:
        args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
        unknown = [w for w in args.workloads if w not in WORKLOADS and w not in SPECIAL_WORKLOADS]
        if unknown:
            p.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    else:
        args.workloads = QUICK_WORKLOADS if args.quick else [*WORKLOADS, *SPECIAL_WORKLOADS]
    return args


# Why a target can be missed, and what would close it: printed under the table for
# every measurement that missed its target in the run.
WHY_MISSED = {
    "counts() in-process vs scan_ioctl": (
        "scan_ioctl counts present pages from the ioctl's list of runs, a few calls for a dense "
        "process. `maps` also needs `exclusive` per mapping, and PAGEMAP_SCAN has no category for it, "
        "so pagewalk reads the pagemap entry of every present page (raw_read's in-process time, in the "
        "row below, is that floor); with 10,000 mappings, parsing maps and building 10,000 rows in "
        "Python adds about 5 us a mapping. Closing it needs an exclusive category in the kernel, or "
        "`counts()` without `exclusive` (scan only), or the per-mapping work in C."),
    "maps vs raw_read + import numpy": (
        "pagewalk starts Python and numpy (the baseline) plus its own modules and argparse (about 10 ms), "
        "then counts at about raw_read's speed (see the in-process rows); with 10,000 mappings the "
        "per-mapping Python work (parsing maps, one row each) costs more than raw_read's whole run. "
        "Closing it needs the per-mapping work out of Python (a compiled helper) or a lighter start-up "
        "than the interpreter gives."),
    "snapshot vs 2 x maps": (
        "besides the pagemap entries that maps reads (a snapshot reads them while numpy imports), a snapshot "
        "reads the kpageflags of every present frame (70 to 200 ns each in the kernel, more for scattered "
        "frames; a million frames here, spread over a thread per CPU; map counts only where pagemap's "
        "exclusive bit does not settle them), and compresses the columns; it usually lands at 0.9 to 0.96, "
        "so a miss is this VM's noise (fresh memory that the host must fault in costs up to 2 ms a MiB). "
        "Closing it for good: recording frame flags only on request, or a kernel that reads those files "
        "faster."),
    "usage --all vs smem": (
        "smem reads /proc/PID/smaps, where the kernel sums each mapping's pages itself; usage follows "
        "procrank's method, as the issue asks: it reads the 8-byte pagemap entry of every resident page (over "
        "3 million for this family) and the map count of every shared frame, and starts numpy. The two floor "
        "rows show that the target is below what the kernel itself needs on this machine: merely reading "
        "every pagemap entry from a thread per CPU while numpy imports, and even reading the kernel's own "
        "sums from smaps_rollup for every process, each take more than half of smem's time. What would close "
        "it: more CPUs (the reads spread over threads), or a kernel interface that returns PFNs or map counts "
        "without a per-page walk."),
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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = args.runs if args.runs is not None else (3 if args.quick else 5)
    slow_runs = args.runs if args.runs is not None else (2 if args.quick else 3)
    # SIGTERM behaves like Ctrl-C: unwind, so every workload is killed in its finally.
    signal.signal(signal.SIGTERM, _interrupt)

    pagewalk = find_pagewalk()
    compile_pagewalk()
    header = machine_header(pagewalk)
    with open(pagewalk, "rb") as f:
        shebang = f.readline().decode(errors="replace")
    notes_first = []
    interpreter = Path(shebang[2:].strip().split()[0]) if shebang.startswith("#!") else None
    if interpreter and not same_python(interpreter, Path(sys.executable)):
        notes_first.append(f"pagewalk runs under {shebang[2:].strip()}, the Python baselines under "
                           f"{sys.executable}: run this script with pagewalk's interpreter")

    try:
        with tempfile.TemporaryDirectory(prefix="pagewalk-bench-") as tmp:
            bench = Bench(pagewalk, build_anchors(Path(tmp)), runs, slow_runs)
            for n in notes_first:
                bench.note(n)
            t0 = time.perf_counter()
            for short in args.workloads:
                bench.workload(short)
            bench.log(f"done in {time.perf_counter() - t0:.0f} s")
    except KeyboardInterrupt:
        print("interrupted; workloads killed", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1

    for k, v in header:
        print(f"{k}: {v}")
    print(f"runs per measurement: {runs} ({slow_runs} for the seed pair on the reservation)")
    print()
    print(text_table(bench.rows))
    for line in why_missed(bench.rows):
        print("missed " + line[2:])
    if bench.notes:
        print()
        for n in bench.notes:
            print(f"note: {n}")
    if args.write_results:
        command = "python3 bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
        write_results(header, bench, command.strip())
        print(f"\nwrote {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
