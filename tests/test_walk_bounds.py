"""Page walks whose memory follows the resident set, not the address space.

A PROT_NONE reservation costs nothing to make, so its size must cost nothing to
walk: without PAGEMAP_SCAN every entry is read, through one reused buffer, and
only the populated ones are kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import tracemalloc

import numpy as np

import pagewalk
from pagewalk.snapshot import Snapshot
from conftest import PAGE, requires_root, smaps_of, smaps_rollup

pytestmark = requires_root  # zero pages by PFN without PAGEMAP_SCAN, and kpageflags, need root

GIB_PAGES = (1 << 30) // PAGE
NO_SCAN = {"PAGEWALK_NO_SCAN": "1"}


def run_measured(*args: str, env: dict | None = None) -> tuple[int, str, str, int]:
    """``python -m pagewalk ARGS``: exit status, stdout, stderr, and its peak
    resident memory in bytes (the kernel's ru_maxrss, from wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "pagewalk", *map(str, args)], stdout=out, stderr=err,
                                env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read().decode(), err.read().decode(), usage.ru_maxrss * 1024


def inside(vaddr: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Which addresses lie inside one of the sorted ranges ``[starts, ends)``."""
    k = np.searchsorted(starts, vaddr, side="right") - 1
    return (k >= 0) & (vaddr < ends[np.maximum(k, 0)])


# -- memory ------------------------------------------------------------------------------

def test_a_huge_reservation_costs_no_memory_to_walk(specimen):
    """resident_table() without PAGEMAP_SCAN over a 64 GiB PROT_NONE reservation
    with pages mapped and touched inside it: the rows are those pages, the same as
    PAGEMAP_SCAN finds, and the walk allocates no more than a few buffers (it once
    held every entry of the reservation and two decoded columns: 10 bytes a
    virtual page)."""
    r, w = specimen.run(f"r = mmap({64 * GIB_PAGES}, 'none', noreserve=True)\n"
                        f"w = libc.mmap(r + {32 * GIB_PAGES} * PAGE, 300 * PAGE, 3, 0x32, -1, 0)\n"  # FIXED|PRIVATE|ANON
                        "write(w, 300); result = [r, w]")
    assert w == r + 32 * GIB_PAGES * PAGE
    assert smaps_of(specimen.pid, w)["Rss"] == 300 * PAGE
    with pagewalk.Process(specimen.pid, use_scan=False) as p:
        tracemalloc.start()
        try:
            table = p.resident_table()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 16 << 20, f"{peak >> 20} MiB allocated to walk a 64 GiB reservation"
    reservation = (table.vaddr >= np.uint64(r)) & (table.vaddr < np.uint64(r + 64 * GIB_PAGES * PAGE))
    assert table.vaddr[reservation].tolist() == [w + i * PAGE for i in range(300)]
    assert table.present[reservation].all()
    with pagewalk.Process(specimen.pid, use_scan=True) as p:
        if p.scanner() is None:
            return  # nothing to compare with
        scanned = p.resident_table()
    assert np.array_equal(table.vaddr, scanned.vaddr) and np.array_equal(table.raw, scanned.raw)


def test_commands_without_pagemap_scan_take_memory_for_pages_not_address_space(specimen, tmp_path):
    """usage, snapshot and picture read every entry without PAGEMAP_SCAN: a 256 GiB
    reservation adds nothing to their peak memory (it added 1.2 GB, 5 GB a TiB,
    and an 8 TiB one ended usage --all in a MemoryError), and what they say of
    the pages matches smaps."""
    w = specimen.run("w = mmap(300); write(w, 300); result = w")
    commands = {"usage": ["usage", specimen.pid, "--json"],
                "snapshot": ["snapshot", specimen.pid, "-o", tmp_path / "s.npz"],
                "picture": ["picture", specimen.pid, "-o", tmp_path / "p.html"]}
    baseline = {}
    for name, args in commands.items():
        status, _, err, peak = run_measured(*args, env=NO_SCAN)
        assert status == 0, err
        baseline[name] = peak
    r = specimen.run(f"result = mmap({256 * GIB_PAGES}, 'none', noreserve=True)")
    for name, args in commands.items():
        status, out, err, peak = run_measured(*args, env=NO_SCAN)
        assert status == 0 and "Traceback" not in err, err
        assert peak < baseline[name] + (48 << 20), f"{name}: {baseline[name] >> 20} MiB, then {peak >> 20} MiB"
        if name == "usage":
            row, = json.loads(out)["processes"]
            assert row["rss"] == smaps_rollup(specimen.pid)["Rss"]
    snap = Snapshot.load(str(tmp_path / "s.npz"))
    vaddr = snap.vaddr
    assert not ((vaddr >= np.uint64(r)) & (vaddr < np.uint64(r + 256 * GIB_PAGES * PAGE))).any()
    mine = (vaddr >= np.uint64(w)) & (vaddr < np.uint64(w + 300 * PAGE))
    assert int(snap.table().present[mine].sum()) * PAGE == smaps_of(specimen.pid, w)["Rss"] == 300 * PAGE
