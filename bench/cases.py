"""The benchmark's workloads and cases: the target processes, and one method of Bench
per measurement, each adding its rows (see bench/README.md for what they mean)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from harness import (
    alternate,
    inproc_report,
    largest_mapping_start,
    mem_available_mib,
    output_digest,
    program,
    run_timed,
    running,
    running_workload,
    smaps_rollup_kb,
    swap_file,
    timed_commands,
)
from report import Row, ratio_row, row_cells

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
    "everyday": "everyday processes (a 200 MB Python, sleep, libc)",
}
QUICK_WORKLOADS = ["4g", "res"]
# MiB of available memory a workload needs (with some room for pagewalk itself)
NEEDS_MIB = {"4g": 4096 + 1024}


def modules_of(*command: str) -> list[str]:
    """The modules of pagewalk and the standard library that ``pagewalk COMMAND...``
    imports beyond what ``python -c pass`` has, run in-process once."""
    code = ("import sys, os\nbefore = set(sys.modules)\nfrom pagewalk.cli import main\n"
            "os.dup2(os.open(os.devnull, os.O_WRONLY), 1)\nmain(sys.argv[1:])\n"
            "print(' '.join(sorted(m for m in set(sys.modules) - before if not m.startswith('_'))), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, check=True)
    return done.stderr.split()


def first_address(pid: int) -> int:
    """The start of the process's first mapping."""
    with open(f"/proc/{pid}/maps") as f:
        return int(f.readline().split("-")[0], 16)


