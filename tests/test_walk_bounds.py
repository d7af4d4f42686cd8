"""Page walks whose memory follows the resident set, not the address space, and
that notice mappings changing under them.

A PROT_NONE reservation costs nothing to make, so its size must cost nothing to
walk: without PAGEMAP_SCAN every entry is read, through one reused buffer, and
only the populated ones are kept.  Mappings are read again after a walk; where
they changed the walk is repeated or the change said, and no page outside the
mappings a table reports is ever one of its rows."""

from __future__ import annotations

import json
import os
import tracemalloc

import numpy as np
import pytest

import pagewalk
from pagewalk.analysis.snapshot import Snapshot
from conftest import PAGE, measured, requires_root, smaps_of, smaps_rollup

pytestmark = requires_root  # zero pages by PFN without PAGEMAP_SCAN, and kpageflags, need root

GIB_PAGES = (1 << 30) // PAGE
NO_SCAN = {"PAGEWALK_NO_SCAN": "1"}


def run_measured(*args: str, env: dict | None = None) -> tuple[int, str, str, int]:
    """``python -m pagewalk ARGS``: exit status, stdout, stderr, and its peak
    resident memory in bytes."""
    r, peak = measured(*args, env=env)
    return r.returncode, r.stdout.decode(), r.stderr.decode(), peak


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
        if not p.scan_in_use:
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


# -- mappings that change during the walk -------------------------------------------------

@pytest.mark.parametrize("use_scan", [False, True])
def test_a_walk_with_stale_mappings_says_so_and_keeps_to_them(specimen, use_scan):
    """The caller's mappings were read before the process unmapped one and mapped
    another: the table names the one that changed, and has no row in the new one
    (PAGEMAP_SCAN walks the gaps between the mappings it was given, and once kept
    the pages it found there, which then counted for the mapping before)."""
    a, b = specimen.run("a = mmap(16); b = mmap(16); write(a, 16); write(b, 16); result = [a, b]")
    with pagewalk.Process(specimen.pid, use_scan=use_scan) as p:
        stale = p.mappings()
        c = specimen.run("c = mmap(40); write(c, 40); munmap(b, 16); result = c")
        table = p.resident_table(stale)
        assert b in [m.start for m in table.changed_mappings]
        assert [m.start for m in p.changed] == [m.start for m in table.changed_mappings]
        assert table.mappings == stale
        starts = np.array([m.start for m in stale], dtype=np.uint64)
        ends = np.array([m.end for m in stale], dtype=np.uint64)
        assert inside(table.vaddr, starts, ends).all()
        assert not ((table.vaddr >= np.uint64(c)) & (table.vaddr < np.uint64(c + 40 * PAGE))).any()
        assert ((table.vaddr >= np.uint64(a)) & (table.vaddr < np.uint64(a + 16 * PAGE))).sum() == 16
        # Read with its own mappings, the table is whole again, and nothing changed
        fresh = pagewalk.Process(specimen.pid, use_scan=use_scan).resident_table()
    assert fresh.changed_mappings == []
    assert ((fresh.vaddr >= np.uint64(c)) & (fresh.vaddr < np.uint64(c + 40 * PAGE))).sum() == 40
    assert all(m.start != b for m in fresh.mappings)


def test_a_walk_read_before_the_mappings_changed_is_read_again(specimen):
    """snapshot reads the page table while numpy imports (ResidentRead): where the
    mappings changed by the time the table is made, it is read again with the
    mappings as they are, so the snapshot holds no mapping that is gone."""
    b = specimen.run("a = mmap(16); b = mmap(16); write(a, 16); write(b, 16); result = b")
    with pagewalk.Process(specimen.pid) as p:
        if not p.scan_in_use:
            pytest.skip("no PAGEMAP_SCAN on this kernel")
        early = p.resident_read()
        specimen.run("munmap(b, 16)")
        early.scan_and_read()
        snap = Snapshot.take(p, resident=early)
        assert p.changed == []
    assert all(m.start != b for m in snap.mappings) and snap.meta["mappings_changed"] == []
    assert not ((snap.vaddr >= np.uint64(b)) & (snap.vaddr < np.uint64(b + 16 * PAGE))).any()


RACER = """
import random, threading
stop, started = threading.Event(), threading.Event()
def race():
    rng, held = random.Random(13), []
    while not stop.is_set():
        pages = rng.choice((1, 7, 64, 300, 16384))  # up to 64 MiB, a few pages touched
        m = libc.mmap(None, pages * PAGE, 3, 0x22, -1, 0)
        for i in range(0, pages, max(1, pages // 8)):
            ctypes.memset(m + i * PAGE, 1, 1)
        held.append((m, pages))
        if len(held) > 50:  # unmapped in another order than mapped: the layout never repeats for long
            m, pages = held.pop(rng.randrange(len(held)))
            libc.munmap(m, pages * PAGE)
        started.set()
racer = threading.Thread(target=race, daemon=True)
racer.start()
started.wait()
"""


def test_commands_on_a_process_that_maps_and_unmaps_all_the_time(specimen, tmp_path):
    """snapshot, picture, usage, shared and wss on a target that maps, touches and unmaps
    continuously, with PAGEMAP_SCAN and without: no traceback (picture -o X.html
    once failed in numpy's reshape), every page a snapshot records lies inside one
    of its mappings (pages of mappings made during the walk were recorded, and
    --load gave them to the mapping before), and the changes are said."""
    specimen.run("w = mmap(64); write(w, 64)")
    specimen.run(RACER)
    warned = 0
    try:
        for env in ({}, NO_SCAN):
            for k in range(2):
                path = tmp_path / f"s{k}.npz"
                status, _, err, _ = run_measured("snapshot", specimen.pid, "-o", path, env=env)
                assert status == 0 and "Traceback" not in err, err
                warned += "changed during the scan" in err
                with np.load(path) as z:
                    starts, ends = z["map_start"], z["map_end"]
                    meta = json.loads(str(z["meta"]))
                vaddr = Snapshot.load(str(path)).vaddr
                assert len(vaddr) == meta["pages"] > 64
                assert inside(vaddr, starts, ends).all(), "a recorded page lies outside every recorded mapping"
                assert ("changed during the scan" in err) == bool(meta["mappings_changed"])
            status, _, err, _ = run_measured("picture", specimen.pid, "-o", tmp_path / "p.html", env=env)
            assert status == 0 and "Traceback" not in err, err
            warned += "changed during the scan" in err
            for command in (("usage", specimen.pid), ("shared", specimen.pid, os.getpid())):
                status, out, err, _ = run_measured(*command, "--json", env=env)
                assert status == 0 and "Traceback" not in err, err
                doc = json.loads(out)
                assert command[0] == "shared" or doc["processes"][0]["rss"] > 64 * PAGE
                assert ("changed during the scan" in err) == any(c["pid"] == specimen.pid for c in doc["changed"])
                warned += "changed during the scan" in err
            status, _, err, _ = run_measured("wss", specimen.pid, "--interval", "0.05", "--count", "3", env=env)
            assert status == 0 and "Traceback" not in err, err
            warned += "mappings changed while" in err
    finally:
        specimen.run("stop.set(); racer.join()")
    assert warned, "the mappings changed all along, and no command said so"
