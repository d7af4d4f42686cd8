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

Files
-----
This file holds the options and ``main``; ``harness.py`` the machine, the programs,
starting and killing processes and the timing; ``cases.py`` the workloads and one
method per measurement; ``report.py`` the rows, tables and RESULTS.md; and
``programs/*.py`` the Python target processes and floors, run as scripts.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

from cases import QUICK_WORKLOADS, SPECIAL_WORKLOADS, WORKLOADS, Bench
from harness import BenchError, build_anchors, compile_pagewalk, find_pagewalk, machine_header, same_python
from report import RESULTS_MD, print_results, write_results


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

    print_results(header, bench)
    if args.write_results:
        command = "python3 bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
        write_results(header, bench, command.strip())
        print(f"\nwrote {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