def running_family(processes: int, mib: int):
    """A parent and ``processes - 1`` forked children sharing ``mib`` MiB of private
    memory (each child with 16 pages of its own); all killed, as a process group."""
    return running([*program("family"), str(processes), str(mib)], "the family", group=True)


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
        if short == "everyday":
            return self.everyday(SPECIAL_WORKLOADS[short])
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
        if len(open(f"/proc/{pid}/maps").readlines()) >= 10000:  # (issue 15: many mappings, no numpy's cost)
            (py,) = timed_commands([[sys.executable, "-c", "pass"]], self.runs)
            self.add(ratio_row(label, "maps vs raw_read + python -c pass", pw, raw + py, 1))

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
        page_types = os.environ.get("PAGE_TYPES") or shutil.which("page-types")  # (built aside from the kernel's tools/mm)
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
            snap, maps, write, numpy = timed_commands([
                [self.pagewalk, "snapshot", str(pid), "-o", out], [self.pagewalk, "maps", str(pid)],
                ["dd", f"if={out}", f"of={copy}", "bs=1M", "conv=fsync", "status=none"],
                [sys.executable, "-c", "import numpy"]], self.runs)
            # numpy's import once: the snapshot's file is numpy's npz, and maps no longer
            # imports numpy (issue 15), as it did when this target was set
            self.add(ratio_row(label, "snapshot vs 2 x maps + import numpy + writing its file", snap,
                               2 * maps + write + numpy, 1))
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
        self.log(f"{label}: ram vs types (whole machine), {self.runs} runs")
        ram, types, by_cgroup = timed_commands([[self.pagewalk, "ram"], [self.pagewalk, "types"],
                                                [self.pagewalk, "ram", "--by", "cgroup"]], self.runs)
        self.add(ratio_row(label, "ram vs types (whole machine)", ram, types, 1.5))
        # owners: kpagecgroup is a second file of the kernel's, read as kpageflags is
        self.add(ratio_row(label, "ram --by cgroup vs types (whole machine; no target)", by_cgroup, types))
        fincore = shutil.which("fincore")
        if fincore:
            runs = min(self.runs, 3)  # tens of seconds a run
            self.log(f"{label}: ram --files / vs find -xdev + fincore of every file, {runs} runs")
            files, peer = timed_commands([
                [self.pagewalk, "ram", "--files", "/"],
                ["sh", "-c", f"find / -xdev -type f -print0 | xargs -0 {fincore} --raw --noheadings >/dev/null 2>&1; "
                             "exit 0"]], runs)
            self.add(ratio_row(label, "ram --files / vs find / -xdev | xargs fincore", files, peer, 1))

    def everyday(self, label: str) -> None:
        """The processes people inspect most (a few MB to a few hundred): whole-command
        times of types -p, usage, maps and file against page-types, smem, fincore and
        Python's own start-up (issue 15's targets)."""
        page_types = os.environ.get("PAGE_TYPES") or shutil.which("page-types")
        smem, fincore = shutil.which("smem"), shutil.which("fincore")
        py = [sys.executable, "-c", "pass"]
        with running([*program("resident"), "200"], "a 200 MB Python process") as (big,), \
                running(["sh", "-c", "echo PID $$; echo ready; exec sleep 1000"], "sleep") as (small,):
            self.log(f"{label}: 200 MB process {big}, sleep {small}, {self.runs} runs")
            (py_s,) = timed_commands([py], self.runs)
            if page_types:
                pw, pt = timed_commands([[self.pagewalk, "types", "-p", str(big)], [page_types, "-p", str(big)]],
                                        self.runs)
                self.add(ratio_row(label, "types -p (200 MB process) vs page-types -p", pw, pt, 1.5))
                pw, pt = timed_commands([[self.pagewalk, "types", "-p", str(small)], [page_types, "-p", str(small)]],
                                        self.runs)
                self.add(ratio_row(label, "types -p (sleep, 2 MB) vs page-types -p", pw, pt))
            else:
                self.note(f"{label}: page-types is not on PATH (PAGE_TYPES=/path names it): its rows are left out")
                (pw,) = timed_commands([[self.pagewalk, "types", "-p", str(small)]], self.runs)
            self.add(ratio_row(label, "types -p (sleep, 2 MB) vs python -c pass", pw, py_s, 3))
            if smem:
                pw, sm = timed_commands([[self.pagewalk, "usage", str(big)], [smem, "-P", "resident.py"]], self.runs)
                self.add(ratio_row(label, "usage PID (200 MB process) vs smem -P", pw, sm, 1))
                pw, sm = timed_commands([[self.pagewalk, "usage", "--all"], [smem]], self.runs)
                self.add(ratio_row(label, "usage --all (this machine's processes) vs smem", pw, sm, 0.7))
            else:
                self.note(f"{label}: smem is not installed (Debian package smem): its rows are left out")
            (pw,) = timed_commands([[self.pagewalk, "maps", str(big)]], self.runs)
            self.add(ratio_row(label, "maps PID (200 MB process) vs python -c pass", pw, py_s, 2))
            # the floor under every everyday command: Python importing what maps imports, and no more
            (imports,) = timed_commands([[sys.executable, "-c", "import " + ", ".join(modules_of("maps", str(big)))]],
                                        self.runs)
            self.add(ratio_row(label, "floor: importing maps' modules, no work, vs python -c pass", imports, py_s))
            libc = os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6")
            if os.path.exists(libc):
                pw, fc = timed_commands([[self.pagewalk, "file", libc], [fincore, libc] if fincore else py],
                                        self.runs)
                self.add(ratio_row(label, "file (libc, 2 MB) vs python -c pass", pw, py_s, 2))
                if fincore:
                    self.add(ratio_row(label, "file (libc, 2 MB) vs fincore", pw, fc))
                if page_types:
                    pw, pt = timed_commands([[self.pagewalk, "types", "-f", libc], [page_types, "-f", libc]],
                                            self.runs)
                    self.add(ratio_row(label, "types -f (libc) vs page-types -f", pw, pt))
            pfn = subprocess.run([self.pagewalk, "v2p", "--json", str(big), hex(first_address(big))],
                                 capture_output=True, text=True, check=True).stdout
            pfn = json.loads(pfn)[0]["pfn"]
            if pfn is not None:
                (pw,) = timed_commands([[self.pagewalk, "who", "--pfn", hex(pfn)]], self.runs)
                self.add(ratio_row(label, "who (one frame, every process) vs python -c pass", pw, py_s))

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
                [[self.pagewalk, "usage", "--all"], [smem], program("rollup_floor"),
                 program("pagemap_floor")], self.runs)
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
                with running([*program("shmem_workload"), layout], f"the shmem workload ({layout})") as pids:
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
